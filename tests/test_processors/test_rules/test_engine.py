"""Finding transitions (open / persist / severity change / resolve), history state and the expression semantics."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from processors.rules import PatientHistory, evaluate, findings_to_jsonl, load_rules, replay, step, tick, transition
from processors.rules.engine import Verdict
from processors.rules.expr import EvalContext, Scope, compile_expr
from processors.rules.history import event_time
from schemas import Envelope
from tests.scenarios import START, all_scenarios, alsfrs, day, niv_night, oxi_night, spiro

RULES = load_rules()
P = "E-1"


def night(i: int) -> Any:
    return START + timedelta(days=i)


def opened(findings: list, rule: str) -> list:  # type: ignore[type-arg]
    return [f for f in findings if f.rule_id == rule and f.state == "open"]


def resolved(findings: list, rule: str) -> list:  # type: ignore[type-arg]
    return [f for f in findings if f.rule_id == rule and f.state == "resolved"]


# ------------------------------------------------------------------------------ transitions
def test_same_condition_on_five_nights_gives_one_open_finding() -> None:
    records = [niv_night(P, night(i), 8.0, ahi=15.0) for i in range(5)]
    findings = replay(records, RULES)
    assert len(opened(findings, "NE-AHI")) == 1
    assert opened(findings, "NE-AHI")[0].severity == "warn"
    assert [f.rule_id for f in findings] == ["NE-AHI"]


def test_stop_gives_one_resolved_finding() -> None:
    records = [niv_night(P, night(i), 8.0, ahi=15.0) for i in range(5)]
    records += [niv_night(P, night(i), 8.0, ahi=1.0) for i in range(5, 15)]
    findings = replay(records, RULES)
    ahi = [f for f in findings if f.rule_id == "NE-AHI"]
    # warn -> info (improved, median between 5 and 10 on the way down) -> resolved
    assert [f.state for f in ahi].count("resolved") == 1
    last = ahi[-1]
    assert last.state == "resolved" and last.evidence["change"] == "resolved"
    assert last.evidence["opened_at"] == ahi[0].at.isoformat()


def test_severity_upgrade_and_improvement_give_new_open_findings() -> None:
    """Issue 12: NS-OXI88 declares `resolve_after: {evaluations: 3}`, so the improvement and the resolution
    come after 3 nights below the open level (they came the first such night before)."""
    records = [oxi_night(P, night(0), low_run_min=6.0), oxi_night(P, night(1)),
               oxi_night(P, night(2), low_run_min=6.0)] + [oxi_night(P, night(i)) for i in range(3, 8)]
    findings = [f for f in replay(records, RULES) if f.rule_id == "NS-OXI88"]
    assert [(f.state, f.severity, f.evidence["change"], f.at) for f in findings] == [
        ("open", "warn", "opened", event_time(records[0])),
        ("open", "high", "worsened", event_time(records[2])),
        ("open", "warn", "improved", event_time(records[5])),  # nights 3, 4 (still warn) and 5 below high
        ("resolved", "warn", "resolved", event_time(records[7])),  # nights 5, 6 and 7 clear
    ]
    assert findings[1].evidence["previous_severity"] == "warn"
    assert findings[3].evidence["resolution"] == "condition_cleared"
    assert findings[3].evidence["clear_since"] == event_time(records[5]).isoformat()


def test_transition_is_quiet_when_state_persists() -> None:
    h = PatientHistory(P)
    h.add(spiro(P, day(0), 40.0))
    at = day(0)
    first = transition(h, evaluate(RULES, h, at), at)
    assert {f.rule_id for f in first} == {"NS-FVC50"}
    assert transition(h, evaluate(RULES, h, at + timedelta(days=1)), at + timedelta(days=1)) == []
    assert h.open["NS-FVC50"]["opened_at"] == at.isoformat()


def test_transition_resolves_with_the_open_severity() -> None:
    h = PatientHistory(P)
    h.open["NS-MIP60"] = {"severity": "urgent", "category": "NIV_START", "opened_at": day(0).isoformat(),
                          "changed_at": day(0).isoformat(), "rule_version": "0.1.0"}
    v = Verdict("NS-MIP60", "0.1.0", "NIV_START", None, False, {"as_of": "x"}, "a", "c")
    [f] = transition(h, [v], day(1))
    assert (f.state, f.severity) == ("resolved", "urgent")
    assert h.open == {}


def test_findings_carry_the_envelope_upload() -> None:
    rec = spiro(P, day(0), 40.0)
    env = Envelope(upload_id="up-1", device_id="dev-1", received_at=day(1), record=rec)
    h = PatientHistory(P)
    [f] = step(h, env, RULES)
    assert f.upload_id == "up-1" and f.received_at == day(1)
    assert f.at == day(0)


def test_late_record_does_not_move_evaluation_time_back() -> None:
    h = PatientHistory(P)
    step(h, niv_night(P, night(10), 8.0), RULES)
    step(h, niv_night(P, night(2), 8.0), RULES)
    assert h.evaluated_at == event_time(niv_night(P, night(10), 8.0)).isoformat()


def test_tick_raises_time_based_rules_without_new_data() -> None:
    h = PatientHistory(P)
    step(h, niv_night(P, night(0), 8.0), RULES)
    assert tick(h, RULES, day(2, 12)) == []
    [f] = tick(h, RULES, day(4, 12))
    assert f.rule_id == "DQ-NOUPLOAD"
    assert f.evidence["inputs"]["days_since(niv)"]["last_date"] == night(0).isoformat()


def test_evidence_is_never_empty_and_json_serialisable() -> None:
    records = [spiro(P, day(0), 40.0, snip=30, mip=35, pcf=150), oxi_night(P, night(0), low_run_min=9),
               alsfrs(P, day(0, 11), i11=2)]
    findings = replay(records, RULES, day(1))
    # issue 12: one low cough flow is one finding (NE-PCF270, high below 160; NE-PCF160 merged into it)
    assert {"NS-FVC50", "NS-FVC80-SYM", "NS-SNIP40", "NS-MIP60", "NS-OXI88", "NE-PCF270"} <= {
        f.rule_id for f in findings}
    for f in findings:
        assert f.evidence["inputs"], f.rule_id
        assert f.evidence["values"] or f.evidence["inputs"]
        json.dumps(f.evidence)
    lines = findings_to_jsonl(findings).splitlines()
    assert len(lines) == len(findings)
    row = json.loads(lines[0])
    for key in ("patient_id", "rule_id", "category", "severity", "evidence", "citation", "at", "state", "action"):
        assert key in row


def test_replay_is_deterministic_and_order_independent() -> None:
    records = [niv_night(P, night(i), 8.0 + i * 0.2, ahi=4 + i % 9) for i in range(60)]
    records += [spiro(P, day(i), 60.0 - i / 10) for i in range(0, 60, 14)]
    a = findings_to_jsonl(replay(records, RULES, day(70)))
    b = findings_to_jsonl(replay(list(reversed(records)), RULES, day(70)))
    assert a == b and a


def test_history_round_trip_mid_replay_gives_same_findings() -> None:
    records = sorted([niv_night(P, night(i), 6.0 + i * 0.25, ahi=12.0 if 5 < i < 20 else 2.0) for i in range(60)],
                     key=event_time)
    h1 = PatientHistory(P)
    straight = [f for r in records for f in step(h1, r, RULES)]
    h2 = PatientHistory(P)
    resumed = []
    for r in records:
        h2 = PatientHistory.from_dict(json.loads(json.dumps(h2.to_dict())))  # like a faust table restore
        resumed.extend(step(h2, r, RULES))
    assert findings_to_jsonl(straight) == findings_to_jsonl(resumed)
    assert h1 == h2


def test_as_of_excludes_later_records() -> None:
    records = [spiro(P, day(0), 70.0), spiro(P, day(10), 40.0)]
    assert replay(records, RULES, day(5)) == []
    # issue 12: 70 -> 40 % in 10 days is also a fall of >= 10 points in 3 months (NS-DROP10)
    assert {f.rule_id for f in replay(records, RULES, day(11))} == {"NS-FVC50", "NS-DROP10"}


def test_multiple_patients_are_kept_apart() -> None:
    records = [spiro("A-1", day(0), 40.0), spiro("B-1", day(0), 90.0)]
    histories: dict[str, PatientHistory] = {}
    findings = replay(records, RULES, day(1), histories=histories)
    assert {(f.patient_id, f.rule_id) for f in findings} == {("A-1", "NS-FVC50")}
    assert set(histories) == {"A-1", "B-1"}


def test_naive_as_of_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(RULES, PatientHistory(P), day(0).replace(tzinfo=None))


# ------------------------------------------------------------------------------ history
def test_history_dedupes_on_natural_key() -> None:
    h = PatientHistory(P)
    h.add(niv_night(P, night(0), 5.0))
    h.add(niv_night(P, night(0), 7.0))
    h.add(niv_night(P, night(0), 7.0, source="modem"))
    assert h.count("niv") == 2
    assert [r["usage_hours"] for r in h.rows("niv") if r["src"] == "device"] == [7.0]
    h.add(spiro(P, day(0), 80.0))
    h.add(spiro(P, day(0), 81.0))
    h.add(spiro(P, day(0), None, fvc_l=2.5, posture="supine"))
    assert h.count("spiro") == 2
    assert len(h.rows("spiro")) == 1 and len(h.rows("supine")) == 1
    h.add(oxi_night(P, night(0)))
    h.add(oxi_night(P, night(0), t90_pct=5))
    assert h.count("oxi") == 1
    h.add(alsfrs(P, day(0)))
    h.add(alsfrs(P, day(0), i11=2))
    assert h.count("alsfrs") == 1 and h.rows("alsfrs")[0]["items"][10] == 2


def test_history_prunes_and_tracks_last_upload() -> None:
    h = PatientHistory(P, keep_days=400)
    h.add(spiro(P, day(0), 80.0))
    h.add(niv_night(P, night(10), 8.0))
    h.add(niv_night(P, night(420), 8.0))
    assert h.count("spiro") == 0 and h.count("niv") == 1
    assert h.last_event("niv") == event_time(niv_night(P, night(420), 8.0))
    assert h.last_event("spiro") == day(0)
    assert h.first_event("niv") == event_time(niv_night(P, night(10), 8.0)).timestamp()
    assert h.add(niv_night(P, night(1), 8.0)) is False  # older than the window: not kept


def test_supine_drop_is_stored_on_the_sitting_row() -> None:
    h = PatientHistory(P)
    h.add(spiro(P, day(0, 11), None, fvc_l=2.4, posture="supine"))
    h.add(spiro(P, day(0, 10), 79.0, fvc_l=3.0))
    assert h.rows("spiro")[0]["supine_drop_pct"] == pytest.approx(20.0)


def test_history_rejects_other_patients_and_bad_versions() -> None:
    with pytest.raises(ValueError, match="patient"):
        PatientHistory(P).add(spiro("OTHER", day(0), 80.0))
    with pytest.raises(ValueError, match="version"):
        PatientHistory.from_dict({"history_version": 99, "patient_id": P})


# ------------------------------------------------------------------------------ expression semantics
def ev(expr: str, records: list[Any], as_of: Any, params: dict | None = None) -> Any:  # type: ignore[type-arg]
    h = PatientHistory(P)
    for r in records:
        h.add(r)
    compiled = compile_expr(expr, Scope(params or {}, {}, {}))
    ctx = EvalContext(h, as_of)
    ctx.start_rule(params or {})
    return compiled.evaluate(ctx)


def test_missing_values_never_fire() -> None:
    assert ev("latest(spiro.fvc_pct_pred) < 50", [], day(0)) is False
    assert ev("not latest(oxi.valid)", [], day(0)) is None
    assert ev("latest(spiro.fvc_pct_pred) + 1", [], day(0)) is None
    assert ev("count(oxi.t90_pct > 5)", [], day(0)) == 0
    assert ev("median(niv.ahi)", [], day(0)) is None
    assert ev("missing(latest(spiro.snip_cmh2o))", [spiro(P, day(0), 80.0)], day(0)) is True
    assert ev("coalesce(latest(spiro.snip_cmh2o), 7)", [spiro(P, day(0), 80.0)], day(0)) == 7


def test_windows_and_where() -> None:
    nights_ = [niv_night(P, night(i), float(i)) for i in range(10)]  # usage 0..9 h
    as_of = event_time(nights_[-1])
    assert ev("median(niv.usage_hours, nights=3)", nights_, as_of) == 8.0
    assert ev("n(niv.usage_hours, days=4)", nights_, as_of) == 4
    assert ev("count(niv.usage_hours > 4, nights=3, where=niv.usage_hours < 9)", nights_, as_of) == 3
    assert ev("max(niv.usage_hours, days=30)", nights_, as_of) == 9.0
    assert ev("max(1, 3, 2)", [], as_of) == 3
    assert ev("1 < latest(niv.usage_hours) < 10", nights_, as_of) is True
    assert ev("latest(niv.usage_hours)", nights_, as_of - timedelta(days=2)) == 7.0  # as_of cuts the rows
    assert ev("days_since(niv)", nights_, as_of + timedelta(days=1.5)) == 1.5


def test_series_join_on_night_date() -> None:
    recs = [niv_night(P, night(i), 6.0 if i % 2 else 2.0) for i in range(4)]
    recs += [oxi_night(P, night(i), t90_pct=8) for i in range(4)]
    as_of = day(5)
    assert ev("count(oxi.t90_pct > 5, where=niv.usage_hours >= 4)", recs, as_of) == 2
    assert ev("count(oxi.t90_pct > 5 and niv.usage_hours < 4)", recs, as_of) == 2


def test_grade_filter_and_valid_only() -> None:
    recs = [spiro(P, day(0), 60.0), spiro(P, day(1), 40.0, grade="F")]
    assert ev("latest(spiro.fvc_pct_pred)", recs, day(2)) == 60.0
    assert ev("latest(spiro.fvc_pct_pred, valid_only=False)", recs, day(2)) == 40.0
    assert ev('latest(spiro.grade, valid_only=False) in ("D", "E", "F", "U")', recs, day(2)) is True


# ------------------------------------------------------------------------------ files (CLI core)
def test_evaluate_files_parses_and_replays(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from respmon.evaluate import evaluate_files

    sessions = [spiro("F-1", day(i), v).model_dump(mode="json", exclude_none=True)
                for i, v in ((0, 70.0), (30, 48.0))]
    (tmp_path / "spiro.json").write_text(json.dumps(sessions))
    csv_lines = ["patient_id,night_date,usage_hours,ahi"]
    csv_lines += [f"F-1,{night(i).isoformat()},8.0,14.0" for i in range(3)]
    (tmp_path / "niv.csv").write_text("\n".join(csv_lines) + "\n")
    findings = evaluate_files([tmp_path / "spiro.json", tmp_path / "niv.csv"], as_of=day(31))
    assert {f.rule_id for f in findings if f.state == "open"} >= {"NE-AHI"}
    assert all(f.patient_id == "F-1" for f in findings)
    only = evaluate_files([tmp_path / "spiro.json"], as_of=day(31), patient_id="F-1")
    assert {f.rule_id for f in only} == {"NS-FVC50", "NS-DROP10"}  # issue 12: 70 -> 48 % in 30 days


@pytest.mark.parametrize("scenario", all_scenarios(), ids=lambda s: s.name)
def test_evidence_on_demand_gives_the_same_findings_as_full_evaluation(scenario: Any) -> None:
    """The stream builds evidence only for verdicts that change something; the findings (evidence
    included) must be exactly those of evaluating every rule in full."""
    lazy, full = PatientHistory(scenario.patient_id), PatientHistory(scenario.patient_id)
    produced = 0
    for record in [*sorted(scenario.records, key=event_time), None]:  # None: a tick at the scenario's end
        at = scenario.as_of if record is None else event_time(record)
        if record is not None:
            lazy.add(record)
            full.add(record)
        verdicts = evaluate(RULES, lazy, at, changes_only=True)
        assert all(v.evidence == {} for v in verdicts if (lazy.open.get(v.rule_id) or {}).get("severity") == v.severity)
        got = transition(lazy, verdicts, at)
        want = transition(full, evaluate(RULES, full, at), at)
        assert got == want
        produced += len(got)
    assert produced > 0 or scenario.name == "stable"


def test_a_session_timed_to_the_microsecond_is_evaluated_at_its_own_time() -> None:
    """Row times were rounded to 0.1 ms, so 06:08:52.123456 became 06:08:52.1235: after the record's own
    evaluation time, which then did not see it. FVC 38 % raised nothing until the next record."""
    from datetime import UTC, datetime

    from processors.rules.evaluator import step
    from processors.rules.history import PatientHistory
    from processors.rules.loader import load_rules
    from schemas import SpirometrySession

    session = SpirometrySession(patient_id="P-US", taken_at=datetime(2026, 11, 20, 6, 8, 52, 123456, tzinfo=UTC),
                                fvc_l=1.5, fvc_pct_pred=38.0)
    found = step(PatientHistory("P-US"), session, load_rules())
    assert [(f.rule_id, f.state) for f in found] == [("NS-FVC50", "open")]
