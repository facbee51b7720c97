"""The clinical scenario suite (issue 12, `clinical_histories.py`): each history is run through the code of
`respmon evaluate --alerts` (the rules' `steps`, then `alerts.decide` through `AlertBook`, routed as the worker
routes) and must end with exactly its active alerts, never raise its silent rules, and stay within its
notification budget; a few are also written as the files clinics and devices send and run through the command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.decide import Alert, AlertBook, Notification
from alerts.routing import default_routing
from processors.rules import load_rules
from processors.rules.evaluator import steps
from processors.rules.history import event_time
from respmon.cli import main
from respmon.evaluate import notifications
from schemas import AlsfrsR, BloodGas, CapnographyNight, Finding, NivNight, OximetryNight, SpirometrySession
from schemas.findings import SEVERITY_ORDER
from tests.scenarios import day
from tests.test_processors.test_rules.clinical_histories import History, all_histories, form, session

RULES = load_rules()
ROUTING = default_routing("http://offline.invalid/")
HORIZON = timedelta(days=14)
"""RESPMON_NOTIFY_HORIZON_DAYS' default, as the command uses it."""
HISTORIES = all_histories()
IDS = [f"{h.patient_id}:{h.name}" for h in HISTORIES]


@dataclass(frozen=True)
class Outcome:
    findings: list[Finding]
    sent: list[Notification]
    alerts: list[Alert]
    """Every alert at the end (active or resolved)."""


def run(history: History) -> Outcome:
    """What `respmon.evaluate.notifications` does, keeping the findings and the alert book to look at after."""
    book = AlertBook(HORIZON)
    findings: list[Finding] = []
    sent: list[Notification] = []
    for patient, found in steps(history.items, RULES, history.as_of):
        findings += found
        told = book.apply(found, history.now)
        data_at = patient.last_event()
        if data_at is not None:
            told += book.announce(patient.patient_id, data_at, history.now or data_at)
        sent += [n for n in told if ROUTING.notify_routes(n.category, n.severity)]
    return Outcome(findings, sent, list(book.alerts.values()))


def active(alerts: Sequence[Alert]) -> set[tuple[str, str, frozenset[str]]]:
    return {(a.category, a.severity, frozenset(a.open_rules)) for a in alerts if a.active}


OUTCOMES = {h.patient_id: run(h) for h in HISTORIES}


def test_the_suite_covers_at_least_40_situations_one_patient_each() -> None:
    assert len(HISTORIES) >= 40
    assert len({h.patient_id for h in HISTORIES}) == len(HISTORIES)
    assert len({h.name for h in HISTORIES}) == len(HISTORIES)


def test_every_history_lies_in_the_past_and_names_real_rules() -> None:
    """Ingest refuses records from the future; a silent rule that does not exist would assert nothing."""
    now = datetime.now(UTC)
    ids = {r.id for r in RULES}
    for h in HISTORIES:
        assert all(event_time(r) <= h.as_of < now for r in h.records), h.name
        assert h.silent <= ids, (h.name, h.silent - ids)
        assert all(rules <= ids for _, _, rules in h.active), h.name


@pytest.mark.parametrize("history", HISTORIES, ids=IDS)
def test_history(history: History) -> None:
    out = OUTCOMES[history.patient_id]
    trail = [(f.at.date().isoformat(), f.rule_id, f.state, f.severity) for f in out.findings]
    assert {f.patient_id for f in out.findings} <= {history.patient_id}
    assert active(out.alerts) == set(history.active), trail
    raised = {f.rule_id for f in out.findings if f.state == "open"}
    assert not raised & history.silent, trail
    told = [(n.category, n.severity, n.change, n.rules) for n in out.sent]
    assert len(out.sent) <= history.budget, told
    for a in out.alerts:  # no indication missed: what is active at warn or worse, the team was told at that level
        if a.active and SEVERITY_ORDER[a.severity] >= SEVERITY_ORDER["warn"]:
            assert a.notified_severity == a.severity, (a.category, a.severity, told)


@pytest.mark.parametrize("history", HISTORIES, ids=IDS)
def test_the_command_code_sends_the_same(history: History) -> None:
    """`respmon evaluate --alerts` runs `respmon.evaluate.notifications`: the suite's loop must be that code."""
    assert notifications(history.items, RULES, ROUTING, HORIZON, as_of=history.as_of, now=history.now) == \
        OUTCOMES[history.patient_id].sent


def test_a_backfill_tells_only_what_holds_now() -> None:
    [year] = [h for h in HISTORIES if h.now is not None]
    out = OUTCOMES[year.patient_id]
    assert len({f.rule_id for f in out.findings if f.state == "open"}) >= 4  # a year of findings, kept as history
    assert [(n.category, n.rules) for n in out.sent] == [("NIV_ESCALATE", ("NE-LEAK",))]
    assert year.now is not None and year.now - out.sent[0].at <= HORIZON  # announced once the data are recent


