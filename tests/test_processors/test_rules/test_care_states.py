"""Issue 12, patient care state: what the team sets silences rules (their open findings resolve as no longer
applying), through `respmon evaluate` on small histories and a care-state CSV, as the worker does."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.decide import Alert, AlertBook
from alerts.routing import default_routing
from ingest.parsers import ParseError, parse_bytes
from processors.rules.evaluator import change_care_state, replay, step, steps
from processors.rules.history import PatientHistory
from processors.rules.loader import RulesError, load_rules
from respmon.carestate import is_care_state_csv, read_care_state_csv
from respmon.cli import main
from respmon.evaluate import evaluate_files, load_records, notifications
from schemas import CareStateChange, Finding
from tests.scenarios import START, day, gas, spiro

RULES = load_rules()
P = "CS-1"
HORIZON = timedelta(days=14)
SPIRO_HEADER = "patient_id,taken_at,fvc_pct_pred,fvc_l,mip_cmh2o,pcf_lpm,pcf_assisted,sex,age_years,height_cm"


def session(n: int, fvc_pct: float = 70.0, *, mip: float | None = None, pcf: float | None = None,
            assisted: bool = False) -> str:
    """One spirometry CSV line on day `n` (demographics given, so % predicted rules can run)."""
    cells = [P, day(n).isoformat(), fvc_pct, round(4.0 * fvc_pct / 100, 3), mip, pcf, "true" if assisted else "",
             "male", 60, 175]
    return ",".join("" if c is None else str(c) for c in cells)


def files(tmp_path: Path, sessions: list[str], states: list[str] | None = None,
          alsfrs: list[tuple[int, int]] = ()) -> list[Path]:  # type: ignore[assignment]
    """A spirometry CSV, ALSFRS-R forms ((day, item 12 score)) and a care-state CSV (`patient,since,state,note`
    lines without the patient), as a clinic would hand them to `respmon evaluate`."""
    out = [tmp_path / "spiro.csv"]
    out[0].write_text("\n".join([SPIRO_HEADER, *sessions]) + "\n")
    if alsfrs:
        forms = [{"patient_id": P, "taken_at": day(n, 9).isoformat(), "items": [4] * 11 + [item12]}
                 for n, item12 in alsfrs]
        out.append(tmp_path / "alsfrs.json")
        out[-1].write_text(json.dumps(forms))
    if states is not None:
        out.append(tmp_path / "states.csv")
        out[-1].write_text("patient_id,since,state,note\n" + "".join(f"{P},{line}\n" for line in states))
    return out


def since(n: int) -> str:
    return (START + timedelta(days=n)).isoformat()


def opened(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings if f.state == "open"}


def resolutions(findings: list[Finding]) -> dict[str, str]:
    return {f.rule_id: f.evidence["resolution"] for f in findings if f.state == "resolved"}


def alerts(records: list[Any], rules: Any = RULES) -> dict[str, Alert]:
    """The alerts the worker would hold at the end, by category (the same `alerts.decide`)."""
    book = AlertBook(HORIZON)
    for _, found in steps(records, rules):
        book.apply(found)
    return {category: alert for (_, category), alert in book.alerts.items()}


# ------------------------------------------------------------------------------------------ invasive ventilation
def test_invasive_ventilation_silences_niv_start_and_tracheostomy_discussion(tmp_path: Path) -> None:
    sessions = [session(0, 45.0), session(10, 40.0), session(20, 70.0, pcf=150, assisted=True),
                session(30, 70.0, pcf=150)]
    without = evaluate_files(files(tmp_path, sessions))
    assert {"NS-FVC50", "TD-COUGH", "NE-PCF270"} <= opened(without)

    paths = files(tmp_path, sessions, [f"{since(5)},invasive_ventilation,tracheostomy on 2025-01-11"])
    found = evaluate_files(paths)
    assert opened(found) == {"NS-FVC50", "NE-PCF270"}  # the cough-flow rule is not silenced by it
    assert resolutions(found) == {"NS-FVC50": "no_longer_applies"}
    resolved = next(f for f in found if f.state == "resolved")
    assert resolved.at == datetime.combine(START + timedelta(days=5), time(0), UTC)
    assert resolved.evidence["applies"]["care_state"] == {
        "invasive_ventilation": {"set_by": "care_state_csv", "since": since(5)}}

    niv_start = alerts(load_records(paths))["NIV_START"]
    assert (niv_start.status, niv_start.resolution) == ("resolved", "no_longer_applies")


def test_alsfrs_item_12_at_zero_alone_acts_like_invasive_ventilation(tmp_path: Path) -> None:
    """Item 12 = 1 (continuous NIV day and night) opens TD-DEP; item 12 = 0 (invasive ventilation) ends it
    as no longer applying, with no care state set, and keeps the tracheostomy-discussion rules silent."""
    paths = files(tmp_path, [session(0, 70.0), session(20, 70.0, pcf=150, assisted=True)],
                  alsfrs=[(0, 1), (10, 0)])
    found = evaluate_files(paths)
    assert opened(found) == {"TD-DEP"}
    [resolved] = [f for f in found if f.state == "resolved"]
    assert (resolved.rule_id, resolved.evidence["resolution"]) == ("TD-DEP", "no_longer_applies")
    assert resolved.evidence["applies"]["care_state"] == {
        "invasive_ventilation": {"shown_by": "latest(alsfrs.item(12)) == 0"}}
    assert alerts(load_records(paths))["TRACH_DISCUSS"].resolution == "no_longer_applies"


# ------------------------------------------------------------------------------------------ NIV declined
def test_niv_declined_stops_niv_start_prompts_but_safety_rules_still_raise(tmp_path: Path) -> None:
    sessions = [session(0, 45.0), session(10, 45.0, mip=35), session(30, 70.0, pcf=150)]
    hypercapnia = gas(P, day(20), 50.0, sample="capillary")
    routing = default_routing("http://offline.invalid/")

    told = notifications([*load_records(files(tmp_path, sessions)), hypercapnia], RULES, routing, HORIZON)
    assert [(n.category, n.change, n.severity) for n in told if n.category == "NIV_START"] == [
        ("NIV_START", "opened", "high"), ("NIV_START", "worsened", "urgent")]  # hypercapnia worsens it

    declined = [*load_records(files(tmp_path, sessions, [f"{since(5)},niv_declined,declined at clinic"])),
                hypercapnia]
    told = notifications(declined, RULES, routing, HORIZON)
    assert [(n.category, n.change, n.rules) for n in told] == [
        ("NIV_START", "opened", ("NS-FVC50",)),  # before the decline
        ("NIV_START", "opened", ("NS-PACO2",)),  # safety: hypercapnia is told although NIV was declined
        ("NIV_ESCALATE", "opened", ("NE-PCF270",)),
    ]
    found = replay(declined, RULES)
    assert "NS-MIP60" not in opened(found) and resolutions(found)["NS-FVC50"] == "no_longer_applies"


def test_a_rule_keeps_speaking_only_in_the_states_it_names(tmp_path: Path) -> None:
    """The mechanism behind the safety rules, in a rules file of its own: two NIV_START rules on one value,
    one of them a safety rule in niv_declined, neither in end_of_life; `care_state()` reads the state."""
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("""
version: "t1"
care_states:
  niv_declined: {silences: [NIV_START]}
  end_of_life: {silences: [all]}
