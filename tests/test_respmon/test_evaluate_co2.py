"""The CO2 rules (issue 12) through `respmon evaluate`, as a team would backtest them: small histories written
as the files devices and clinics send (blood gas CSV, TcCO2 CSV, NIV CSV), each rule raising when it should
and silent when it should not."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

P = "ALS-CO2"
GAS_HEADER = "patient_id,taken_at,sample,pco2,pco2_unit,bicarbonate_mmol_l,ph,po2"
CO2_RULES = {"NS-PACO2", "NS-CO2SCREEN", "NS-TCCO2", "NE-CO2"}
DAY = date(2025, 3, 3)


def respmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "respmon", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def gases(*rows: str) -> str:
    """Blood gas rows `sample,pco2,unit,bicarbonate` taken on consecutive days from DAY + 10, 09:00 UTC."""
    lines = [GAS_HEADER]
    for i, row in enumerate(rows):
        sample, pco2, unit, bicarbonate = row.split(",")
        lines.append(f"{P},{DAY + timedelta(days=10 + i)}T09:00:00Z,{sample},{pco2},{unit},{bicarbonate},,")
    return "\n".join(lines) + "\n"


def tcco2(peak: float, peak_min: int, hours: float = 8.0, night: int = 12) -> str:
    """One sample a minute from 22:00 UTC: 42 mmHg, with `peak_min` minutes at `peak` from the fourth hour."""
    start = datetime.fromisoformat(f"{DAY + timedelta(days=night)}T22:00:00+00:00")
    lines = ["timestamp,tcpco2_mmhg,spo2,pulse"]
    for m in range(round(hours * 60)):
        value = peak if 180 <= m < 180 + peak_min else 42.0
        lines.append(f"{(start + timedelta(minutes=m)).isoformat()},{value},95,70")
    return "\n".join(lines) + "\n"


def niv(nights: range, usage: float = 7.0) -> str:
    rows = [f"{P},{DAY + timedelta(days=i)},{usage}" for i in nights]
    return "patient_id,night_date,usage_hours\n" + "\n".join(rows) + "\n"


def opened(tmp_path: Path, **files: str) -> dict[str, str]:
    """`respmon evaluate --json` over the files: rule id -> the severity it first opened at (CO2 rules only)."""
    paths = []
    for name, text in files.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        paths.append(str(path))
    result = respmon("evaluate", "--json", *paths, "--patient", P, "--as-of", str(DAY + timedelta(days=60)))
    assert result.returncode == 0, result.stderr
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        f = json.loads(line)
        if f["rule_id"] in CO2_RULES and f["state"] == "open":
            found.setdefault(f["rule_id"], f["severity"])
    return found


@pytest.mark.parametrize(("files", "expected"), [
    pytest.param({"gas": gases("arterial,45,mmHg,")}, {"NS-PACO2": "urgent"}, id="arterial 45"),
    pytest.param({"gas": gases("capillary,6.0,kPa,")}, {"NS-PACO2": "urgent"}, id="capillary 6.0 kPa = 45.0 mmHg"),
    pytest.param({"gas": gases("capillary,5.99,kPa,")}, {}, id="capillary 5.99 kPa"),
    pytest.param({"gas": gases("arterial,44.9,mmHg,")}, {}, id="arterial 44.9"),
    pytest.param({"gas": gases("end_tidal,46,mmHg,")}, {"NS-PACO2": "urgent"}, id="end-tidal 46"),
    pytest.param({"gas": gases("venous,46,mmHg,")}, {"NS-CO2SCREEN": "warn"}, id="venous 46"),
    pytest.param({"gas": gases("venous,45,mmHg,")}, {}, id="venous 45 is not a screen hit"),
    pytest.param({"gas": gases("venous,,,27")}, {"NS-CO2SCREEN": "warn"}, id="serum bicarbonate 27 alone"),
    pytest.param({"gas": gases("arterial,44,mmHg,26.9")}, {}, id="bicarbonate 26.9"),
    pytest.param({"night": tcco2(57, 12)}, {"NS-TCCO2": "high"}, id="TcCO2 12 min > 55"),
    pytest.param({"night": tcco2(53, 10)}, {"NS-TCCO2": "high"}, id="TcCO2 rise 11 to 53 for 10 min"),
    pytest.param({"night": tcco2(57, 9)}, {}, id="TcCO2 9 min > 55"),
    pytest.param({"night": tcco2(51, 60)}, {}, id="TcCO2 51 for 1 h, rise 9"),
    pytest.param({"night": tcco2(60, 60, hours=1.9)}, {}, id="TcCO2 under 2 h"),
])
def test_before_niv(tmp_path: Path, files: dict[str, str], expected: dict[str, str]) -> None:
    assert opened(tmp_path, **files) == expected


def test_niv_start_rules_are_silent_on_niv_and_ne_co2_takes_over(tmp_path: Path) -> None:
    on_niv = niv(range(40))
    assert opened(tmp_path, niv=on_niv, gas=gases("arterial,48,mmHg,28", "venous,49,mmHg,")) == {}
    assert opened(tmp_path, niv=on_niv, gas=gases("arterial,50,mmHg,")) == {"NE-CO2": "high"}
    assert opened(tmp_path, niv=on_niv, night=tcco2(58, 15)) == {"NE-CO2": "high"}
    assert opened(tmp_path, niv=niv(range(40), usage=3.5), night=tcco2(58, 15)) == {}  # not a night on NIV


def test_a_gas_from_before_niv_started_is_no_escalation(tmp_path: Path) -> None:
    found = opened(tmp_path, gas=gases("arterial,55,mmHg,"), niv=niv(range(20, 50)))
    assert found == {"NS-PACO2": "urgent"}  # opened before NIV; NE-CO2 never does


def test_parse_reads_both_co2_formats() -> None:
    data = Path(__file__).resolve().parents[1] / "data" / "synthetic"
    result = respmon("parse", "--json", str(data / "blood_gas.csv"), str(data / "tcco2_night.csv"), "--patient",
                     "ALS-004")
    assert result.returncode == 0, result.stderr
    kinds = [json.loads(line)["kind"] for line in result.stdout.splitlines()]
    assert kinds == ["blood_gas"] * 5 + ["capnography_night"]
    summary = respmon("parse", str(data / "tcco2_night.csv"), "--patient", "ALS-004").stdout
    assert "capnography_night" in summary and "tcpco2" not in summary  # samples are not printed
