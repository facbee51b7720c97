"""Regenerate the synthetic device exports in tests/data/synthetic/ (deterministic, seed 2026).

Run: python tests/data/make_samples.py
Each night has a known nadir, duration and gaps, which the parser tests check explicitly.
"""

from __future__ import annotations

import json
import random
import struct
from datetime import datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "synthetic"
SEED = 2026

O2RING_START = datetime(2026, 3, 8, 22, 30, 0)
O2RING_ROWS = 7200  # 8 h at 4 s
O2RING_NADIR = 83
O2RING_NADIR_ROW = 4000
O2RING_GAP_ROWS = range(3000, 3010)  # finger readjusted around 01:50
O2RING_TAIL_ROWS = 15  # finger off at the end
CHECKME_START = datetime(2026, 3, 9, 23, 0, 0)
CHECKME_ROWS = 3600  # 2 h at 2 s
CHECKME_NADIR = 86
BIN_START = datetime(2026, 3, 10, 22, 30, 0)
BIN_RECORDS = 5400  # 6 h at 4 s
BIN_NADIR = 85
BIN_INVALID_TAIL = 10


def _night(rng: random.Random, rows: int, nadir: int, nadir_row: int) -> list[int]:
    """Baseline 94-96 % with a dozen 3-6 point dips and one deeper dip reaching exactly `nadir`."""
    spo2 = [95 + rng.choice((-1, 0, 0, 1)) for _ in range(rows)]
    for _ in range(12):
        centre, depth = rng.randrange(50, rows - 50), rng.randint(3, 6)
        for k in range(-8, 9):
            spo2[centre + k] = min(spo2[centre + k], 95 - depth + abs(k) * depth // 9)
    for k in range(-10, 11):
        spo2[nadir_row + k] = max(nadir + abs(k), min(spo2[nadir_row + k], nadir + abs(k)))
    return spo2


def _pulse(rng: random.Random, rows: int) -> list[int]:
    return [int(62 + 6 * rng.random() + (row % 900) / 300) for row in range(rows)]


def o2ring_csv(rng: random.Random) -> str:
    spo2, pulse = _night(rng, O2RING_ROWS, O2RING_NADIR, O2RING_NADIR_ROW), _pulse(rng, O2RING_ROWS)
    lines = ["Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder"]
    for row in range(O2RING_ROWS):
        t = (O2RING_START + timedelta(seconds=4 * row)).strftime("%H:%M:%S %b %d %Y")
        missing = row in O2RING_GAP_ROWS or row >= O2RING_ROWS - O2RING_TAIL_ROWS
        motion = rng.choice((0, 0, 0, 0, 1, 3)) if not missing else 0
        s, p = ("--", "--") if missing else (spo2[row], pulse[row])
        lines.append(f"{t},{s},{p},{motion},0,0")
    return "\n".join(lines) + "\n"


def checkme_csv(rng: random.Random) -> str:
    spo2, pulse = _night(rng, CHECKME_ROWS, CHECKME_NADIR, 1800), _pulse(rng, CHECKME_ROWS)
    lines = ["Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder"]
    for row in range(CHECKME_ROWS):
        t = (CHECKME_START + timedelta(seconds=2 * row)).strftime("%H:%M:%S %b %d %Y")
        lines.append(f"{t},{spo2[row]},{pulse[row]},0,0,0")
    return "\n".join(lines) + "\n"


def o2ring_ampm_csv(rng: random.Random) -> str:
    """The other O2 Insight dialect: SpO2(%) headers, 12-hour clock; 30 min across midnight."""
    start = datetime(2026, 3, 9, 23, 50, 0)
    lines = ["Time,SpO2(%),Pulse Rate(bpm),Motion,SpO2 Reminder,PR Reminder"]
    for row in range(450):
        t = start + timedelta(seconds=4 * row)
        lines.append(f"\"{t.strftime('%I:%M:%S%p %b %d, %Y')}\",{94 + row % 3},{60 + row % 5},0,0,0")
    return "\n".join(lines) + "\n"


def o2ring_bin(rng: random.Random) -> bytes:
    header = struct.pack("<HHBBBBB", 3, BIN_START.year, BIN_START.month, BIN_START.day,
                         BIN_START.hour, BIN_START.minute, BIN_START.second).ljust(40, b"\0")  # fmt: skip
    spo2, pulse = _night(rng, BIN_RECORDS, BIN_NADIR, 2500), _pulse(rng, BIN_RECORDS)
    body = bytearray()
    for row in range(BIN_RECORDS):
        if row >= BIN_RECORDS - BIN_INVALID_TAIL:
            body += struct.pack("<BHBB", 0xFF, 0xFFFF, 0, 0)
        else:
            body += struct.pack("<BHBB", spo2[row], pulse[row], rng.choice((0, 0, 2)), 0)
    return header + bytes(body)


def oximetry_generic_csv(rng: random.Random) -> str:
    """`timestamp,spo2,pulse` at 1 s with an explicit UTC offset; one empty SpO2 cell (dropout)."""
    start = datetime.fromisoformat("2026-03-11T23:30:00+01:00")
    lines = ["timestamp,spo2,pulse"]
    for row in range(1800):
        spo2 = "" if row == 900 else str(96 - (row // 600))
        lines.append(f"{(start + timedelta(seconds=row)).isoformat()},{spo2},{70 - row % 4}")
    return "\n".join(lines) + "\n"


SPIRO_CSV = """patient_id,taken_at,fvc_l,fvc_pct_pred,fev1_l,svc_l,mip_cmh2o,mep_cmh2o,snip_cmh2o,pcf_lpm,posture,sex,age_years,height_cm,grade
ALS-001,2026-01-05T10:15:00+01:00,3.20,78,2.71,3.31,-62,88,64,310,sitting,male,61,178,A
ALS-001,2026-02-02T10:05:00+01:00,2.95,72,2.50,,-55,80,58,290,sitting,male,61,178,B
ALS-001,2026-02-02T10:25:00+01:00,2.40,59,,,,,,,supine,male,61,178,
ALS-001,2026-03-02T09:55:00+01:00,2.61,64,2.20,2.70,48,,52,255,,,,,
"""  # noqa: E501 - the CSV header line as written to the sample file

NIV_CSV = """patient_id,night_date,usage_hours,leak_p95_lpm,ahi,resp_rate,tidal_volume_ml,minute_vent_lpm,spo2_mean,spo2_t90_pct,pct_spont_triggered
ALS-001,2026-03-01,6.5,18.0,3.2,17.5,420,7.4,94.1,2.0,88
ALS-001,2026-03-02,7.1,22.5,4.0,18.0,410,7.3,93.8,3.5,85
ALS-001,2026-03-03,3.2,31.0,9.5,21.0,360,7.6,,,
ALS-001,2026-03-04,0,,,,,,,,
"""  # noqa: E501 - the CSV header line as written to the sample file

SPIRO_JSON = [
    {"patient_id": "ALS-002", "taken_at": "2026-02-10T09:30:00+00:00", "fvc_l": 3.05, "fvc_pct_pred": 81,
     "mip_cmh2o": -70, "posture": "sitting", "source": "home_spirometer", "grade": "A"},
    {"patient_id": "ALS-002", "taken_at": "2026-02-10T09:45:00+00:00", "fvc_l": 2.35, "posture": "supine"},
]  # fmt: skip

ALSFRS_JSON = {"patient_id": "ALS-001", "taken_at": "2026-03-02T11:00:00+01:00",
               "items": [3, 4, 3, 3, 3, 3, 4, 3, 3, 2, 3, 4]}  # fmt: skip
ALSFRS_FLAT_JSON = {"patient_id": "ALS-001", "taken_at": "2026-01-05T11:00:00+01:00",
                    **{f"item_{n}": s for n, s in enumerate([4, 4, 4, 3, 3, 3, 4, 4, 3, 3, 4, 4], 1)}}  # fmt: skip


def _obs(code: tuple[str, str], when: str, value: dict, supine: bool = False, subject: str = "Patient/ALS-003") -> dict:
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": code[0], "code": code[1]}]},
           "subject": {"reference": subject}, "effectiveDateTime": when, **value}  # fmt: skip
    if supine:
        position = {"coding": [{"system": "http://snomed.info/sct", "code": "40199007"}]}
        obs["extension"] = [{"url": "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition",
                             "valueCodeableConcept": position}]
    return obs


def _qty(value: float, unit: str) -> dict:
    return {"valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def fhir_bundle() -> dict:
    loinc, sct, local = "http://loinc.org", "http://snomed.info/sct", "urn:respmon:code"
    t1, t2, night = "2026-03-03T10:00:00+01:00", "2026-03-03T10:20:00+01:00", "2026-03-03T22:00:00+01:00"
    spo2 = " ".join(str(95 - (i % 7 == 0) * 3) for i in range(60)) + " E E"
    pulse = " ".join(str(64 + i % 3) for i in range(62))
    sampled = lambda data: {"valueSampledData": {"origin": {"value": 0}, "period": 1000, "dimensions": 1, "data": data}}
    observations = [
        _obs((loinc, "19870-5"), t1, _qty(2.85, "L")),
        _obs((loinc, "19872-1"), t1, _qty(69, "%")),
        _obs((loinc, "20150-9"), t1, _qty(2400, "mL")),
        _obs((sct, "27913002"), t1, _qty(-52, "cm[H2O]")),
        _obs((local, "snip"), t1, _qty(55, "cm[H2O]")),
        _obs((local, "mep"), t1, _qty(75, "cm[H2O]")),
        _obs((local, "pcf"), t1, _qty(270, "L/min")),
        _obs((loinc, "19870-5"), t2, _qty(2.20, "L"), supine=True),
        _obs((loinc, "59408-5"), night, sampled(spo2)),
        _obs((loinc, "8889-8"), night, sampled(pulse)),
        _obs((loinc, "69990-0"), "2026-03-04T07:00:00+01:00", _qty(6.5, "{events}/h")),
        _obs((local, "usage_hours"), "2026-03-04T07:00:00+01:00", _qty(7.5, "h")),
        _obs((loinc, "29463-7"), t1, _qty(71.5, "kg")),  # body weight: not used, must be reported
    ]
    entries = [{"fullUrl": "urn:uuid:patient-als-003", "resource": {"resourceType": "Patient", "id": "ALS-003"}}]
    entries += [{"fullUrl": f"urn:uuid:obs-{i}", "resource": o} for i, o in enumerate(observations)]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


BLOOD_GAS_CSV = """patient_id,taken_at,sample,pco2,pco2_unit,bicarbonate_mmol_l,ph,po2
ALS-004,2026-02-02T09:15:00+01:00,venous,47.5,mmHg,28.1,7.37,
ALS-004,2026-02-16T09:40:00+01:00,capillary,6.4,kPa,29.0,7.36,8.1
ALS-004,2026-03-02T10:05:00Z,arterial,44.0,mmHg,,7.41,82
ALS-004,2026-03-20T08:30:00Z,transcutaneous,46.2,mmHg,,,
ALS-004,2026-03-20T08:30:00Z,venous,,,27.4,,
"""
TCCO2_START = datetime(2026, 3, 12, 23, 0, 0)
TCCO2_ROWS = 720  # 6 h at 30 s
TCCO2_GAP_ROWS = range(500, 504)  # rows left out: a 2-minute hole in the timestamps
TCCO2_EMPTY_ROWS = (600, 601)  # no reading


def _tcco2(i: int) -> int:
    """First hour 41/42/43 (median 42), 44, then 14 min at 58 and 20 min at 53 from 3 h, then 45."""
    if i < 120:
        return 42 + i % 3 - 1
    if 360 <= i < 388:
        return 58
    if 388 <= i < 428:
        return 53
    return 44 if i < 360 else 45


def tcco2_night_csv() -> str:
    """A TcCO2 night (known metrics: tests/test_ingest/test_parsers_co2.py)."""
    lines = ["timestamp,tcpco2_mmhg,spo2,pulse"]
    for i in range(TCCO2_ROWS):
        if i in TCCO2_GAP_ROWS:
            continue
        at = (TCCO2_START + timedelta(seconds=30 * i)).isoformat() + "+01:00"
        tc = "" if i in TCCO2_EMPTY_ROWS else str(_tcco2(i))
        lines.append(f"{at},{tc},{'' if i == 250 else 94},68")
    return "\n".join(lines) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = random.Random(SEED)
    (OUT / "O2Ring_20260308223000.csv").write_text(o2ring_csv(rng), newline="\n")
    (OUT / "Checkme_O2_Max_20260309230000.csv").write_text(checkme_csv(rng), newline="\n")
    (OUT / "O2Ring_ampm_20260309.csv").write_text(o2ring_ampm_csv(rng), newline="\n")
    (OUT / "O2Ring_20260310223000.bin").write_bytes(o2ring_bin(rng))
    (OUT / "oximetry_generic.csv").write_text(oximetry_generic_csv(rng), newline="\n")
    (OUT / "spirometry.csv").write_text(SPIRO_CSV, newline="\n")
    (OUT / "niv.csv").write_text(NIV_CSV, newline="\n")
    (OUT / "spirometry.json").write_text(json.dumps(SPIRO_JSON, indent=2) + "\n")
    (OUT / "alsfrs.json").write_text(json.dumps(ALSFRS_JSON, indent=2) + "\n")
    (OUT / "alsfrs_flat.json").write_text(json.dumps(ALSFRS_FLAT_JSON, indent=2) + "\n")
    (OUT / "fhir_bundle.json").write_text(json.dumps(fhir_bundle(), indent=2) + "\n")
    write_co2()


def write_co2() -> None:
    """The CO2 files (issue 12): no random numbers, so the files above do not move."""
    (OUT / "blood_gas.csv").write_text(BLOOD_GAS_CSV, newline="\n")
    (OUT / "tcco2_night.csv").write_text(tcco2_night_csv(), newline="\n")


if __name__ == "__main__":
    main()