def test_flapping_series_send_no_more_than_their_first_news() -> None:
    flapping = [h for h in HISTORIES if h.name.startswith("flapping")]
    assert len(flapping) == 3
    for h in flapping:
        out = OUTCOMES[h.patient_id]
        assert [n.change for n in out.sent] in (["opened"], ["worsened"], ["opened", "worsened"]), h.name
        assert all(f.state == "open" for f in out.findings if f.rule_id in ("NS-OXI88", "NS-T90", "NE-AHI")), h.name


# ---------------------------------------------- known noise, fixed: NS-FVC80-SYM reads symptoms over 100 days
def test_orthopnoea_reported_every_quarter_is_one_alert() -> None:
    p = "SUITE-X1"
    records = [session(p, d, 70.0) for d in range(0, 300, 30)] + [form(p, d + 1, i11=3) for d in range(0, 300, 90)]
    sent = notifications(records, RULES, ROUTING, HORIZON, as_of=day(300))
    assert [(n.category, n.change) for n in sent] == [("NIV_START", "opened")]


# ---------------------------------------------------------------------------------------- through the command
def _cell(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("\n".join([",".join(columns), *(",".join(_cell(r.get(c)) for c in columns) for r in rows)])
                    + "\n")
    return path


NIV_COLUMNS = ("patient_id", "night_date", "usage_hours", "leak_p95_lpm", "leak_kind", "ahi", "resp_rate",
               "tidal_volume_ml", "minute_vent_lpm", "spo2_t90_pct", "o2_lpm")
GAS_COLUMNS = ("patient_id", "taken_at", "sample", "pco2", "pco2_unit", "bicarbonate_mmol_l", "ph", "po2")


def write_files(history: History, folder: Path) -> list[Path]:
    """The history as a clinic would hand it over: spirometry and ALSFRS-R JSON, an NIV CSV, one oximetry or
    TcCO2 CSV a night, a blood gas CSV, and the team's care-state CSV."""
    by_kind: dict[type, list[Any]] = {}
    for r in history.records:
        by_kind.setdefault(type(r), []).append(r)
    paths: list[Path] = []
    if sessions := by_kind.pop(SpirometrySession, []):
        paths.append(folder / "spirometry.json")
        paths[-1].write_text(json.dumps([s.model_dump(mode="json", exclude_none=True) for s in sessions]))
    if forms := by_kind.pop(AlsfrsR, []):
        paths.append(folder / "alsfrs.json")
        paths[-1].write_text(json.dumps([{"patient_id": f.patient_id, "taken_at": f.taken_at.isoformat(),
                                          "items": list(f.items)} for f in forms]))
    if nights := by_kind.pop(NivNight, []):
        paths.append(_csv(folder / "niv.csv", NIV_COLUMNS, [n.model_dump(mode="json") for n in nights]))
    if gases := by_kind.pop(BloodGas, []):
        rows = [{**g.model_dump(mode="json"), "pco2": g.pco2_mmhg, "pco2_unit": "mmHg", "ph": None, "po2": None}
                for g in gases]
        paths.append(_csv(folder / "gas.csv", GAS_COLUMNS, rows))
    for i, o in enumerate(by_kind.pop(OximetryNight, [])):
        extra = () if o.o2_lpm is None else ("o2_lpm",)
        stamps = [(o.start + timedelta(seconds=k * o.interval_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
                  for k in range(len(o.spo2))]
        rows = [{"timestamp": t, "spo2": s, "pulse": p, "o2_lpm": o.o2_lpm}
                for t, s, p in zip(stamps, o.spo2, o.pulse, strict=True)]
        paths.append(_csv(folder / f"oxi_{i}.csv", ("timestamp", "spo2", "pulse", *extra), rows))
    for i, c in enumerate(by_kind.pop(CapnographyNight, [])):
        rows = [{"timestamp": (c.start + timedelta(seconds=k * c.interval_s)).isoformat(), "tcpco2_mmhg": v}
                for k, v in enumerate(c.tcpco2)]
        paths.append(_csv(folder / f"tcco2_{i}.csv", ("timestamp", "tcpco2_mmhg"), rows))
    assert not by_kind, f"no file writer for {list(by_kind)}"
    if history.care_states:
        rows = [{"patient_id": c.patient_id, "since": c.since.isoformat(), "state": c.state, "note": c.note}
                for c in history.care_states]
        paths.append(_csv(folder / "care_states.csv", ("patient_id", "since", "state", "note"), rows))
    return paths


COMMAND = ["SUITE-13", "SUITE-23", "SUITE-44", "SUITE-45", "SUITE-51", "SUITE-53"]
"""Litres without demographics, oxygen nights, ALSFRS-R with NIV, a care state with a gas, TcCO2, a backfill."""


@pytest.mark.parametrize("pid", COMMAND)
def test_respmon_evaluate_alerts_on_the_files(pid: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [history] = [h for h in HISTORIES if h.patient_id == pid]
    args = ["evaluate", "--alerts", "--patient", pid, "--as-of", history.as_of.isoformat()]
    if history.now is not None:
        args += ["--now", history.now.isoformat()]
    assert main([*args, *map(str, write_files(history, tmp_path))]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == [n.to_json() for n in OUTCOMES[pid].sent]
    assert 0 < len(printed) <= history.budget
