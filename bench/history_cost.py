"""Benchmark: the worker's per-event cost of a patient's state, against how much history the patient has.

The throughput benchmark uses new patients (one night each). A real patient uploads every night for
months, and the worker keeps metric rows per patient in the faust table `patient-history`, whose value
is the whole history: every event reads it (`PatientHistory.from_json`), steps the rules on it and
writes it back whole to the changelog topic (`to_json`). This times that per-event work, as
`processors/app.py` does it, for patients who uploaded 0 to 400 nights of an NIV summary and an
oximetry night each, plus the size of the changelog value written per event and the memory the value
holds in the worker's in-memory table (its JSON bytes; and, for comparison, the same value decoded into
a dict, as the table held it before), projected to 10,000 patients.

Side by side, in the same run: the default rules' retention (`history.keep_days` in
`processors/rules/default.yaml`: 120 days of nights) against the same rules keeping 400 days of
every kind (the retention before it was declared per kind).

Usage: python bench/history_cost.py [--repeat 20] [--quick]; writes bench/results/history_cost.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result

from processors.rules.evaluator import step
from processors.rules.history import KEEP_DAYS, STORES, PatientHistory
from processors.rules.loader import load_rules
from schemas import Envelope, NivNight, OximetryNight

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


def stored_history(nights: int, rules: object) -> bytes:
    """The table value of a patient who uploaded `nights` nights (NIV + oximetry each)."""
    history = PatientHistory("H1")
    for n in range(nights):
        for record in (niv("H1", FIRST + timedelta(days=n)), oximetry("H1", FIRST + timedelta(days=n))):
            step(history, envelope(record), rules)  # type: ignore[arg-type]
    return history.to_json()  # as the worker writes it and faust hands it back from the changelog


def per_event(stored: bytes, nights: int, rules: object, repeat: int) -> dict[str, float]:
    """One new NIV night: read the state, step the rules, write the state back (median ms)."""
    read, rules_ms, write = [], [], []
    size = 0
    for _ in range(repeat):
        record = envelope(niv("H1", FIRST + timedelta(days=nights)))
        t0 = time.perf_counter()
        history = PatientHistory.from_json(stored)
        t1 = time.perf_counter()
        step(history, record, rules)  # type: ignore[arg-type]
        t2 = time.perf_counter()
        value = history.to_json()
        t3 = time.perf_counter()
        read.append(t1 - t0)
        rules_ms.append(t2 - t1)
        write.append(t3 - t2)
        size = len(value)
    med = {k: round(statistics.median(v) * 1e3, 3) for k, v in
           (("read_state_ms", read), ("rules_step_ms", rules_ms), ("write_state_ms", write))}
    kept = PatientHistory.from_json(stored)
    return {"niv_nights_kept": kept.count("niv"), "oxi_nights_kept": kept.count("oxi"), **med,
            "total_ms": round(sum(med.values()), 3), "changelog_value_kib": round(size / 1024, 1)}


def decoded_memory_kib(stored: bytes) -> float:
    """Python memory of the value decoded into a dict, as the worker's table held it before its values
    were bytes (tracemalloc)."""
    tracemalloc.start()
    copies = [json.loads(stored) for _ in range(5)]
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del copies
    return round(held / 5 / 1024, 1)


def measure(nights: int, rules: object, repeat: int) -> dict[str, float]:
    stored = stored_history(nights, rules)
    held, decoded = sys.getsizeof(stored) / 1024, decoded_memory_kib(stored)
    return {**per_event(stored, nights, rules, repeat),
            "table_memory_kib": round(held, 1), "table_memory_10k_patients_mib": round(held * 10_000 / 1024, 1),
            "as_decoded_dict_kib": decoded, "as_decoded_dict_10k_patients_mib": round(decoded * 10_000 / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rules = load_rules()
    everything = dataclasses.replace(rules, keep_days={s: KEEP_DAYS for s in STORES})
    lengths = [0, 30, 90] if args.quick else [0, 30, 90, 180, 365, 400]
    repeat = 5 if args.quick else args.repeat
    rows = []
    for nights in lengths:
        row = {"nights_uploaded": nights, "rule_set_retention": measure(nights, rules, repeat),
               "keep_400_days": measure(nights, everything, repeat)}
        row["ratio_ms_400_over_rule_set"] = round(
            row["keep_400_days"]["total_ms"] / row["rule_set_retention"]["total_ms"], 2)
        rows.append(row)
        print(json.dumps(row))
    path = write_result("history_cost", {
        "what": "per event, as the worker does it: PatientHistory.from_json (table value) + rules step on one "
                "new NIV night + to_json (the changelog value); patients who uploaded N nights of NIV + "
                "oximetry; table memory = the value's bytes as the table holds them, and the same value decoded "
                "(tracemalloc) as it was held before, x 10,000 patients",
        "keep_days": {"rule_set_retention": dict(rules.keep_days), "keep_400_days": KEEP_DAYS},
        "quick": args.quick, "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
