"""The history's rows, the expression language's kinds and the stores agree with their declarations:
`processors/rules/rows.py` (one TypedDict per kind's row) and `schemas.kinds.RECORD_KINDS`."""

import types
import typing
from typing import Any

import pytest

from processors.metrics.kinds import METRICS
from processors.rules import history
from processors.rules.expr import KINDS
from processors.rules.expr.kinds import field_type
from processors.rules.history import STORES, PatientHistory, record_kind
from processors.rules.lookback import STORE_OF
from processors.rules.rows import STORE_ROWS, VIEWS, Row, series_fields
from schemas.kinds import RECORD_KINDS
from tests.scenarios import all_scenarios, alsfrs, day, gas, niv_night, oxi_night, spiro, tcco2_night


def records() -> list[Any]:
    """Every kind, with optional values present and absent, plus the scenarios' records."""
    d = day(3).date()
    return [
        spiro("R", day(3), 72.0, mip=55.0, snip=48.0, pcf=250.0, svc_l=3.1),
        spiro("R", day(3, 11), 61.0, posture="supine", grade=None, demographics=False),
        spiro("R", day(4), None, fvc_l=2.9, pcf=180.0, pcf_assisted=True, demographics=False),
        oxi_night("R", d), niv_night("R", d, 6.5), alsfrs("R", day(5)),
        gas("R", day(6), 47.5, bicarbonate=29.0, ph=7.36), gas("R", day(6), None, sample="venous", bicarbonate=27.0),
        tcco2_night("R", d, peak_min=12.0), tcco2_night("R", d, hours=0.5, source="short"),  # no baseline
        *(r for s in all_scenarios() for r in s.records),
    ]


def conforms(value: Any, annotation: Any) -> bool:
    """`value` is of type `annotation` as JSON keeps it (a whole number is a float too, a bool is not)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def test_every_kind_has_its_rows_declared_in_kind_order() -> None:
    assert [s.kind for s in STORE_ROWS.values()] == list(RECORD_KINDS)
    assert STORES == tuple(STORE_ROWS) == tuple(k.store for k in RECORD_KINDS)
    assert {v.store for v in VIEWS.values()} == set(STORES) and STORE_OF == {n: v.store for n, v in VIEWS.items()}


def test_expression_fields_are_the_row_declarations() -> None:
    assert list(KINDS) == list(VIEWS)
    for name, view in VIEWS.items():
        row_fields = series_fields(STORE_ROWS[view.store].row)
        assert set(view.fields) <= set(row_fields), name
        assert KINDS[name].family == view.family
        assert dict(KINDS[name].fields) == {f: field_type(row_fields[f]) for f in view.fields}
    with pytest.raises(TypeError, match="number, bool or text"):
        field_type(list[int])
    with pytest.raises(TypeError, match="one type or None"):
        field_type(int | str)


def test_rows_hold_exactly_their_declared_fields_with_their_types() -> None:
    histories: dict[str, PatientHistory] = {}
    for record in records():
        histories.setdefault(record.patient_id, PatientHistory(record.patient_id, 100_000, 10**6)).add(record)
    seen = set()
    for h in histories.values():
        for store, rows in h.to_dict()["rows"].items():
            declared, hints = STORE_ROWS[store], typing.get_type_hints(STORE_ROWS[store].row)
            for row in rows:
                seen.add(store)
                assert list(row) == list(declared.fields), store
                wrong = {f: v for f, v in row.items() if not conforms(v, hints[f])}
                assert not wrong, (store, wrong)
    assert seen == set(STORES)


def test_computed_values_are_declared_fields() -> None:
    """What a kind computes itself is a field of its row (the rest is its metric or record attribute of that
    name, which building every kind's rows above checks)."""
    for kind, values in history._VALUES.items():
        record = next(r for r in records() if record_kind(r) == kind.store)
        metrics = METRICS[kind].of(record) if kind in METRICS else None
        assert set(values(record, metrics)) <= set(STORE_ROWS[kind.store].fields), kind.name


def test_row_base_fields_are_no_expression_fields() -> None:
    for store in STORE_ROWS.values():
        hints = typing.get_type_hints(store.row, include_extras=True)
        assert list(hints)[:len(Row.__annotations__)] == list(Row.__annotations__)
        assert not set(series_fields(store.row)) & set(Row.__annotations__)
    assert "posture" not in KINDS["spiro"].fields and "items" not in KINDS["alsfrs"].fields
