"""The `respmon` command as a user runs it: JSON lines out, one clear line per bad file, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"


def respmon(*args: str) -> subprocess.CompletedProcess[str]:
    """`respmon <args>` in a child process; the tests assert on its exit code and output."""
    return subprocess.run([sys.executable, "-m", "respmon", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_parse_prints_canonical_records_with_kind() -> None:
    result = respmon("parse", "--json", str(DATA / "synthetic" / "spirometry.csv"),
                     str(DATA / "resmed" / "aircurve10_vauto" / "STR.edf"), "--patient", "ALS-001")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = {r["kind"] for r in records}
    assert kinds == {"spirometry", "niv_night"}
    assert all(r["patient_id"] == "ALS-001" for r in records)


def test_parse_bad_file_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "night.csv"
    bad.write_text("Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder\n"
                   "00:21:19 Mar 09 2026,97,61,0,0,0\n00:21:15 Mar 09 2026,97,61,0,0,0\n")
    result = respmon("parse", str(bad), "--patient", "P1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "line 3" in lines[0]


def test_evaluate_prints_findings_as_json_lines() -> None:
    result = respmon("evaluate", "--json", str(DATA / "synthetic" / "spirometry.csv"), "--as-of", "2026-03-31")
    assert result.returncode == 0, result.stderr
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    assert findings, "the synthetic history contains a MIP below 60 cmH2O"
    for f in findings:
        assert {"patient_id", "rule_id", "category", "severity", "evidence", "citation", "at"} <= f.keys()
    assert "NS-MIP60" in {f["rule_id"] for f in findings}


def test_evaluate_with_invalid_rules_file_names_rule_and_field(tmp_path: Path) -> None:
    rules = tmp_path / "site.yaml"
    rules.write_text('version: "9"\nrules:\n  - id: X-1\n    category: NIV_START\n    severity: high\n'
                     "    when: fvc < 50\n    action: a\n    citation: {sources: [AAN09], text: t}\n")
    result = respmon("evaluate", str(DATA / "synthetic" / "spirometry.csv"), "--rules", str(rules))
    assert result.returncode == 1
    assert "X-1" in result.stderr and "when" in result.stderr and "Traceback" not in result.stderr


def test_worker_with_a_bad_site_rules_file_exits_with_one_line(tmp_path: Path) -> None:
    """Checked before anything connects or the supervisor restarts it: exit 2, the file, rule and field."""
    import os

    site = tmp_path / "site.yaml"
    site.write_text("rules:\n  NE-RRDEV:\n    params: {baseline_days: 150}\n")
    env = {**os.environ, "RESPMON_RULES_OVERRIDES": str(site), "RESPMON_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "respmon", "worker"], capture_output=True, text=True,
                            timeout=120, env=env, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"respmon worker: {site}: rule NE-RRDEV: field 'let.dev'")
    assert "history.keep_days.niv" in lines[0]


def _flapping_history(folder: Path) -> list[Path]:
    """NIV nights whose AHI alternates 12 and 8 (the 7-night median crosses 10 back and forth) for one
    patient, and a session with FVC and SNIP both below their NIV_START thresholds for another."""
    niv = folder / "niv.csv"
    rows = ["patient_id,night_date,usage_hours,ahi"]
    for i in range(60):
        ahi = (12.0 if i % 2 else 8.0) if i >= 20 else 3.0
        rows.append(f"CLI-NIV,2026-{9 + i // 30:02d}-{1 + i % 30:02d},7.0,{ahi}")
    niv.write_text("\n".join(rows) + "\n")
    spiro = folder / "spiro.csv"
    spiro.write_text("patient_id,taken_at,fvc_l,fvc_pct_pred,snip_cmh2o\nCLI-FVC,2026-10-29T09:00:00+00:00,1.8,45,30\n")
    return [niv, spiro]


def test_evaluate_alerts_prints_the_notifications_the_stream_would_send(tmp_path: Path) -> None:
    files = [str(p) for p in _flapping_history(tmp_path)]
    result = respmon("evaluate", "--alerts", *files)
    assert result.returncode == 0, result.stderr
    sent = [json.loads(line) for line in result.stdout.splitlines()]
    for note in sent:
        assert set(note) == {"patient_id", "category", "severity", "change", "rules", "at"}
    by_patient = {n["patient_id"]: n for n in sent}
    assert len(sent) == 2  # a flapping AHI is one notification, two NIV_START rules are one alert
    assert {k: by_patient["CLI-NIV"][k] for k in ("category", "severity", "change", "rules")} == {
        "category": "NIV_ESCALATE", "severity": "warn", "change": "worsened", "rules": ["NE-AHI"]}  # info: not sent
    assert {k: by_patient["CLI-FVC"][k] for k in ("category", "severity", "change", "rules")} == {
        "category": "NIV_START", "severity": "high", "change": "opened", "rules": ["NS-FVC50", "NS-SNIP40"]}


def test_evaluate_alerts_backtests_a_rules_change(tmp_path: Path) -> None:
    """Without NE-AHI's dwell the same nights would send a message every time the median rises again."""
    site = tmp_path / "site.yaml"
    site.write_text("rules: {NE-AHI: {resolve_after: {evaluations: 1}}}\n")
    files = [str(p) for p in _flapping_history(tmp_path)]
    result = respmon("evaluate", "--alerts", *files, "--overrides", str(site))
    assert result.returncode == 0, result.stderr
    assert sum(json.loads(line)["patient_id"] == "CLI-NIV" for line in result.stdout.splitlines()) > 5


def test_evaluate_alerts_as_a_backfill_sends_only_what_holds_now(tmp_path: Path) -> None:
    files = [str(p) for p in _flapping_history(tmp_path)]
    now = respmon("evaluate", "--alerts", *files, "--now", "2026-11-01")
    assert now.returncode == 0, now.stderr
    sent = {json.loads(line)["patient_id"]: json.loads(line) for line in now.stdout.splitlines()}
    assert sent["CLI-NIV"]["change"] == "opened" and sent["CLI-NIV"]["severity"] == "warn"  # announced, held now
    assert sent["CLI-FVC"]["change"] == "opened"
    later = respmon("evaluate", "--alerts", *files, "--now", "2027-06-01")
    assert later.returncode == 0 and later.stdout == ""  # a year-old card: history, not news
