"""The O2Ring's own summary in the oximetry rules' evidence (rules 0.2.1, issue 18): the ring's figures for the
night beside ours when it reported them, null when it did not (never an older night's), and no finding changed
by them; histories written by the previous release (rows without the fields) still load and evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.rules import load_rules
from processors.rules.engine import evaluate
from processors.rules.evaluator import replay, step
from processors.rules.expr import ExprError, Scope, compile_expr
from processors.rules.expr.kinds import KINDS
from processors.rules.history import PatientHistory
from processors.rules.loader import DEFAULT_RULES, RuleSet
from respmon.evaluate import evaluate_files, load_records
from schemas import Finding, OximetryNight
from schemas.kinds import DEVICE_SUMMARY_COLUMNS
from schemas.oximetry import DeviceSummary
from tests.scenarios import all_scenarios
from tests.test_ingest.device_files import o2ring_bin
from tests.test_processors.test_rules.clinical_histories import all_histories

PID = "RING-1"
RULES = load_rules()
OXI_RULES = ("NS-OXI88", "NS-T90")
RING = {"mean": 93, "lowest": 86, "drops3": 41, "drops4": 23, "t90_s": 5400}
"""What the ring's header says (bytes of the O2Ring file)."""
AS_DEVICE = {"device_mean_spo2": 93.0, "device_min_spo2": 86.0, "device_drops3": 41, "device_drops4": 23,
             "device_t90_s": 5400}
"""The same figures as the evidence shows them."""
NO_DEVICE = dict.fromkeys(DEVICE_SUMMARY_COLUMNS)
DESATURATING = [(87, 70)] * 1350 + [(95, 65)] * 4050
"""6 h at 4 s: 90 min at 87 % (T90 25 %, T88 90 min), then 95 %."""


def write_nights(folder: Path, first: int, count: int, **ring: int) -> list[Path]:
    """`count` desaturating O2Ring nights from March `first` 2025, 22:30; `ring` = the header's summary."""
    paths = []
    for i in range(count):
        start = datetime(2025, 3, first + i, 22, 30)
        path = folder / f"O2Ring_{start:%Y%m%d%H%M%S}.bin"
        path.write_bytes(o2ring_bin(start, DESATURATING, **ring))
        paths.append(path)
    return paths


def opened(findings: Sequence[Finding], rule_id: str) -> Finding:
    return [f for f in findings if f.rule_id == rule_id and f.state == "open"][-1]


def values(finding: Finding) -> dict[str, Any]:
    return dict(finding.evidence["values"])


def device_values(finding: Finding) -> dict[str, Any]:
    return {k: values(finding)[k] for k in DEVICE_SUMMARY_COLUMNS}


def test_a_ring_night_with_its_summary_shows_the_ring_figures_beside_ours(tmp_path: Path) -> None:
    findings = evaluate_files(write_nights(tmp_path, 1, 3, **RING), patient_id=PID)
    oxi88, t90 = opened(findings, "NS-OXI88"), opened(findings, "NS-T90")
    assert device_values(oxi88) == AS_DEVICE and device_values(t90) == AS_DEVICE
    assert values(oxi88)["t90_pct"] == 25.0 and values(oxi88)["t88_min"] == 90.0  # ours, beside
    assert values(t90)["t90_pct_latest"] == 25.0
    assert oxi88.rule_version == "0.2.1"
    # the evidence says which night the ring's figures are from: the night ours are from
    inputs = oxi88.evidence["inputs"]
    ring_input = next(v for k, v in inputs.items() if k.startswith("latest(oxi.device_t90_s"))
    ours_input = next(v for k, v in inputs.items() if k.startswith("latest(oxi.t90_pct"))
    assert ring_input["date"] == ours_input["date"] == "2025-03-02"  # high on the second night


def test_a_ring_night_without_a_summary_shows_none(tmp_path: Path) -> None:
    findings = evaluate_files(write_nights(tmp_path, 1, 3), patient_id=PID)
    for rule_id in OXI_RULES:
        assert device_values(opened(findings, rule_id)) == NO_DEVICE
        assert opened(findings, rule_id).severity in ("warn", "high")


def test_the_ring_figures_of_an_older_night_are_not_shown_for_a_night_without_them(tmp_path: Path) -> None:
    paths = write_nights(tmp_path, 1, 2, **RING) + write_nights(tmp_path, 3, 1)
    history = PatientHistory(PID)
    found: list[Finding] = []
    for record in sorted(load_records(paths, PID), key=lambda r: r.start):
        found += step(history, record, RULES)
    assert device_values(opened(found, "NS-OXI88")) == AS_DEVICE  # opened on the first night, which had them
    # after the third night (the ring wrote no summary): the newest night's figures are none, not the first's
    verdicts = {v.rule_id: v for v in evaluate(RULES, history, datetime(2025, 3, 4, 12, tzinfo=UTC))}
    for rule_id in OXI_RULES:
        assert {k: verdicts[rule_id].evidence["values"][k] for k in DEVICE_SUMMARY_COLUMNS} == NO_DEVICE
    assert verdicts["NS-OXI88"].evidence["values"]["t90_pct"] == 25.0


