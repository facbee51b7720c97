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
