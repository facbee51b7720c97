"""Benchmark: median milliseconds of `processors.metrics.oximetry.night_metrics` per 8 h 1 Hz night.

50 synthetic nights (28,800 samples each): baseline 92-97 % with noise, 5-40 desaturations per
hour (triangular and square, 3-9 points, 10-90 s), some prolonged hypoventilation ramps and
dropouts. Night objects are built before timing; the timed call includes converting the
model's Python lists to numpy (``list_to_array_ms`` reports that part alone).

Usage: python bench/oximetry_metrics.py [--nights 50] [--repeat 5]. Prints one JSON object.
This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.metrics.oximetry import ODI_DEFINITION, night_metrics  # noqa: E402
from schemas.oximetry import OximetryNight  # noqa: E402

N = 8 * 3600


def synthetic_night(rng: np.random.Generator) -> OximetryNight:
    s = rng.uniform(92, 97) + rng.normal(0, rng.uniform(0.3, 1.0), N)
    rate = rng.uniform(5, 40)  # events per hour
    t = 0
    while True:
        t += int(rng.exponential(3600 / rate)) + 15
        if t >= N - 200:
            break
        length = int(rng.integers(10, 90))
        depth = rng.uniform(3, 9)
        shape = np.ones(length) if rng.random() < 0.3 else 1 - np.abs(np.linspace(-1, 1, length))
        s[t : t + length] -= depth * shape
        t += length
    for _ in range(int(rng.integers(0, 4))):  # hypoventilation ramps of 3-8 min
        a = int(rng.integers(0, N - 500))
        length = int(rng.integers(180, 480))
        s[a : a + length] -= np.linspace(0, rng.uniform(5, 15), length)
    values: list[float | None] = np.round(np.clip(s, 50, 100)).tolist()
    for _ in range(int(rng.integers(0, 20))):  # dropouts
        a = int(rng.integers(0, N - 120))
        gap = len(values[a : a + int(rng.integers(1, 120))])
        values[a : a + gap] = [None] * gap
    pulse = np.round(60 + rng.normal(0, 3, N)).tolist()
    return OximetryNight(
        patient_id="bench", start=datetime(2026, 1, 1, 22, tzinfo=timezone(timedelta(hours=1))),
        interval_s=1.0, spo2=values, pulse=pulse,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per night (the minimum is kept)")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    nights = [synthetic_night(rng) for _ in range(args.nights)]
    night_metrics(nights[0])  # warm-up
    per_night, conv, odi3 = [], [], []
    for night in nights:
        best = best_conv = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            m = night_metrics(night)
            best = min(best, time.perf_counter() - t0)
            t0 = time.perf_counter()
            np.array(night.spo2, dtype=float), np.array(night.pulse, dtype=float)
            best_conv = min(best_conv, time.perf_counter() - t0)
        per_night.append(best * 1e3)
        conv.append(best_conv * 1e3)
        odi3.append(m.odi3)
    print(json.dumps({
        "benchmark": "oximetry.night_metrics",
        "odi_definition": ODI_DEFINITION,
        "nights": args.nights,
        "samples_per_night": N,
        "median_ms": round(statistics.median(per_night), 3),
        "p95_ms": round(float(np.percentile(per_night, 95)), 3),
        "max_ms": round(max(per_night), 3),
        "list_to_array_ms_median": round(statistics.median(conv), 3),
        "odi3_per_h_median": round(statistics.median(odi3), 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
