"""Benchmark: the worker's per-event cost of a patient's state, against how much history the patient has.

The throughput benchmark uses new patients (one night each). A real patient uploads every night for
months, and the worker keeps up to `KEEP_DAYS` of metric rows per patient in the faust table
`patient-history`, whose value is the whole history: every event reads it (`PatientHistory.from_dict`),
steps the rules on it and writes it back whole to the changelog topic (`to_dict` + JSON). This times
that per-event work, as `processors/app.py` does it, for histories of 0 to 400 nights of an NIV
summary and an oximetry night each, plus the size of the changelog value written per event.

Usage: python bench/history_cost.py [--repeat 20] [--quick]; writes bench/results/history_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

from processors.rules.evaluator import step  # noqa: E402
from processors.rules.history import KEEP_DAYS, PatientHistory  # noqa: E402
from processors.rules.loader import load_rules  # noqa: E402
from schemas import Envelope, NivNight, OximetryNight  # noqa: E402

FIRST = date(2025, 1, 1)


def niv(patient: str, night: date) -> NivNight:
    return NivNight(patient_id=patient, night_date=night, usage_hours=7.5, leak_p95_lpm=12.0, ahi=3.0)


def oximetry(patient: str, night: date) -> OximetryNight:
    """8 h at 4 s around 94 % with a dip every 10 minutes (the history keeps only its metrics)."""
    spo2 = [89.0 if i % 150 < 8 else 94.0 for i in range(7200)]
    start = datetime(night.year, night.month, night.day, 22, tzinfo=UTC)
    return OximetryNight(patient_id=patient, start=start, interval_s=4.0, spo2=spo2, pulse=[62.0] * 7200)


def envelope(record: NivNight | OximetryNight) -> Envelope:
    return Envelope(upload_id=str(uuid.uuid4()), device_id="bench", received_at=datetime.now(UTC), record=record)


def stored_history(nights: int, rules: object) -> dict:
    """The table value of a patient who uploaded `nights` nights (NIV + oximetry each)."""
    history = PatientHistory("H1")
    for n in range(nights):
        for record in (niv("H1", FIRST + timedelta(days=n)), oximetry("H1", FIRST + timedelta(days=n))):
            step(history, envelope(record), rules)  # type: ignore[arg-type]
    return json.loads(json.dumps(history.to_dict()))  # as faust hands it back from the changelog


def per_event(stored: dict, nights: int, rules: object, repeat: int) -> dict[str, float]:
    """One new NIV night: read the state, step the rules, write the state back (median ms)."""
    read, rules_ms, write = [], [], []
    size = 0
    for _ in range(repeat):
        record = envelope(niv("H1", FIRST + timedelta(days=nights)))
        t0 = time.perf_counter()
        history = PatientHistory.from_dict(stored)
        t1 = time.perf_counter()
        step(history, record, rules)  # type: ignore[arg-type]
        t2 = time.perf_counter()
        value = json.dumps(history.to_dict()).encode()
        t3 = time.perf_counter()
        read.append(t1 - t0)
        rules_ms.append(t2 - t1)
        write.append(t3 - t2)
        size = len(value)
    med = {k: round(statistics.median(v) * 1e3, 3) for k, v in
           (("read_state_ms", read), ("rules_step_ms", rules_ms), ("write_state_ms", write))}
    return {"nights_in_history": nights, **med, "total_ms": round(sum(med.values()), 3),
            "changelog_value_kib": round(size / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rules = load_rules()
    lengths = [0, 30, 90] if args.quick else [0, 30, 90, 180, 365, KEEP_DAYS]
    rows = []
    for nights in lengths:
        rows.append(per_event(stored_history(nights, rules), nights, rules, 5 if args.quick else args.repeat))
        print(json.dumps(rows[-1]))
    path = write_result("history_cost", {
        "what": "per event, as the worker does it: PatientHistory.from_dict (table value) + rules step on one "
                "new NIV night + to_dict and JSON (the changelog value); histories of N nights of NIV + oximetry",
        "keep_days": KEEP_DAYS, "quick": args.quick, "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
