"""History retention declared in the rules file (`history.keep_days`, `history.keep_max_per_kind`):
the loader's window and row-count checks, per-store pruning by days and by count, values written
before it, and the default retention giving the same findings as keeping 400 days of everything (and
no count bound) on long, changing patient histories."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.rules import PatientHistory, RulesError, findings_to_jsonl, load_rules, replay, step
from processors.rules.history import KEEP_DAYS, KEEP_MAX_PER_KIND, STORES
from processors.rules.loader import DEFAULT_RULES
from tests.scenarios import START, alsfrs, day, niv_night, oxi_night, spiro

RULES = load_rules()
P = "R-1"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ the rules file
def test_default_rules_keep_nightly_kinds_shorter_than_sessions() -> None:
    assert RULES.keep_days == {"spiro": 400, "oxi": 120, "niv": 120, "alsfrs": 400, "gas": 400, "tcco2": 400}


def test_a_window_longer_than_its_kind_keeps_is_refused_at_load(tmp_path: Path) -> None:
    site = write(tmp_path, "site.yaml", "rules:\n  NE-RRDEV:\n    params: {baseline_days: 150}\n")
    with pytest.raises(RulesError) as err:
        load_rules(overrides=site)
    message = str(err.value)
    assert err.value.file == str(site)  # the file whose change reaches past the retention
    assert err.value.rule_id == "NE-RRDEV" and err.value.field == "let.dev"
    assert "157 days of niv" in message and "history.keep_days.niv keeps 120" in message


def test_a_site_that_lengthens_a_window_raises_retention_with_it(tmp_path: Path) -> None:
    site = write(tmp_path, "site.yaml", "history:\n  keep_days: {niv: 160}\n"
                 "rules:\n  NE-RRDEV:\n    params: {baseline_days: 150}\n")
    rules = load_rules(overrides=site)
    assert rules.keep_days == {"spiro": 400, "oxi": 120, "niv": 160, "alsfrs": 400, "gas": 400, "tcco2": 400}
    assert rules.get("NE-RRDEV").params["baseline_days"] == 150


def test_shortening_retention_below_a_default_window_is_refused(tmp_path: Path) -> None:
    site = write(tmp_path, "site.yaml", "history:\n  keep_days: {spiro: 90}\n")
    with pytest.raises(RulesError) as err:
        load_rules(overrides=site)
    assert err.value.file == str(site) and err.value.rule_id == "NS-SLOPE"
    assert "180 days of spiro" in str(err.value)


@pytest.mark.parametrize(("history", "reason"), [
    ("history:\n  keep_days: {spiro: 0}\n", "from 1 to 3650, got 0"),
    ("history:\n  keep_days: {oxi: '90'}\n", "got '90'"),
    ("history:\n  keep_days: {oxi: true}\n", "got True"),
    ("history:\n  keep_days: {spo2: 90}\n", "unknown record kind"),
    ("history:\n  keep: {oxi: 90}\n", "must be a mapping with 'keep_days'"),
    ("history:\n  keep_days: 90\n", "must be a mapping of spiro, oxi, niv, alsfrs"),
])
def test_bad_retention_is_refused_naming_the_field(tmp_path: Path, history: str, reason: str) -> None:
    with pytest.raises(RulesError) as err:
        load_rules(overrides=write(tmp_path, "site.yaml", history))
    assert reason in str(err.value) and "history" in str(err.value)


def test_default_rules_keep_at_most_1000_rows_per_kind() -> None:
    assert RULES.keep_max_per_kind == KEEP_MAX_PER_KIND == 1000


def test_a_site_may_raise_the_count_bound_alone(tmp_path: Path) -> None:
    rules = load_rules(overrides=write(tmp_path, "site.yaml", "history:\n  keep_max_per_kind: 2000\n"))
    assert rules.keep_max_per_kind == 2000 and rules.keep_days == RULES.keep_days


def test_a_count_bound_below_what_a_rule_reads_is_refused_at_load(tmp_path: Path) -> None:
    """NE-RRDEV reads 5 + 90 + 2 days of NIV nights: 98 rows of one device."""
    site = write(tmp_path, "site.yaml", "history:\n  keep_max_per_kind: 97\n")
    with pytest.raises(RulesError) as err:
        load_rules(overrides=site)
    assert err.value.file == str(site) and err.value.rule_id == "NE-RRDEV" and err.value.field == "let.dev"
    assert "reads 98 niv rows, but history.keep_max_per_kind keeps 97: raise it" in str(err.value)
    assert load_rules(overrides=write(tmp_path, "ok.yaml", "history:\n  keep_max_per_kind: 98\n"))


def test_a_counted_window_longer_than_the_count_bound_names_the_file_that_lengthened_it(tmp_path: Path) -> None:
    """Sessions have no bound in days: only the count bound limits what `sessions=N` can read."""
    site = write(tmp_path, "site.yaml", "rules:\n  TD-COUGH:\n    params: {borderline_sessions: 1500}\n")
    with pytest.raises(RulesError) as err:
        load_rules(overrides=site)
    assert err.value.file == str(site) and err.value.rule_id == "TD-COUGH" and err.value.field == "when"
    assert "reads 1500 spiro rows, but history.keep_max_per_kind keeps 1000: raise it" in str(err.value)


@pytest.mark.parametrize(("value", "reason"), [
    ("0", "got 0"), ("100001", "got 100001"), ("'1000'", "got '1000'"), ("true", "got True"), ("1000.5", "got 1000.5"),
])
def test_a_bad_count_bound_is_refused_naming_file_and_field(tmp_path: Path, value: str, reason: str) -> None:
    site = write(tmp_path, "site.yaml", f"history:\n  keep_max_per_kind: {value}\n")
    with pytest.raises(RulesError) as err:
        load_rules(overrides=site)
    message = str(err.value)
    assert message.startswith(f"{site}: field 'history.keep_max_per_kind': must be a whole number of rows")
    assert reason in message and "\n" not in message


def test_a_full_rules_file_must_name_every_kind(tmp_path: Path) -> None:
    text = DEFAULT_RULES.read_text().replace("    alsfrs: 400    # questionnaires are a few a year\n", "")
    with pytest.raises(RulesError, match="history.keep_days': missing alsfrs"):
        load_rules(write(tmp_path, "rules.yaml", text))


def test_a_rules_file_without_history_keeps_the_old_400_days(tmp_path: Path) -> None:
    text = DEFAULT_RULES.read_text()
    start, end = text.index("history:\n"), text.index("rules:\n")
    rules = load_rules(write(tmp_path, "rules.yaml", text[:start] + text[end:]))
    assert rules.keep_days == {s: KEEP_DAYS for s in STORES}


# ------------------------------------------------------------------------------ the history
def test_each_store_is_pruned_to_its_own_retention() -> None:
    h = PatientHistory(P, keep_days={"spiro": 400, "oxi": 120, "niv": 120, "alsfrs": 400, "gas": 400, "tcco2": 400})
    h.add(spiro(P, day(0), 80.0))
    h.add(niv_night(P, START + timedelta(days=1)))
    h.add(alsfrs(P, day(2)))
    h.add(niv_night(P, START + timedelta(days=200)))
    assert (h.count("spiro"), h.count("niv"), h.count("alsfrs")) == (1, 1, 1)
    assert h.rows("niv")[0]["k"] == (START + timedelta(days=200)).isoformat()


def test_each_store_keeps_at_most_its_newest_keep_max_rows() -> None:
    h = PatientHistory(P, keep_max=50)
    for n in range(120):
        h.add(spiro(P, day(0) + timedelta(hours=n), 80.0 - n * 0.1))
    h.add(niv_night(P, START + timedelta(days=3)))
    assert (h.count("spiro"), h.count("niv")) == (50, 1)
    assert h.rows("spiro")[0]["k"] == (day(0) + timedelta(hours=70)).isoformat()  # the 50 newest
    assert not h.add(spiro(P, day(0), 90.0))  # a session older than the 50 kept is not stored
    assert h.first_event("spiro") == day(0).timestamp()  # first/last upload times outlive their rows
    assert PatientHistory.from_json(h.to_json()).keep_max == 50


def test_step_applies_the_rule_sets_count_bound_to_a_stored_history() -> None:
    """A history written before the bound (6,000 sessions of a flooding device) shrinks at its next event."""
    h = PatientHistory(P, keep_max=10_000)
    for n in range(1500):
        h.add(spiro(P, day(0) + timedelta(minutes=10 * n), 70.0))
    value = h.to_dict()
    del value["keep_max_per_kind"]  # as written before the bound existed
    again = PatientHistory.from_dict(value)
    step(again, spiro(P, day(20), 45.0), RULES)
    assert again.keep_max == RULES.keep_max_per_kind and again.count("spiro") == RULES.keep_max_per_kind


def test_step_applies_the_rule_sets_retention_to_a_stored_history() -> None:
    h = PatientHistory(P)  # as read back from a changelog value written with 400 days
    for n in range(150):
        step(h, niv_night(P, START + timedelta(days=n)), RULES)
    assert h.keep_days == dict(RULES.keep_days)
    assert h.count("niv") == 121  # nights 29..149: noon-to-noon event times, 120 days back from the newest


def test_values_written_before_per_store_retention_still_load() -> None:
    h = PatientHistory(P)
    h.add(niv_night(P, START))
    old = h.to_dict() | {"keep_days": 400}
    again = PatientHistory.from_dict(json.loads(json.dumps(old)))
    assert again.keep_days == {s: 400 for s in STORES} and again.count("niv") == 1
    assert PatientHistory.from_dict(json.loads(json.dumps(again.to_dict()))) == again


def test_days_since_a_kind_counts_from_its_last_upload_after_its_rows_are_pruned() -> None:
    """A patient who stopped NIV 200 days ago but still sends oximetry: the NIV rows are gone, the
    gap is still known (DQ rules must not read it as 'never had NIV')."""
    from processors.rules.expr import EvalContext, Scope, compile_expr

    since = compile_expr("days_since(niv)", Scope({}, {}, {}))
    values = []
    for keep in (dict(RULES.keep_days), 400):
        h = PatientHistory(P, keep_days=keep)
        h.add(niv_night(P, START))
        h.add(oxi_night(P, START + timedelta(days=200), interval_s=60.0))
        values.append((h.count("niv"), since.evaluate(EvalContext(h, day(202)))))
    assert values == [(0, 200.917), (1, 200.917)]  # last NIV night ended at noon of day 1


# ------------------------------------------------------------------------------ same findings
def long_patient(seed: int, nights: int = 330) -> list[Any]:
    """A year of a patient who declines: monthly spirometry, ALSFRS-R every 6 weeks, oximetry nights
    until and after NIV starts (day 150), NIV nights with rising use, drifting breathing and two
    week-long chest infections, missed nights, short and oxygen nights, leak bursts."""
    rng = np.random.default_rng(seed)
    episodes = sorted(int(a) for a in rng.integers(200, max(201, nights - 10), size=2))
    out: list[Any] = []
    for n in range(0, nights, 30):
        fvc = 85.0 - 45.0 * n / nights + rng.normal(0, 3)
        out.append(spiro(P, day(n), round(fvc, 1), snip=round(70 - 40 * n / nights, 1),
                         mip=round(80 - 35 * n / nights, 1), pcf=round(330 - 150 * n / nights),
                         grade=str(rng.choice(["A", "B", "C", "E"], p=[0.6, 0.2, 0.1, 0.1]))))
        if rng.random() < 0.3:
            out.append(spiro(P, day(n, hour=11), round(fvc * 0.8, 1), posture="supine"))
    for n in range(0, nights, 42):
        worse = 4 - min(3, n // 100)
        out.append(alsfrs(P, day(n, hour=12), i2=max(1, worse), i3=max(1, worse + 1 if worse < 4 else 4),
                          i10=max(0, worse - 1), i11=worse, i12=4 if n < 150 else 3))
    for n in range(nights):
        night = START + timedelta(days=n)
        if rng.random() < 0.1:
            continue  # a missed night
        if n < 180 or rng.random() < 0.2:
            out.append(oxi_night(P, night, interval_s=60.0, hours=float(rng.choice([8.0, 8.0, 8.0, 3.0])),
                                 t90_pct=float(max(0.0, rng.normal(2 + 12 * n / nights, 4))),
                                 low_run_min=float(rng.choice([0.0, 0.0, 3.0, 7.0])),
                                 on_o2=bool(rng.random() < 0.05), on_niv=n >= 150))
        if n >= 150:
            ill = 1.0 + 0.3 * any(a <= n < a + 8 for a in episodes)  # a chest infection: breathing faster
            use = float(np.clip(rng.normal(4 + 14 * (n - 150) / (nights - 150), 1.5), 0, 24))
            out.append(niv_night(P, night, round(use, 2), leak=round(float(rng.choice([10.0, 12.0, 40.0])), 1),
                                 ahi=round(float(abs(rng.normal(4, 3))), 1),
                                 rr=round(ill * (16 + 3 * (n - 150) / (nights - 150) + float(rng.normal(0, 0.8))), 1),
                                 mv=round((7 - 1.0 * (n - 150) / (nights - 150) + float(rng.normal(0, 0.3))) / ill, 2),
                                 spo2_t90=round(float(abs(rng.normal(3, 3))), 1)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_default_retention_gives_the_same_findings_as_keeping_400_days(seed: int) -> None:
    """Every finding, its timing and its evidence, on a year of data: the shorter nightly retention
    changes no decision the default rules make."""
    records = long_patient(seed)
    everything = dataclasses.replace(RULES, keep_days={s: 400 for s in STORES}, keep_max_per_kind=10**9)
    kept: dict[str, PatientHistory] = {}
    short = replay(records, RULES, histories=kept)
    full = replay(records, everything)
    assert len({f.rule_id for f in short}) >= 8  # the year exercises many rules, not a quiet patient
    assert findings_to_jsonl(short) == findings_to_jsonl(full)
    assert kept[P].count("niv") <= 121 and kept[P].count("spiro") == len([r for r in records if hasattr(r, "posture")])


def test_retention_shorter_than_the_loaders_bound_does_change_findings() -> None:
    """The comparison above can fail: 90 days of NIV nights (below NE-RRDEV's 97) moves a finding."""
    records = long_patient(1)
    too_short = dataclasses.replace(RULES, keep_days={**RULES.keep_days, "niv": 90, "oxi": 90})
    assert findings_to_jsonl(replay(records, too_short)) != findings_to_jsonl(replay(records, RULES))


# ------------------------------------------------------------------------------ the table value
def test_table_value_bytes_round_trip_and_values_written_before_still_load() -> None:
    """The worker's table holds `to_json` bytes; a changelog written when it held dicts (faust's JSON
    codec; the standard library's NaN) must still recover."""
    import math

    from faust.serializers import codecs

    h = PatientHistory(P, keep_days=dict(RULES.keep_days))
    for record in long_patient(4, nights=40):
        step(h, record, RULES)
    assert h.count("oxi") > 20 and h.open
    assert PatientHistory.from_json(h.to_json()) == h
    assert PatientHistory.from_json(codecs.dumps("json", h.to_dict())) == h
    legacy = h.to_dict()
    legacy["rows"]["oxi"][-1]["odi4"] = float("nan")
    again = PatientHistory.from_json(json.dumps(legacy).encode())
    assert math.isnan(again.rows("oxi")[-1]["odi4"]) and again.count("oxi") == h.count("oxi")
    assert len(h.to_json()) < len(json.dumps(h.to_dict()))  # compact: no spaces


def test_a_worker_from_before_per_kind_retention_can_still_read_the_value() -> None:
    """A rollback must not crash the older worker on values the newer one wrote: it reads
    `keep_days` as one int (and ignores `keep_days_by_kind`)."""
    h = PatientHistory(P, keep_days=dict(RULES.keep_days))
    h.add(niv_night(P, START))
    value = json.loads(h.to_json())
    assert value["keep_days"] == 400 and isinstance(value["keep_days"], int)
    assert value["keep_days_by_kind"] == dict(RULES.keep_days)
    assert PatientHistory.from_json(h.to_json()).keep_days == dict(RULES.keep_days)


@pytest.mark.parametrize("card", ["aircurve10_vauto", "airsense10_autoset"])
def test_default_retention_gives_the_same_findings_on_real_resmed_cards(card: str) -> None:
    """Real SD-card exports (100 and 244 nights of NIV): the same findings and evidence as 400 days."""
    from respmon.evaluate import load_records

    records = load_records([Path(__file__).resolve().parents[2] / "data" / "resmed" / card], patient_id="CARD")
    everything = dataclasses.replace(RULES, keep_days={s: 400 for s in STORES}, keep_max_per_kind=10**9)
    short = replay(records, RULES)
    assert short and findings_to_jsonl(short) == findings_to_jsonl(replay(records, everything))