def test_device_fields_are_numbers_and_skip_missing_is_checked_at_load() -> None:
    assert {KINDS["oxi"].fields[f] for f in DEVICE_SUMMARY_COLUMNS} == {"number"}
    with pytest.raises(ExprError, match="must be yes/no"):
        compile_expr("latest(oxi.device_t90_s, skip_missing=1)", Scope({}, {}, {}))


def _previous_release(history: PatientHistory) -> dict[str, Any]:
    """The history as the previous release wrote it: oximetry rows without the device fields."""
    state = history.to_dict()
    for row in state["rows"]["oxi"]:
        for f in DEVICE_SUMMARY_COLUMNS:
            del row[f]
    return state


def test_a_history_from_the_previous_release_loads_and_a_replayed_night_stays_a_replay(tmp_path: Path) -> None:
    records = sorted(load_records(write_nights(tmp_path, 1, 3, **RING), PID), key=lambda r: r.start)
    history = PatientHistory(PID)
    for record in records[:2]:
        step(history, record, RULES)
    old = PatientHistory.from_json(PatientHistory.from_dict(_previous_release(history)).to_json())
    assert all(f not in row for row in old.to_dict()["rows"]["oxi"] for f in DEVICE_SUMMARY_COLUMNS)
    # at-least-once delivery after the upgrade: the night already held is a replay, no new evaluation
    evaluated = old.evaluated_at
    assert step(old, records[1], RULES) == [] and old.evaluated_at == evaluated
    assert not old.add(records[1])
    # the next night evaluates as before: the old nights show no ring figures, the new one does
    fresh = PatientHistory.from_dict(history.to_dict())
    from_old, from_fresh = step(old, records[2], RULES), step(fresh, records[2], RULES)
    assert [(f.rule_id, f.state, f.severity) for f in from_old] == [
        (f.rule_id, f.state, f.severity) for f in from_fresh]
    assert old.open == fresh.open and "NS-T90" in old.open
    now = datetime(2025, 3, 4, 12, tzinfo=UTC)
    verdicts = {v.rule_id: v for v in evaluate(RULES, old, now)}
    assert {k: verdicts["NS-T90"].evidence["values"][k] for k in DEVICE_SUMMARY_COLUMNS} == AS_DEVICE  # night 3's
    on_old_night = {v.rule_id: v for v in evaluate(RULES, old, datetime(2025, 3, 3, 12, tzinfo=UTC))}
    assert {k: on_old_night["NS-T90"].evidence["values"][k] for k in DEVICE_SUMMARY_COLUMNS} == NO_DEVICE


def _without_added_evidence(rules_text: str) -> str:
    """The rules file before 0.2.1: no device evidence, no NE-DESAT evidence."""
    kept = [line for line in rules_text.splitlines()
            if "skip_missing=False" not in line and "t90_pct_latest: latest(oxi.t90_pct, where=niv" not in line]
    text = "\n".join(kept).replace('version: "0.2.1"', 'version: "0.2.0"')
    desat_action = "    action: >-\n      SpO2 is below 90 % for more than {t90_pct} % of the night"
    return text.replace("    evidence:\n" + desat_action, desat_action)


def _comparable(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    out = []
    for f in findings:
        d = f.model_dump(mode="json")
        d.pop("rule_version")
        d["evidence"]["values"] = {k: v for k, v in d["evidence"].get("values", {}).items()
                                   if k not in DEVICE_SUMMARY_COLUMNS
                                   and not (f.rule_id == "NE-DESAT" and k == "t90_pct_latest")}
        d["evidence"]["inputs"] = {k: v for k, v in d["evidence"].get("inputs", {}).items()
                                   if "skip_missing=False" not in k
                                   and not k.startswith("latest(oxi.t90_pct, where=niv")}
        out.append(d)
    return out


def _with_ring_summary(items: Sequence[Any]) -> list[Any]:
    summary = DeviceSummary(mean_spo2=93, min_spo2=86, drops3=41, drops4=23, t90_s=5400)
    return [r.model_copy(update={"device_summary": summary}) if isinstance(r, OximetryNight) else r for r in items]


def test_the_device_evidence_changes_no_finding_of_the_oximetry_scenarios(tmp_path: Path) -> None:
    """Every scenario and clinical history with oximetry, its nights with a ring summary: the same findings
    (state, severity, time, evidence but the added keys) under 0.2.1 as under the file without them."""
    path = tmp_path / "before.yaml"
    path.write_text(_without_added_evidence(DEFAULT_RULES.read_text()))
    before: RuleSet = load_rules(path)
    assert before.version == "0.2.0"
    assert all(not any(n.startswith("device_") for n, _ in r.evidence) for r in before)
    cases = [(s.items, s.as_of) for s in all_scenarios()] + [(h.items, h.as_of) for h in all_histories()]
    cases = [(items, as_of) for items, as_of in cases if any(isinstance(r, OximetryNight) for r in items)]
    assert len(cases) >= 10
    told = 0
    for items, as_of in cases:
        ringed = _with_ring_summary(items)
        after = replay(ringed, RULES, as_of)
        assert _comparable(after) == _comparable(replay(ringed, before, as_of))
        told += sum(1 for f in after if f.rule_id in (*OXI_RULES, "NE-DESAT") and f.state == "open")
    assert told >= 5  # the oximetry rules did open in these cases