rules:
  - {id: PLAIN, category: NIV_START, severity: high, when: latest(spiro.fvc_pct_pred) < 50, action: a, citation: c}
  - {id: SAFE, category: NIV_START, severity: high, when: latest(spiro.fvc_pct_pred) < 50, action: a, citation: c,
     keeps_speaking_when: [niv_declined]}
  - {id: READS, category: DATA_QUALITY, severity: info, when: 'care_state() == "niv_declined"', action: a,
     citation: c}
""")
    rules = load_rules(rules_file)
    records: list[Any] = [spiro(P, day(0), 45.0), _change("niv_declined", 5)]
    found = replay(records, rules)
    assert opened(found) == {"PLAIN", "SAFE", "READS"} and resolutions(found) == {"PLAIN": "no_longer_applies"}
    found = replay([*records, _change("end_of_life", 9)], rules)
    assert resolutions(found) == {"PLAIN": "no_longer_applies", "SAFE": "no_longer_applies",
                                  "READS": "no_longer_applies"}


# ------------------------------------------------------------------------------------------ end of life, left service
def test_end_of_life_silences_everything_unless_the_site_keeps_it(tmp_path: Path) -> None:
    sessions = [session(0, 70.0, pcf=150), session(10, 45.0, pcf=140)]
    paths = files(tmp_path, sessions, [f"{since(5)},end_of_life,comfort care only"])
    found = evaluate_files(paths)
    assert opened(found) == {"NE-PCF270"} and resolutions(found) == {"NE-PCF270": "no_longer_applies"}
    assert all(f.at < day(5) for f in found if f.state == "open")  # NS-FVC50 on day 10: silent

    site = tmp_path / "site.yaml"
    site.write_text("version: \"eol-cough\"\ncare_states:\n  end_of_life: {keeps: [NE-PCF270]}\n")
    kept = evaluate_files(paths, overrides=site)
    assert [(f.rule_id, f.state, f.severity) for f in kept] == [("NE-PCF270", "open", "high")]


def test_left_service_silences_everything_and_a_site_cannot_keep_anything(tmp_path: Path) -> None:
    paths = files(tmp_path, [session(0, 45.0, pcf=150), session(10, 40.0, pcf=140, mip=30)],
                  [f"{since(5)},left_service,moved to another region"])
    found = evaluate_files(paths)
    assert all(f.at < day(5) for f in found if f.state == "open")
    assert set(resolutions(found).values()) == {"no_longer_applies"}
    assert set(resolutions(found)) == opened(found)
    site = tmp_path / "site.yaml"
    site.write_text("care_states:\n  left_service: {keeps: [DATA_QUALITY]}\n")
    with pytest.raises(RulesError, match="field 'care_states.left_service.keeps': left_service silences everything"):
        load_rules(overrides=site)


def test_none_clears_the_state_and_the_rules_speak_again(tmp_path: Path) -> None:
    paths = files(tmp_path, [session(0, 45.0)], [f"{since(5)},niv_declined,", f"{since(20)},none,changed mind"])
    found = evaluate_files(paths)
    assert [(f.rule_id, f.state, f.at.date()) for f in found] == [
        ("NS-FVC50", "open", day(0).date()), ("NS-FVC50", "resolved", START + timedelta(days=5)),
        ("NS-FVC50", "open", START + timedelta(days=20))]


# ------------------------------------------------------------------------------------------ the stream's order
def test_a_state_set_for_the_past_applies_from_the_latest_evaluation_on() -> None:
    """The worker receives a change after data dated later than its `since`: findings already raised stand,
    and what it silences resolves at the latest evaluation (time never goes back)."""
    history = PatientHistory(P)
    step(history, spiro(P, day(0), 45.0), RULES)
    step(history, spiro(P, day(10), 44.0), RULES)
    [resolved] = change_care_state(history, _change("invasive_ventilation", 3), RULES)
    assert (resolved.rule_id, resolved.state, resolved.at) == ("NS-FVC50", "resolved", day(10))
    assert change_care_state(history, _change("invasive_ventilation", 3, change_id="again"), RULES) == []
    assert step(history, spiro(P, day(12), 40.0), RULES) == []


def test_the_history_keeps_the_changes_that_still_decide_a_time() -> None:
    history = PatientHistory(P)
    first = _change("niv_declined", 10)
    assert history.set_care_state(first) and not history.set_care_state(first)  # a replayed message
    history.set_care_state(_change("end_of_life", 20))
    history.set_care_state(_change("invasive_ventilation", 5))  # set later, from earlier: wins from day 5 on
    restored = PatientHistory.from_json(history.to_json())
    assert restored == history
    states = [(n, (restored.care_state_at(day(n).timestamp()) or {}).get("state")) for n in (4, 5, 15, 25)]
    assert states == [(4, None), (5, "invasive_ventilation"), (15, "invasive_ventilation"),
                      (25, "invasive_ventilation")]


# ------------------------------------------------------------------------------------------ the CSV and the command
def test_the_csv_is_told_by_its_header_and_its_errors_name_line_and_field(tmp_path: Path) -> None:
    good = tmp_path / "states.csv"
    good.write_text("patient_id,since,state,note\nCS-9,2025-02-01,end_of_life,\"family, hospice\"\n")
    assert is_care_state_csv(good) and not is_care_state_csv(tmp_path / "missing.csv")
    [change] = read_care_state_csv(good)
    assert (change.state, change.since, change.note) == ("end_of_life", date(2025, 2, 1), "family, hospice")
    assert read_care_state_csv(good)[0].change_id == change.change_id  # the same line, the same change

    bad = tmp_path / "bad.csv"
    for line, expected in (("CS-9,2025-02-01,asleep,x", "line 2: field state"),
                           ("CS-9,02/01/2025,end_of_life,x", "line 2: since must be a date"),
                           ("CS 9,2025-02-01,end_of_life,x", "line 2: field patient_id")):
        bad.write_text(f"patient_id,since,state,note\n{line}\n")
        with pytest.raises(ValueError, match=expected) as error:
            read_care_state_csv(bad)
        assert "CS" not in str(error.value).replace(str(bad), "")  # no patient id in the message


def test_respmon_evaluate_reads_the_csv_next_to_the_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    paths = files(tmp_path, [session(0, 45.0)], [f"{since(5)},niv_declined,"])
    assert main(["evaluate", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-3:] for line in lines] == [["high", "NIV_START", "NS-FVC50"]] * 2
    assert "resolved" in lines[1]


def test_ingest_never_takes_a_care_state_csv() -> None:
    """A device must never set a care state: detection refuses the file (ingest answers 422), and the
    format id is not one ingest knows."""
    data = b"patient_id,since,state,note\nCS-9,2025-02-01,left_service,\n"
    with pytest.raises(ParseError, match="set by the care team"):
        parse_bytes(data, "states.csv")
    with pytest.raises(ParseError, match="unknown format"):
        parse_bytes(data, "states.csv", fmt="care_state_csv")


def test_a_change_cannot_start_after_the_day_it_is_set() -> None:
    with pytest.raises(ValueError, match="since must not be later"):
        CareStateChange(patient_id=P, state="end_of_life", since=date(2026, 3, 3), set_by="dr-a",
                        set_at=datetime(2026, 3, 1, 12, tzinfo=UTC))
    assert CareStateChange(patient_id=P, state="none", since=date(2026, 3, 2), set_by="dr-a",
                           set_at=datetime(2026, 3, 1, 23, tzinfo=UTC)).model_dump_json().startswith(
        '{"kind":"care_state"')  # how the worker tells it from an envelope


# ------------------------------------------------------------------------------------------ the rules file
@pytest.mark.parametrize(("extra", "message"), [
    ("care_states:\n  niv_declined: {silences: [NS-NOPE]}\n",
     "field 'care_states.niv_declined.silences': unknown rule id or category 'NS-NOPE'"),
    ("care_states:\n  asleep: {silences: [all]}\n", "must be one of niv_declined"),
    ("care_states:\n  end_of_life: {silences: [all], when: 'spiro.fvc_l > 1'}\n", "must be a yes/no condition"),
])
def test_a_bad_care_states_section_is_one_line(tmp_path: Path, extra: str, message: str) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text('version: "t1"\nrules:\n  - {id: R1, category: NIV_START, severity: high,'
                          ' when: latest(spiro.fvc_pct_pred) < 50, action: a, citation: c}\n' + extra)
    with pytest.raises(RulesError, match=message):
        load_rules(rules_file)


def test_the_default_rules_say_which_rules_are_safety_rules() -> None:
    silenced = {r.id for r in RULES if "niv_declined" in r.silenced_by}
    safety = {r.id for r in RULES if r.category == "NIV_START"} - silenced
    assert {"NS-PACO2", "NS-TCCO2"} <= safety and not {"NS-FVC50", "NS-MIP60", "NS-OXI88"} & safety
    assert all({"left_service", "end_of_life"} <= r.silenced_by for r in RULES)
    assert {r.id for r in RULES if "invasive_ventilation" in r.silenced_by} >= {
        "NS-FVC50", "NE-ADH", "NE-DAYUSE", "TD-DEP", "TD-COUGH", "TD-INTOL"}


def _change(state: str, n: int, change_id: str | None = None) -> CareStateChange:
    return CareStateChange(change_id=change_id or uuid.uuid4().hex, patient_id=P, state=state,
                           since=START + timedelta(days=n), set_by="dr-a", set_at=day(n, 0) + timedelta(days=1))
