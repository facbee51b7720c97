"""The O2Ring's own night summary (file header): read as device-reported values, kept apart from ours, and
compared with ours on every real file in the tests and on generated files (DEFINITIONS.md § 1.5)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from device_files import o2ring_bin
from ingest_testlib import DATA, SYN, check_golden

from ingest.parsers import ParseError, parse_bytes, parse_path
from processors.metrics.oximetry import night_metrics
from schemas import OximetryNight
from schemas.oximetry import DeviceSummary

PID = "ALS-003"
START = datetime(2026, 3, 10, 22, 30)
SHARED_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "samples"
REAL_FOLDERS = [DATA / "resmed", DATA / "lowenstein", SHARED_SAMPLES]
"""Every real recording in the tests (tests/data/synthetic is generated)."""
REAL_FILES_WITH_A_DEVICE_SUMMARY: set[str] = set()
"""None yet: the real samples are ResMed cards and a Löwenstein file, neither with an oximeter attached.
Adding a real O2Ring binary adds it here, and the comparison below then runs on it."""


def compare(night: OximetryNight) -> dict[str, dict[str, float | None]]:
    """Ours against the device's, metric by metric: {name: {ours, device, difference}}."""
    m = night_metrics(night)
    s = night.device_summary
    assert s is not None
    pairs = {
        "mean_spo2": (m.mean_spo2, s.mean_spo2),
        "min_spo2": (m.min_spo2, s.min_spo2),
        "drops3": (m.odi3_events, s.drops3),
        "drops4": (m.odi4_events, s.drops4),
        "t90_s": (round(m.t90_min * 60), s.t90_s),
    }
    return {k: {"ours": o, "device": d, "difference": None if o is None or d is None else round(o - d, 1)}
            for k, (o, d) in pairs.items()}


def designed_night() -> list[tuple[int, int]]:
    """6 h at 4 s: baseline 95, twenty 40-s dips to 90 (5 points) ten minutes apart, one 3-min stretch at
    87, and the last minute with the finger off (0xFF, 0xFFFF)."""
    spo2 = np.full(5400, 95)
    for k in range(20):
        at = 300 + 150 * k
        spo2[at : at + 10] = [93, 92, 91, 90, 90, 90, 90, 91, 93, 94]
    spo2[4000:4045] = 87
    pairs = [(int(v), 60) for v in spo2]
    pairs[-15:] = [(0xFF, 0xFFFF)] * 15
    return pairs


def test_header_summary_becomes_device_reported_values() -> None:
    data = o2ring_bin(START, designed_night(), mean=94, lowest=87, drops3=53, drops4=22, t90_s=396)
    (night,) = parse_bytes(data, "O2Ring.bin", patient_id=PID)
    assert night.device_summary == DeviceSummary(mean_spo2=94, min_spo2=87, drops3=53, drops4=22, t90_s=396)
    assert (night.device_mean_spo2, night.device_min_spo2, night.device_t90_s) == (94, 87, 396)
    assert (night.device_drops3, night.device_drops4) == (53, 22)
    again = OximetryNight.model_validate_json(night.model_dump_json())  # JSON and the Kafka envelope keep it
    assert again.device_summary == night.device_summary


def test_ours_against_the_devices_on_a_generated_night(capsys: pytest.CaptureFixture[str]) -> None:
    """Figures the ring might write for this night (its own, undocumented rules) against ours (DEFINITIONS.md)."""
    data = o2ring_bin(START, designed_night(), mean=94, lowest=87, drops3=23, drops4=20, t90_s=212)
    (night,) = parse_bytes(data, "O2Ring.bin", patient_id=PID)
    table = compare(night)
    print(json.dumps(table))
    valid = np.array([s for s, _ in designed_night()[:-15]], dtype=float)
    assert table["mean_spo2"]["ours"] == pytest.approx(valid.mean(), abs=0.05)
    assert table["min_spo2"] == {"ours": 87, "device": 87, "difference": 0}
    assert table["t90_s"] == {"ours": 45 * 4, "device": 212, "difference": -32}  # ours: < 90 only, the stretch
    # the 20 dips; the 3-min stretch is longer than an event's 120 s (DEFINITIONS.md § 1.3): T90 only
    assert table["drops3"] == {"ours": 20, "device": 23, "difference": -3}
    assert table["drops4"] == {"ours": 20, "device": 20, "difference": 0}


