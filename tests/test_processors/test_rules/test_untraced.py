"""Deciding verdicts without a trace (issue 17: ``engine.UNTRACED``, calls shared by the rules of one evaluation,
windows whose rows all lack a field, deviations split on ISO dates) gives exactly the findings of the reference
path, which traces every rule: same findings, same evidence, same history, whatever the data.

Every history is replayed twice, once each way, and the JSON lines and the patient's stored value must be
identical; at every step the verdicts of ``evaluate`` (traced) and ``evaluate(changes_only=True)`` (untraced)
must decide alike, and ``evaluate_changes`` must keep exactly the verdicts ``transition`` acts on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.metrics import trends
from processors.rules import PatientHistory, engine, findings_to_jsonl, load_rules
from processors.rules.engine import evaluate, evaluate_changes
from processors.rules.evaluator import steps
from processors.rules.expr import EvalContext
from processors.rules.expr.functions import _deviation_split
from schemas import NivNight
from tests.scenarios import all_scenarios, day
from tests.test_processors.test_rules.clinical_histories import all_histories
from tests.test_processors.test_rules.test_row_functions import build, nights, others, oximetry, sessions

RULES = load_rules()


@contextmanager
def untraced(on: bool) -> Iterator[None]:
    saved = engine.UNTRACED
    engine.UNTRACED = on
    try:
        yield
    finally:
        engine.UNTRACED = saved


def decided(verdicts: list[engine.Verdict]) -> list[tuple[Any, ...]]:
    return [(v.rule_id, v.applies, v.holds, v.severity, v.action, v.fresh) for v in verdicts]


def run(items: list[Any], as_of: Any, on: bool, *, check: bool = False) -> str:
    """Every finding of the replay as JSON lines, then every patient's table value. `check`: at every step,
    the untraced verdicts decide as the traced ones, and carry the same evidence when they carry any."""
    histories: dict[str, PatientHistory] = {}
    lines = []
    with untraced(on):
        for history, found in steps(items, RULES, as_of, histories=histories):
            lines.append(findings_to_jsonl(found))
            if check and history.evaluated_at is not None:
                at = datetime.fromisoformat(history.evaluated_at)
                traced = evaluate(RULES, history, at, fresh="niv")
                fast = evaluate(RULES, history, at, changes_only=True, fresh="niv")
                assert decided(fast) == decided(traced)
                assert all(f.evidence in ({}, t.evidence) for f, t in zip(fast, traced))
                acted_on = [v for v in fast if v.holds or v.rule_id in history.open]
                assert evaluate_changes(RULES, history, at, fresh="niv") == acted_on
    return "".join(lines) + "".join(histories[p].to_json().decode() + "\n" for p in sorted(histories))


def assert_same(items: list[Any], as_of: Any, *, check: bool = False) -> str:
    fast = run(items, as_of, True, check=check)
    assert fast == run(items, as_of, False)
    return fast


@pytest.mark.parametrize("scenario", all_scenarios(), ids=lambda s: s.name)
def test_scenarios_identical(scenario: Any) -> None:
    assert '"rule_id"' in assert_same(scenario.items, scenario.as_of, check=True) or not scenario.expected


@pytest.mark.parametrize("history", all_histories(), ids=lambda h: h.name)
def test_clinical_histories_identical(history: Any) -> None:
    assert_same(history.items, history.as_of)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(nights, oximetry, sessions, others, st.integers(0, 90))
def test_random_histories_identical(n: list[Any], o: list[Any], s: list[Any], x: list[Any], after: int) -> None:
    assert_same(build(n, o, s, x), day(121 + after), check=True)


def test_months_of_nights_without_device_figures_identical() -> None:
    """A device that never reports SpO2, oxygen or breathing figures: the windows reading them pick nothing
    without reading every night; the same nights with the figures must still raise what they raise."""
    first = date(2025, 1, 1)
    bare = [NivNight(patient_id="U-1", night_date=first + timedelta(days=n), usage_hours=7.5 if n % 9 else 1.0,
                     leak_p95_lpm=12.0, ahi=3.0 + n % 7) for n in range(130)]
    full = [r.model_copy(update={"spo2_t90_pct": float(n % 20), "o2_lpm": 2.0 if n > 100 else None,
                                 "resp_rate": 16.0 + (n > 110) * 8, "minute_vent_lpm": 7.0})
            for n, r in enumerate(bare)]
    as_of = datetime(2025, 5, 20, tzinfo=UTC)
    assert_same(bare, as_of, check=True)
    assert '"rule_id"' in assert_same(full, as_of, check=True)


def test_median_is_numpys() -> None:
    rnd = random.Random(17)
    pool = [math.inf, -math.inf, 0.0, -0.0, 0.1, 0.2, 0.30000000000000004, 1e308, -1e308, 5e-324]
    for _ in range(5000):
        n = rnd.randint(1, 30)
        values = ([rnd.choice(pool) for _ in range(n)] if rnd.random() < 0.2
                  else [round(rnd.uniform(-50, 50), rnd.randint(0, 4)) for _ in range(n)])
        with np.errstate(all="ignore"):
            want = float(np.median(values))
        got = trends._median(values)
        assert repr(got) == repr(want), values


def test_deviation_split_is_baseline_deviation() -> None:
    """The rules' deviation splits rows on ISO dates as `trends.baseline_deviation` splits them on dates."""
    rnd = random.Random(5)
    history = PatientHistory("D-1")
    for _ in range(300):
        n = rnd.randint(0, 150)
        rows = []
        for i in range(n):
            d = date(2025, 1, 1) + timedelta(days=rnd.randint(0, 200))
            v = rnd.choice([float("nan"), math.inf, 0.0, 3, rnd.uniform(0, 24)]) if rnd.random() < 0.2 else i * 0.5
            rows.append(({"d": d.isoformat() if rnd.random() < 0.5 else f"{d.isoformat()}T10:00:00+00:00"}, v))
        recent, baseline = rnd.choice([5, 7, 5.5, 0.4, 1]), rnd.choice([90, 28, 14.5, 0])
        as_of = datetime(2025, 1, 1, 12, tzinfo=UTC) + timedelta(days=rnd.randint(0, 220))
        ctx = EvalContext(history, as_of)
        # as the rules called it: the rows' dates parsed; params may be any number
        want = trends.baseline_deviation([(date.fromisoformat(r["d"][:10]), float(v)) for r, v in rows],
                                         recent_days=recent, baseline_days=baseline,  # type: ignore[arg-type]
                                         as_of=(as_of - timedelta(days=1)).date())
        assert repr(trends.deviation_of(*_deviation_split(rows, recent, baseline, ctx))) == repr(want)
