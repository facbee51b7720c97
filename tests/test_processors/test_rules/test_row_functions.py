"""The compiled row functions (``SeriesNode.row_fn``, issue 17) give exactly the findings of the reference
path (``SeriesNode.val``): same findings, same evidence, same history, whatever the data.

A rule that stays silent when it should speak is the worst bug a speed-up can bring, so every history is
replayed twice, once each way, and the JSON lines and the patient's stored value must be byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.rules import PatientHistory, findings_to_jsonl, load_rules
from processors.rules.evaluator import steps
from processors.rules.expr import window
from schemas import CareStateChange
from tests.scenarios import START, all_scenarios, alsfrs, day, gas, niv_night, oxi_night, spiro
from tests.test_processors.test_rules.clinical_histories import all_histories

RULES = load_rules()
P = "RF-1"


@contextmanager
def row_functions(on: bool) -> Iterator[None]:
    saved = window.ROW_FUNCTIONS
    window.ROW_FUNCTIONS = on
    try:
        yield
    finally:
        window.ROW_FUNCTIONS = saved


def run(items: list[Any], as_of: Any, on: bool) -> str:
    """Every finding of the replay as JSON lines, then every patient's table value."""
    histories: dict[str, PatientHistory] = {}
    with row_functions(on):
        lines = [findings_to_jsonl(found) for _, found in steps(items, RULES, as_of, histories=histories)]
    return "".join(lines) + "".join(histories[p].to_json().decode() + "\n" for p in sorted(histories))


def assert_same(items: list[Any], as_of: Any) -> str:
    fast = run(items, as_of, True)
    assert fast == run(items, as_of, False)
    return fast


@pytest.mark.parametrize("scenario", all_scenarios(), ids=lambda s: s.name)
def test_scenarios_identical(scenario: Any) -> None:
    assert '"rule_id"' in assert_same(scenario.items, scenario.as_of) or not scenario.expected


@pytest.mark.parametrize("history", all_histories(), ids=lambda h: h.name)
def test_clinical_histories_identical(history: Any) -> None:
    assert_same(history.items, history.as_of)


maybe = st.one_of(st.none(), st.floats(0, 60, allow_nan=False).map(lambda v: round(v, 1)))
nights = st.lists(
    st.tuples(
        st.integers(0, 120),  # night index (duplicates: re-sent nights, merged parts)
        st.floats(0, 12, allow_nan=False).map(lambda v: round(v, 2)),
        maybe,  # leak
        st.sampled_from(["unintentional", "total", "unknown"]),
        maybe,  # ahi
        st.one_of(st.none(), st.floats(0, 40, allow_nan=False).map(lambda v: round(v, 1))),  # device t90
        st.sampled_from([None, None, 0.0, 2.0]),  # oxygen L/min
    ),
    max_size=60,
)
oximetry = st.lists(
    st.tuples(st.integers(0, 120), st.sampled_from([0.0, 3.0, 8.0, 25.0]), st.sampled_from([0.0, 5.0, 12.0]),
              st.sampled_from([None, True, False]), st.sampled_from([None, True, False]), st.sampled_from([8.0, 3.0])),
    max_size=25,
)
sessions = st.lists(
    st.tuples(st.integers(0, 120), st.one_of(st.none(), st.floats(20, 120, allow_nan=False).map(lambda v: round(v, 1))),
              st.sampled_from(["sitting", "sitting", "supine"]), st.sampled_from(["A", "C", "F", None]),
              st.one_of(st.none(), st.floats(10, 90, allow_nan=False)), st.one_of(st.none(), st.floats(80, 400))),
    max_size=6,
)
others = st.lists(
    st.tuples(st.integers(0, 120), st.sampled_from(["alsfrs", "gas", "state"]), st.integers(0, 4),
              st.sampled_from(["niv_declined", "invasive_ventilation", "end_of_life", "none"])),
    max_size=5,
)


def build(n: list[Any], o: list[Any], s: list[Any], x: list[Any]) -> list[Any]:
    recs: list[Any] = []
    for d, use, leak, kind, ahi, t90, o2 in n:
        night = niv_night(P, START + timedelta(days=d), use, leak=leak, leak_kind=kind, ahi=ahi, spo2_t90=t90)
        recs.append(night if o2 is None else night.model_copy(update={"o2_lpm": o2}))
    recs += [oxi_night(P, START + timedelta(days=d), t90_pct=t90, low_run_min=run_min, on_o2=o2, on_niv=on_niv,
                       hours=hours, interval_s=60.0) for d, t90, run_min, o2, on_niv, hours in o]
    recs += [spiro(P, day(d, 9), vc, posture=posture, grade=grade, snip=snip, mip=snip, pcf=pcf)
             for d, vc, posture, grade, snip, pcf in s]
    for d, what, score, state in x:
        if what == "alsfrs":
            recs.append(alsfrs(P, day(d, 11), i10=score, i11=score, i12=min(score + 1, 4)))
        elif what == "gas":
            recs.append(gas(P, day(d, 12), 40.0 + 5 * score, sample="capillary"))
        else:
            recs.append(CareStateChange(change_id=f"rf-{d}-{state}", patient_id=P, state=state,
                                        since=START + timedelta(days=d), set_by="test", set_at=day(d, 13)))
    return recs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(nights, oximetry, sessions, others, st.integers(0, 90))
def test_random_histories_identical(n: list[Any], o: list[Any], s: list[Any], x: list[Any], after: int) -> None:
    assert_same(build(n, o, s, x), day(121 + after))