def real_nights() -> dict[str, list[OximetryNight]]:
    """Every real file in the tests that parses to oximetry nights, by path."""
    found: dict[str, list[OximetryNight]] = {}
    for folder in REAL_FOLDERS:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if not path.is_file() or path.suffix.lower() in {".md", ".crc", ".tgt", ".json", ""}:
                continue
            try:
                records = parse_path(path, patient_id=PID)
            except ParseError:
                continue  # BRP, identification and licence files: not a recording we read
            nights = [r for r in records if isinstance(r, OximetryNight)]
            found[str(path)] = nights
    return found


def test_ours_against_the_devices_on_every_real_file(capsys: pytest.CaptureFixture[str]) -> None:
    nights = real_nights()
    assert any(p.endswith("signal_real.wmedf") for p in nights) and any(p.endswith("_SAD.edf") for p in nights)
    with_summary = {p: [compare(n) for n in ns if n.device_summary] for p, ns in nights.items()}
    with_summary = {p: t for p, t in with_summary.items() if t}
    print(json.dumps({"real files read": len(nights), "with a device summary": with_summary}, indent=1))
    assert {Path(p).name for p in with_summary} == REAL_FILES_WITH_A_DEVICE_SUMMARY
    for tables in with_summary.values():  # a real ring's figures should be near ours where definitions agree
        for table in tables:
            assert abs(table["mean_spo2"]["difference"] or 0) <= 1.5
            assert abs(table["min_spo2"]["difference"] or 0) <= 3


@pytest.mark.parametrize(("header", "note"), [
    ({}, None),  # a ring (or our synthetic file) that wrote no summary
    ({"mean": 94, "lowest": 97}, "implausible"),  # lowest above the average
    ({"mean": 130, "lowest": 87}, "implausible"),
    ({"mean": 94, "lowest": 87, "drops3": 2, "drops4": 9}, "implausible"),
])
def test_missing_or_implausible_summary_leaves_the_night(header: dict[str, Any], note: str | None) -> None:
    from ingest.parsers import parse_bytes_with_notes

    data = o2ring_bin(START, designed_night()[:300], **header)
    (night,), notes = parse_bytes_with_notes(data, "O2Ring.bin", patient_id=PID)
    assert night.device_summary is None and len(night.spo2) == 300
    assert (note in " ".join(notes)) if note else notes == []


def test_existing_synthetic_file_has_no_summary() -> None:
    (night,) = parse_path(SYN / "O2Ring_20260310223000.bin", patient_id=PID)
    assert night.device_summary is None and night.device_t90_s is None


def test_count_of_255_reads_as_at_least_255() -> None:
    data = o2ring_bin(START, designed_night()[:300], mean=94, lowest=80, drops3=255, drops4=255, t90_s=65535)
    (night,) = parse_bytes(data, "O2Ring.bin", patient_id=PID)
    assert night.device_drops3 == 255 and night.device_t90_s == 65535


def test_respmon_parse_golden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`respmon parse` on a generated 20-minute O2Ring file with its summary: the summary line is the golden."""
    from respmon.cli import main

    path = tmp_path / "O2Ring_20260310223000.bin"
    path.write_bytes(o2ring_bin(START, designed_night()[:300], mean=94, lowest=90, drops3=1, drops4=1, t90_s=0))
    assert main(["parse", str(path), "--patient", PID]) == 0
    check_golden("respmon_parse_o2ring_summary", [line.replace(str(path), path.name)
                                                  for line in capsys.readouterr().out.splitlines()])
