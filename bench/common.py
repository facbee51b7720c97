"""Shared pieces of the benchmarks: machine description, result files, synthetic nights and exports."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NIGHT_S = 8 * 3600
"""An 8 h night in seconds (28,800 samples at 1 Hz)."""


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = "", False
    return {"date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "cores": os.cpu_count(), "cpu": cpu,
            "mem_gib": round(mem_kb / 2**20, 1), "python": platform.python_version(), "numpy": np.__version__,
            "os": platform.platform(), "git_head": commit, "worktree_modified": dirty}


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json (atomically) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def synthetic_spo2(rng: np.random.Generator, n: int = NIGHT_S, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """One night of SpO2 (NaN = dropout) and pulse, and the injected dips per hour.

    Baseline 92-97 % with noise, 5-40 desaturations per hour (triangular and square, 3-9 points,
    10-90 s), 0-3 hypoventilation ramps of 3-8 min (5-15 points), 0-19 dropouts of 1-120 s,
    values rounded to whole per cent as oximeters report them."""
    secs = n * dt
    s = rng.uniform(92, 97) + rng.normal(0, rng.uniform(0.3, 1.0), n)
    rate = rng.uniform(5, 40)  # events per hour
    t, dips = 0.0, 0
    while True:
        t += rng.exponential(3600 / rate) + 15
        if t >= secs - 200:
            break
        length_s = float(rng.integers(10, 90))
        depth = rng.uniform(3, 9)
        a, k = int(t / dt), max(2, int(length_s / dt))
        shape = np.ones(k) if rng.random() < 0.3 else 1 - np.abs(np.linspace(-1, 1, k))
        s[a : a + k] -= depth * shape
        t += length_s
        dips += 1
    for _ in range(int(rng.integers(0, 4))):  # hypoventilation ramps of 3-8 min
        a = int(rng.integers(0, n - int(500 / dt)))
        k = int(rng.integers(180, 480) / dt)
        s[a : a + k] -= np.linspace(0, rng.uniform(5, 15), k)
    s = np.round(np.clip(s, 50, 100))
    for _ in range(int(rng.integers(0, 20))):  # dropouts
        a = int(rng.integers(0, n - int(120 / dt)))
        s[a : a + max(1, int(rng.integers(1, 120) / dt))] = np.nan
    pulse = np.round(60 + rng.normal(0, 3, n))
    return s, pulse, dips / (secs / 3600)


def night_record(spo2: np.ndarray, pulse: np.ndarray, patient_id: str = "bench", dt: float = 1.0,
                 start: datetime | None = None) -> Any:
    from schemas.oximetry import OximetryNight

    # A dropout has neither SpO2 nor pulse, as the parsers deliver it (O2Ring CSV `--,--`, binary 0xFF/0xFFFF).
    spo2_l = [None if np.isnan(v) else float(v) for v in spo2.tolist()]
    pulse_l = [None if v is None else float(q) for v, q in zip(spo2_l, pulse.tolist(), strict=True)]
    return OximetryNight(
        patient_id=patient_id, start=start or datetime(2026, 1, 1, 22, tzinfo=timezone(timedelta(hours=1))),
        interval_s=dt, spo2=spo2_l, pulse=pulse_l,
    )


def o2ring_csv(spo2: np.ndarray, pulse: np.ndarray, start: datetime, dt: int = 4) -> bytes:
    """A Wellue O2Ring CSV export (`Time,Oxygen Level,Pulse Rate,...`, `--` = no reading) sampled every dt s."""
    lines = ["Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder"]
    step = start.replace(tzinfo=None)
    delta = timedelta(seconds=dt)
    for i in range(0, spo2.size, dt):
        v = spo2[i]
        o2 = "--" if np.isnan(v) else str(int(v))
        pr = "--" if np.isnan(v) else str(int(pulse[i]))
        lines.append(f"{step:%H:%M:%S %b %d %Y},{o2},{pr},0,0,0")
        step += delta
    return ("\n".join(lines) + "\n").encode()


def generic_oximetry_csv(spo2: np.ndarray, pulse: np.ndarray, start: datetime) -> bytes:
    """The generic `timestamp,spo2,pulse` CSV at 1 Hz with ISO 8601 timestamps."""
    lines = ["timestamp,spo2,pulse"]
    t = start
    one = timedelta(seconds=1)
    for v, p in zip(spo2.tolist(), pulse.tolist(), strict=True):
        lines.append(f"{t.isoformat()},{'' if math.isnan(v) else int(v)},{'' if math.isnan(v) else int(p)}")
        t += one
    return ("\n".join(lines) + "\n").encode()


NIV_HEADER = ("patient_id,night_date,usage_hours,leak_p95_lpm,ahi,resp_rate,tidal_volume_ml,minute_vent_lpm,"
              "spo2_mean,spo2_t90_pct,pct_spont_triggered")


def niv_csv_row(rng: np.random.Generator, patient_id: str, night: date) -> str:
    return (f"{patient_id},{night.isoformat()},{rng.uniform(4, 9):.1f},{rng.uniform(5, 30):.1f},"
            f"{rng.uniform(0, 8):.1f},{rng.uniform(14, 22):.1f},{int(rng.uniform(300, 500))},"
            f"{rng.uniform(5, 9):.1f},{rng.uniform(92, 96):.1f},{rng.uniform(0, 5):.1f},{int(rng.uniform(50, 95))}")


def niv_csv(rng: np.random.Generator, patient_id: str, night: date) -> bytes:
    return (NIV_HEADER + "\n" + niv_csv_row(rng, patient_id, night) + "\n").encode()


def spirometry_json(patient_id: str, taken_at: datetime, fvc_pct_pred: float, fvc_l: float = 2.0) -> bytes:
    return json.dumps({"patient_id": patient_id, "taken_at": taken_at.isoformat(), "fvc_l": fvc_l,
                       "fvc_pct_pred": fvc_pct_pred, "posture": "sitting", "source": "home_spirometer",
                       "grade": "A"}).encode()
