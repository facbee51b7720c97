"""The static spellings of the record kinds (for the type checker) agree with their one declaration,
`schemas.kinds.RECORD_KINDS`, and each declaration is consistent with its model."""

from datetime import date
from typing import get_args

import pytest
from pydantic import AwareDatetime

from schemas import Finding
from schemas.envelope import AnyRecord, CanonicalRecord, RecordKind
from schemas.findings import CATEGORIES, SEVERITIES, SEVERITY_ORDER, Category, Severity
from schemas.kinds import RECORD_KINDS, Kind, kind_named, kind_of


def test_record_kind_literal_and_union_are_the_declared_kinds_in_order() -> None:
    assert get_args(RecordKind) == tuple(k.name for k in RECORD_KINDS)
    assert get_args(AnyRecord) == tuple(k.model for k in RECORD_KINDS)
    assert get_args(get_args(CanonicalRecord)[0]) == tuple(k.model for k in RECORD_KINDS)


@pytest.mark.parametrize("kind", RECORD_KINDS, ids=lambda k: k.name)
def test_each_declaration_fits_its_model(kind: Kind) -> None:
    fields = kind.model.model_fields
    assert get_args(fields["kind"].annotation) == (kind.name,)  # one kind name per model
    assert kind.dated_by in fields and fields[kind.dated_by].annotation in (AwareDatetime, date)
    assert kind.by_day == (fields[kind.dated_by].annotation is date)
    assert kind.key[0] == "patient_id" and kind.time_column in kind.key and kind.column("source") in kind.key
    assert set(kind.columns) <= set(fields), "columns renames record fields"
    assert kind.lasts is None or isinstance(getattr(kind.model, kind.lasts), property)
    assert all(isinstance(getattr(kind.model, name), property) for name in kind.computed)
    assert kind_named(kind.name) is kind


def test_names_are_unique() -> None:
    for attr in ("name", "store", "table"):
        names = [getattr(k, attr) for k in RECORD_KINDS]
        assert len(set(names)) == len(names), attr
    tables = [t for k in RECORD_KINDS for t in (k.table, *k.side_tables)]
    assert len(set(tables)) == len(tables)


def test_kind_of_a_record_and_of_anything_else() -> None:
    for kind in RECORD_KINDS:
        assert kind_of(kind.model.model_construct()) is kind
    with pytest.raises(TypeError, match="not a canonical record"):
        kind_of(object())


def test_categories_and_severities_are_declared_once() -> None:
    assert CATEGORIES == get_args(Category) and SEVERITIES == get_args(Severity)
    assert [SEVERITY_ORDER[s] for s in SEVERITIES] == list(range(len(SEVERITIES)))
    assert Finding.model_fields["category"].annotation is Category
    assert Finding.model_fields["severity"].annotation is Severity
