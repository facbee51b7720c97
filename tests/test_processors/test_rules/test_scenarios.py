"""Whole trajectories from tests/scenarios.py replayed through the default rules."""

from __future__ import annotations

import pytest

from processors.rules import load_rules, replay
from tests.scenarios import all_scenarios

RULES = load_rules()
SCENARIOS = all_scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.patient_id for s in SCENARIOS])
def test_scenario_raises_exactly_the_expected_rules(scenario) -> None:  # type: ignore[no-untyped-def]
    findings = replay(scenario.items, RULES, scenario.as_of)  # records and care-state changes
    assert {f.patient_id for f in findings} <= {scenario.patient_id}
    raised = {f.rule_id for f in findings if f.state == "open"}
    assert raised == scenario.expected, [(f.at.date().isoformat(), f.rule_id, f.severity, f.state) for f in findings]
    first_open = {}
    for f in findings:
        if f.state == "open":
            first_open.setdefault(f.rule_id, f.at)
    for before, after in scenario.order:
        assert first_open[before] < first_open[after], (before, after)


def test_stable_patient_raises_nothing() -> None:
    [stable] = [s for s in SCENARIOS if s.patient_id == "SCN-STABLE"]
    assert replay(stable.records, RULES, stable.as_of) == []


def test_rapid_decliner_slope_months_before_fvc50() -> None:
    [rapid] = [s for s in SCENARIOS if s.patient_id == "SCN-RAPID"]
    findings = replay(rapid.records, RULES, rapid.as_of)
    slope = next(f for f in findings if f.rule_id == "NS-SLOPE")
    fvc50 = next(f for f in findings if f.rule_id == "NS-FVC50")
    assert (fvc50.at - slope.at).days >= 60
    fit = slope.evidence["values"]["fit"]
    assert fit["per_month"] <= -3 and fit["estimable"]
    assert 0 < slope.evidence["values"]["days_to_fvc_floor"] <= 90


def test_nocturnal_desaturation_before_any_fvc_change() -> None:
    [noc] = [s for s in SCENARIOS if s.patient_id == "SCN-NOCTURNAL"]
    findings = replay(noc.records, RULES, noc.as_of)
    oxi = [f for f in findings if f.rule_id == "NS-OXI88"]
    assert [f.severity for f in oxi] == ["warn", "high"]
    assert not any(f.rule_id.startswith("NS-FVC") for f in findings)


def test_niv_dependence_recommends_mpv_then_tracheostomy_discussion() -> None:
    [dep] = [s for s in SCENARIOS if s.patient_id == "SCN-NIVDEP"]
    findings = replay(dep.records, RULES, dep.as_of)
    dayuse = next(f for f in findings if f.rule_id == "NE-DAYUSE")
    assert "mouthpiece" in dayuse.action
    td = next(f for f in findings if f.rule_id == "TD-DEP")
    assert td.evidence["values"]["use_median"] >= 20


def test_missing_data_severities() -> None:
    [miss] = [s for s in SCENARIOS if s.patient_id == "SCN-MISSING"]
    findings = replay(miss.records, RULES, miss.as_of)
    assert {(f.rule_id, f.severity) for f in findings} == {("DQ-NOUPLOAD", "warn"), ("DQ-PFT6M", "warn")}
    assert all(f.at == miss.as_of for f in findings)


def test_all_scenarios_together_in_one_replay() -> None:
    records = [r for s in SCENARIOS for r in s.items]
    as_of = max(s.as_of for s in SCENARIOS)
    findings = replay(records, RULES, as_of)
    for s in SCENARIOS:
        # every expected rule opens; time-based DQ rules may also open for patients whose data
        # stops before the common as_of (that is the point of DQ-NOUPLOAD / DQ-PFT6M)
        got = {f.rule_id for f in findings if f.patient_id == s.patient_id and f.state == "open"}
        assert s.expected <= got
        assert got - s.expected <= {"DQ-PFT6M", "DQ-NOUPLOAD"}


def test_every_scenario_record_lies_in_the_past() -> None:
    """Ingest refuses records dated after now (+ clock skew): a scenario reaching into the future would
    be refused on the real stack and its stream test would wait for findings that never come."""
    from datetime import UTC, datetime

    from processors.rules.history import event_time

    now = datetime.now(UTC)
    late = [(s.name, event_time(r)) for s in SCENARIOS for r in s.records if event_time(r) > now]
    assert late == []


def test_a_declined_niv_resolves_the_prompt_and_leaves_the_safety_rules() -> None:
    [declines] = [s for s in SCENARIOS if s.patient_id == "SCN-DECLINES"]
    findings = replay(declines.items, RULES, declines.as_of)
    resolved = [f for f in findings if f.state == "resolved"]
    assert [(f.rule_id, f.evidence["resolution"]) for f in resolved] == [("NS-FVC50", "no_longer_applies")]
    assert {f.rule_id for f in findings if f.state == "open"} - {"NS-FVC50"} == {"NS-PACO2", "NE-PCF270"}
