"""Benchmark: device-export parsing speed, files and nights (canonical records) per second.

Inputs: the real ResMed sample cards (tests/data/resmed/*: STR.edf daily summaries and the DATALOG
session files PLD/SAD/EVE/CSL, plus each whole card folder), the O2Ring CSV (8 h at 4 s) and O2Ring
binary samples of tests/data/synthetic, the real Löwenstein prisma `.wmedf` (tests/data/lowenstein), a
generated 8 h 1 Hz generic `timestamp,spo2,pulse` CSV (28,800 rows), and the same night written as a Contec
`.SpO2` file and (at 4 s) as an O2Ring binary with the ring's summary in its header. Timed call:
`ingest.parsers.parse_bytes(data, name, fmt=..., patient_id=...)` as the ingest service calls it (card
folders: `parse_path`); median of `--repeat` calls after a warm-up.

Usage: python bench/parsing.py [--repeat 7] [--quick]; writes bench/results/parsing.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, generic_oximetry_csv, synthetic_spo2, write_result

sys.path.insert(0, str(ROOT / "tests" / "test_ingest"))
from device_files import contec_spo2, o2ring_bin  # the tests' generator of the documented layouts

from ingest.parsers import detect_format, parse_bytes, parse_path

DATA = ROOT / "tests" / "data"


def _time(fn, repeat: int) -> tuple[float, int]:
    out = fn()  # warm-up, and the record count
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(out)


def _row(name: str, fmt: str, size: int, seconds: float, records: int, note: str = "") -> dict:
    return {"input": name, "format": fmt, "bytes": size, "records": records, "median_ms": round(seconds * 1e3, 3),
            "files_per_s": round(1 / seconds, 1), "nights_per_s": round(records / seconds, 1),
            "mb_per_s": round(size / seconds / 1e6, 2), **({"note": note} if note else {})}


def _sad_with_oximeter(repeat: int) -> dict:
    """The real AirSense 10 SAD (7.35 h at 1 Hz) with an oximeter's readings written into every sample (the
    sample card had none attached): its oximetry night and the device SpO2 metrics of its NIV night."""
    path = DATA / "resmed" / "airsense10_autoset" / "DATALOG" / "20241126" / "20241127_004016_SAD.edf"
    data = bytearray(path.read_bytes())
    samples = np.asarray(synthetic_spo2(np.random.default_rng(11))[0], dtype=float)
    records = (len(data) - 1024) // 242  # 60 pulse + 60 SpO2 + 1 CRC int16 a record, gain 1
    for r in range(records):
        spo2 = np.nan_to_num(samples[(r * 60) % len(samples):][:60], nan=-1).round().astype("<i2")
        spo2 = np.pad(spo2, (0, 60 - len(spo2)), constant_values=95)
        pulse = np.where(spo2 == -1, -1, 64).astype("<i2")
        data[1024 + r * 242: 1024 + r * 242 + 240] = pulse.tobytes() + spo2.tobytes()
    blob = bytes(data)
    sec, n = _time(lambda: parse_bytes(blob, path.name, fmt="resmed_sad", patient_id="P"), repeat)
    return _row("airsense10_autoset SAD with readings written in (7.35 h at 1 Hz)", "resmed_sad", len(blob), sec, n,
                "records = the oximetry night + the NIV night's device SpO2 metrics")


def run(repeat: int = 7) -> dict:
    rows = []
    for card in sorted((DATA / "resmed").iterdir()):
        if not card.is_dir():
            continue
        files = [card / "STR.edf", *sorted((card / "DATALOG").rglob("*.edf"))]
        for f in files:
            data = f.read_bytes()
            fmt = detect_format(f.name, data)
            sec, n = _time(lambda d=data, f=f, fmt=fmt: parse_bytes(d, f.name, fmt=fmt, patient_id="P"), repeat)
            note = {"resmed_str": "records = NIV nights (daily summaries)",
                    "resmed_eve": "event annotations: validated, no canonical record",
                    "resmed_sad": "no oximeter attached on this card (all samples -1): no record" if n == 0 else "",
                    "resmed_pld": "one session's part of its night: pressure percentiles, leak and "
                                  "ventilation medians"}.get(fmt, "")
            rows.append(_row(f"{card.name}/{f.relative_to(card)}", fmt, len(data), sec, n, note))
        size = sum(p.stat().st_size for p in card.rglob("*") if p.is_file())
        sec, n = _time(lambda c=card: parse_path(c, patient_id="P"), repeat)
        rows.append(_row(f"{card.name}/ (whole card folder)", "resmed_card", size, sec, n,
                         "STR nights completed by their session files (PLD, SAD): one night each"))
    rows.append(_sad_with_oximeter(repeat))

    for f in [DATA / "synthetic" / "O2Ring_20260308223000.csv", DATA / "synthetic" / "O2Ring_20260310223000.bin",
              DATA / "synthetic" / "Checkme_O2_Max_20260309230000.csv"]:
        data = f.read_bytes()
        fmt = detect_format(f.name, data)
        sec, n = _time(lambda d=data, f=f, fmt=fmt: parse_bytes(d, f.name, fmt=fmt, patient_id="P"), repeat)
        rec = parse_bytes(data, f.name, fmt=fmt, patient_id="P")[0]
        hours = len(rec.spo2) * rec.interval_s / 3600
        rows.append(_row(f"synthetic/{f.name}", fmt, len(data), sec, n,
                         f"{hours:.1f} h at {rec.interval_s:g} s ({len(rec.spo2)} samples)"))

    f = DATA / "lowenstein" / "signal_real.wmedf"
    data = f.read_bytes()
    sec, n = _time(lambda d=data: parse_bytes(d, f.name, fmt="lowenstein_wmedf", patient_id="P"), repeat)
    rows.append(_row(f"lowenstein/{f.name}", "lowenstein_wmedf", len(data), sec, n,
                     "real prisma file: 4.5 h of 1-s records, 18 signals (1- and 2-byte samples); no oximeter"))

    spo2, pulse, _ = synthetic_spo2(np.random.default_rng(7))
    pairs = [(127, 255) if np.isnan(s) or np.isnan(p) else (int(s), int(p)) for s, p in zip(spo2, pulse, strict=True)]
    data = contec_spo2(datetime(2026, 3, 11, 23, 0), pairs)
    sec, n = _time(lambda: parse_bytes(data, "night.SpO2", fmt="contec_spo2", patient_id="P"), repeat)
    rows.append(_row("generated 8 h 1 Hz Contec .SpO2", "contec_spo2", len(data), sec, n,
                     f"{len(pairs):,} samples, written from the documented layout (tests/test_ingest/device_files.py)"))
    data = o2ring_bin(datetime(2026, 3, 11, 23, 0), pairs[::4], mean=94, lowest=87, drops3=53, drops4=22, t90_s=396)
    sec, n = _time(lambda: parse_bytes(data, "O2Ring.bin", fmt="o2ring_bin", patient_id="P"), repeat)
    rows.append(_row("generated 8 h O2Ring binary with the ring's summary", "o2ring_bin", len(data), sec, n,
                     f"{len(pairs[::4]):,} samples at 4 s; header summary read as device_summary"))


    data = generic_oximetry_csv(spo2, pulse, datetime(2026, 3, 11, 23, 0, tzinfo=timezone(timedelta(hours=1))))
    sec, n = _time(lambda: parse_bytes(data, "night.csv", fmt="oximetry_csv", patient_id="P"), repeat)
    rows.append(_row("generated 8 h 1 Hz generic CSV", "oximetry_csv", len(data), sec, n,
                     "28,800 samples, ISO 8601 timestamps, dropouts as empty cells"))
    return {"repeat": repeat, "timed_call": "ingest.parsers.parse_bytes (card folders: parse_path)", "inputs": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 repeats")
    args = ap.parse_args()
    result = run(3 if args.quick else args.repeat)
    write_result("parsing", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
