"""Hysteresis and dwell (issue 12): a finding resolves, or drops a severity, only after its condition has
stayed clear (or milder) for the rule's `resolve_after`; worse news opens at once; a rule that stops
applying resolves at once and says so."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from processors.rules import PatientHistory, RulesError, load_rules, replay, step, tick
from processors.rules.history import event_time
from processors.rules.rulefile import ResolveAfter
from tests.scenarios import START, all_scenarios, alsfrs, day, niv_night, oxi_night, spiro

RULES = load_rules()
P = "H-1"


def night(i: int) -> Any:
    return START + timedelta(days=i)


def of(rule: str, findings: list[Any]) -> list[tuple[str, str, str]]:
    return [(f.state, f.severity, f.evidence["change"]) for f in findings if f.rule_id == rule]


def test_a_value_flapping_around_its_threshold_night_to_night_gives_one_finding() -> None:
    flapping = next(s for s in all_scenarios() if s.patient_id == "SCN-FLAPOXI")
    findings = replay(flapping.records, RULES, flapping.as_of)
    assert of("NS-T90", findings) == [("open", "warn", "opened")]  # without the dwell: 24 openings, 23 resolutions


def test_it_resolves_once_clear_for_the_nights_that_raised_it() -> None:
    records = [oxi_night(P, night(i), t90_pct=14.0 if i in (0, 1) else 2.0) for i in range(6)]
    findings = [f for f in replay(records, RULES) if f.rule_id == "NS-T90"]
    # opened night 1 (2 of 3); clear from night 3 (nights 1-3: one above 10 %); 3 clear nights: night 5
    assert [(f.state, f.at) for f in findings] == [("open", event_time(records[1])),
                                                  ("resolved", event_time(records[5]))]
    assert findings[1].evidence["resolution"] == "condition_cleared"
    assert findings[1].evidence["clear_since"] == event_time(records[3]).isoformat()


def test_worse_severity_opens_at_once_milder_only_after_the_dwell() -> None:
    """NE-AHI (NIV_ESCALATE: 7 evaluations): info -> warn the night the median passes 10; back to info
    only after 7 nights below it."""
    ahis = [7.0] * 7 + [15.0] * 7 + [7.0] * 14
    records = [alsfrs(P, day(0, 9), i12=3)] + [niv_night(P, night(i), 7.0, ahi=a) for i, a in enumerate(ahis)]
    findings = [f for f in replay(records, RULES) if f.rule_id == "NE-AHI"]
    assert [(f.severity, f.evidence["change"]) for f in findings] == [
        ("info", "opened"), ("warn", "worsened"), ("info", "improved")]
    nights = [f.at for f in findings]
    assert nights[1] == event_time(records[1 + 10])  # night 10: 4 of the last 7 nights at 15, median 15
    assert nights[2] == event_time(records[1 + 17 + 6])  # night 17 first below 10 (median 7), 7 nights later


def test_timer_evaluations_do_not_count_toward_the_dwell() -> None:
    h = PatientHistory(P)
    for i in range(3):
        step(h, oxi_night(P, night(i), t90_pct=14.0), RULES)
    assert "NS-T90" in h.open
    for i in range(3, 5):
        step(h, oxi_night(P, night(i), t90_pct=2.0), RULES)  # clear from night 4 (nights 2-4)
    for hours in range(1, 48):
        assert tick(h, RULES, event_time(oxi_night(P, night(4))) + timedelta(hours=hours)) == []
    assert h.open["NS-T90"]["pending"]["clear"]["count"] == 1
    step(h, oxi_night(P, night(5), t90_pct=2.0), RULES)
    # NS-T90 only: since issue 12's T90 arm, NS-OXI88 also opened on these nights and moves on its own dwell
    [resolved] = [f for f in step(h, oxi_night(P, night(6), t90_pct=2.0), RULES) if f.rule_id == "NS-T90"]
    assert resolved.state == "resolved"


def test_only_records_the_condition_reads_count() -> None:
    """NS-FVC50 (NIV_START: 2 evaluations) reads spirometry: oximetry nights in between do not resolve it."""
    records: list[Any] = [spiro(P, day(0), 45.0), spiro(P, day(10), 60.0)]
    records += [oxi_night(P, night(i)) for i in range(11, 30)]
    assert of("NS-FVC50", replay(records, RULES)) == [("open", "high", "opened")]
    records.append(spiro(P, day(40), 61.0))
    assert of("NS-FVC50", replay(records, RULES)) == [("open", "high", "opened"), ("resolved", "high", "resolved")]


def test_a_rule_that_stops_applying_resolves_at_once_as_no_longer_applies() -> None:
    started = next(s for s in all_scenarios() if s.patient_id == "SCN-STARTSNIV")
    findings = [f for f in replay(started.records, RULES, started.as_of) if f.rule_id == "NS-FVC50"]
    assert [f.state for f in findings] == ["open", "resolved"]
    assert findings[1].evidence["resolution"] == "no_longer_applies"
    assert findings[1].at == event_time(started.records[1])  # the first NIV night, no dwell
    assert findings[1].evidence["applies"] == {"condition": "not on_niv", "value": False}


def test_days_dwell_counts_time_not_records() -> None:
    """NE-ADH resolves 14 days after adherence recovered (`resolve_after: {days: 14}`), whatever the nights."""
    usage = [6.0] * 20 + [2.0] * 14 + [7.0] * 40
    records = [niv_night(P, night(i), u) for i, u in enumerate(usage)]
    findings = [f for f in replay(records, RULES) if f.rule_id == "NE-ADH"]
    assert [f.state for f in findings] == ["open", "resolved"]
    clear_since = datetime.fromisoformat(findings[1].evidence["clear_since"])
    assert findings[1].at - clear_since == timedelta(days=14)  # 14 nights: the first night 14 days on


def test_the_pending_dwell_survives_the_history_round_trip() -> None:
    records = [oxi_night(P, night(i), t90_pct=14.0 if i < 3 else 2.0) for i in range(8)]
    h1, h2 = PatientHistory(P), PatientHistory(P)
    straight = [f for r in records for f in step(h1, r, RULES)]
    resumed = []
    for r in records:
        h2 = PatientHistory.from_dict(json.loads(json.dumps(h2.to_dict())))
        resumed.extend(step(h2, r, RULES))
    assert straight == resumed and [f.state for f in straight if f.rule_id == "NS-T90"] == ["open", "resolved"]


def test_persistence_comes_from_the_rule_else_its_category() -> None:
    assert RULES.get("NS-FVC50").resolve_after == ResolveAfter(evaluations=2)
    assert RULES.get("NS-OXI88").resolve_after == ResolveAfter(evaluations=3)
    assert RULES.get("TD-DEP").resolve_after == ResolveAfter(evaluations=2, days=14)
    assert RULES.get("NE-ADH").resolve_after == ResolveAfter(days=14)
    assert RULES.get("NS-T90").reads == frozenset({"oxi"})
    assert RULES.get("TD-INTOL").reads == frozenset({"niv", "spiro"})  # through the niv_indicated definition


def test_a_site_may_change_persistence(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text('resolve_after: {NIV_START: {days: 30}}\nrules: {NS-T90: {resolve_after: {evaluations: 1}}}\n')
    rules = load_rules(overrides=site)
    assert rules.get("NS-FVC50").resolve_after == ResolveAfter(days=30)
    assert rules.get("NS-OXI88").resolve_after == ResolveAfter(evaluations=3)  # its own setting stays
    assert rules.get("NS-T90").resolve_after == ResolveAfter(evaluations=1)


@pytest.mark.parametrize(("text", "message"), [
    ("{}", "needs evaluations >= 1 or days >= 1"),
    ("{evaluations: '3'}", "must be a whole number from 0 to 1000"),
    ("{weeks: 2}", "must be {evaluations: N} and/or {days: D}"),
])
def test_a_bad_resolve_after_is_refused_naming_the_rule(tmp_path: Path, text: str, message: str) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"rules: {{NS-T90: {{resolve_after: {text}}}}}\n")
    with pytest.raises(RulesError, match="rule NS-T90: field 'resolve_after") as error:
        load_rules(overrides=site)
    assert message in str(error.value)


def test_an_unknown_category_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("resolve_after: {NIV_STOP: {evaluations: 2}}\n")
    with pytest.raises(RulesError, match="resolve_after"):
        load_rules(overrides=site)


def test_a_replayed_record_is_not_a_new_evaluation() -> None:
    """The worker re-reads events after a crash (at-least-once): a record already held must change
    nothing, or it would count toward `resolve_after.evaluations` and resolve the alert early (the
    SIGKILL fault test saw NS-T90 resolve and re-open where the offline evaluator did not)."""
    from datetime import UTC, datetime, timedelta

    from processors.rules.evaluator import step
    from processors.rules.history import PatientHistory
    from processors.rules.loader import load_rules
    from schemas import SpirometrySession

    rules, history = load_rules(), PatientHistory("P-REPLAY")
    t0 = datetime(2026, 6, 1, 9, tzinfo=UTC)

    def session(days: int, pct: float) -> SpirometrySession:
        return SpirometrySession(patient_id="P-REPLAY", taken_at=t0 + timedelta(days=days), fvc_l=2.0,
                                 fvc_pct_pred=pct)

    assert [(f.rule_id, f.state) for f in step(history, session(0, 38.0), rules)] == [("NS-FVC50", "open")]
    assert step(history, session(30, 60.0), rules) == []  # clear once: the dwell (2 evaluations) runs
    state = history.to_json()
    assert step(history, session(30, 60.0), rules) == []  # the same record again
    assert history.to_json() == state, "a replay changed the history"
    assert [(f.rule_id, f.state) for f in step(history, session(60, 60.0), rules)] == [("NS-FVC50", "resolved")]
