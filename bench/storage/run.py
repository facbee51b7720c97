"""Benchmark: how to store 1 Hz overnight SpO2 and pulse in PostgreSQL.

Measured on the real server of the local stack (infra/stack.sh, PostgreSQL 15), in a throwaway
database created and dropped by this script. Options:

  rows           one row per sample (patient_id, at, source, spo2, pulse), PK (patient_id, at, source),
                 loaded with COPY.
  array_pglz     one row per night, spo2 and pulse as smallint[] in tenths (NULL = no reading),
                 compressed by TOAST with pglz (PostgreSQL's default).
  array_lz4      the same with `SET COMPRESSION lz4`.
  bytea_zlib     one row per night, each signal delta-encoded int16 tenths + zlib in Python
                 (codec `respmon-sig/1`, processors/store.py), column STORAGE EXTERNAL.
  minute_rows    per-minute aggregates as rows (min/mean/max of spo2 and pulse, n valid)
                 plus the raw night as bytea_zlib.
  minute_arrays  one row per night: per-minute min/mean/max as smallint[] plus the raw night as
                 bytea_zlib, in the same row (the layout chosen for table `oximetry_signals`).
  store_py       the implementation: migrated schema (monthly partitions), nights written through
                 `processors.store.store_records` (night metrics computed, `oximetry_nights` row and
                 `oximetry_signals` row in one transaction), read back with `respmon.queries`
                 (`oximetry_minutes`, `oximetry_signal`). Size: `oximetry_signals` only.

Per option: bytes per night (pg_total_relation_size of its tables / nights, after VACUUM),
projected size of 1 year x 1,000 patients, insert time per night (Python encoding included, one
transaction per night), and query times (median of --repeat, warm cache):
  timeline_90d  one patient's 90 nights as per-minute SpO2 min/mean/max (the clinician's chart),
  raw_night     one night at full resolution (spo2 and pulse arrays).

Row-per-sample is loaded for --row-nights nights of one patient only (default 90, so the 90-day
query is measured on real rows); its size per night is measured on those and extrapolated.

Usage: .venv/bin/python bench/storage/run.py [--patients 20] [--nights 90] [--row-nights 90]
Writes bench/results/storage.json and prints a table. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from respmon.core.signals import decode_signal, encode_signal, minute_aggregates

ADMIN_URL = "postgresql://respmon:respmon@127.0.0.1:15432/postgres"
FIRST_NIGHT = datetime(2026, 1, 1, 22, 0, tzinfo=UTC)
NIGHTS_PER_YEAR_X_1000 = 365 * 1000

DDL = {
    "rows": """
        CREATE TABLE oxi_samples (patient_id text NOT NULL, at timestamptz NOT NULL, source text NOT NULL,
            spo2 smallint, pulse smallint, PRIMARY KEY (patient_id, at, source))""",
    "array_pglz": """
        CREATE TABLE oxi_arr_pglz (patient_id text NOT NULL, start_at timestamptz NOT NULL, source text NOT NULL,
            interval_s real NOT NULL, spo2 smallint[] COMPRESSION pglz NOT NULL,
            pulse smallint[] COMPRESSION pglz NOT NULL, PRIMARY KEY (patient_id, start_at, source))""",
    "array_lz4": """
        CREATE TABLE oxi_arr_lz4 (patient_id text NOT NULL, start_at timestamptz NOT NULL, source text NOT NULL,
            interval_s real NOT NULL, spo2 smallint[] COMPRESSION lz4 NOT NULL,
            pulse smallint[] COMPRESSION lz4 NOT NULL, PRIMARY KEY (patient_id, start_at, source))""",
    "bytea_zlib": """
        CREATE TABLE oxi_bytea (patient_id text NOT NULL, start_at timestamptz NOT NULL, source text NOT NULL,
            interval_s real NOT NULL, spo2 bytea NOT NULL, pulse bytea NOT NULL,
            PRIMARY KEY (patient_id, start_at, source));
        ALTER TABLE oxi_bytea ALTER COLUMN spo2 SET STORAGE EXTERNAL, ALTER COLUMN pulse SET STORAGE EXTERNAL""",
    "minute_rows": """
        CREATE TABLE oxi_minutes (patient_id text NOT NULL, minute_at timestamptz NOT NULL, source text NOT NULL,
            spo2_min smallint, spo2_mean smallint, spo2_max smallint, pulse_min smallint, pulse_mean smallint,
            pulse_max smallint, n_valid smallint NOT NULL, PRIMARY KEY (patient_id, minute_at, source));
        CREATE TABLE oxi_minutes_raw (patient_id text NOT NULL, start_at timestamptz NOT NULL,
            source text NOT NULL, interval_s real NOT NULL, spo2 bytea NOT NULL, pulse bytea NOT NULL,
            PRIMARY KEY (patient_id, start_at, source));
        ALTER TABLE oxi_minutes_raw ALTER COLUMN spo2 SET STORAGE EXTERNAL,
            ALTER COLUMN pulse SET STORAGE EXTERNAL""",
    "minute_arrays": """
        CREATE TABLE oxi_night_sig (patient_id text NOT NULL, start_at timestamptz NOT NULL, source text NOT NULL,
            interval_s real NOT NULL, n_samples integer NOT NULL,
            spo2_min_1m smallint[] NOT NULL, spo2_mean_1m smallint[] NOT NULL, spo2_max_1m smallint[] NOT NULL,
            pulse_mean_1m smallint[] NOT NULL, spo2 bytea NOT NULL, pulse bytea NOT NULL,
            PRIMARY KEY (patient_id, start_at, source));
        ALTER TABLE oxi_night_sig ALTER COLUMN spo2 SET STORAGE EXTERNAL,
            ALTER COLUMN pulse SET STORAGE EXTERNAL""",
}
DDL["store_py"] = ""  # created by the project's migrations
TABLES = {"store_py": ["oximetry_signals"], "rows": ["oxi_samples"], "array_pglz": ["oxi_arr_pglz"],
          "array_lz4": ["oxi_arr_lz4"], "bytea_zlib": ["oxi_bytea"], "minute_rows": ["oxi_minutes", "oxi_minutes_raw"],
          "minute_arrays": ["oxi_night_sig"]}


def synthetic_night(rng: np.random.Generator, n: int = 8 * 3600) -> tuple[list[float | None], list[float | None]]:
    """An 8 h 1 Hz night (the generator of bench/oximetry_metrics.py at the time of writing): baseline
    92-97 % with white noise (pessimistic for compression: real oximeters average over 4-8 s), 5-40
    desaturations per hour, hypoventilation ramps, dropouts; integer SpO2 and pulse."""
    s = rng.uniform(92, 97) + rng.normal(0, rng.uniform(0.3, 1.0), n)
    rate = rng.uniform(5, 40)
    t = 0
    while True:
        t += int(rng.exponential(3600 / rate)) + 15
        if t >= n - 200:
            break
        length = int(rng.integers(10, 90))
        shape = np.ones(length) if rng.random() < 0.3 else 1 - np.abs(np.linspace(-1, 1, length))
        s[t : t + length] -= rng.uniform(3, 9) * shape
        t += length
    for _ in range(int(rng.integers(0, 4))):
        a = int(rng.integers(0, n - 500))
        length = int(rng.integers(180, 480))
        s[a : a + length] -= np.linspace(0, rng.uniform(5, 15), length)
    spo2: list[float | None] = np.round(np.clip(s, 50, 100)).tolist()
    for _ in range(int(rng.integers(0, 20))):
        a = int(rng.integers(0, n - 120))
        gap = len(spo2[a : a + int(rng.integers(1, 120))])
        spo2[a : a + gap] = [None] * gap
    pulse: list[float | None] = np.round(60 + rng.normal(0, 3, n)).tolist()
    return spo2, pulse


def tenths(values: Sequence[float | None]) -> list[int | None]:
    return [None if v is None else round(v * 10) for v in values]


# --- writers: one night, one transaction -------------------------------------------------------

def write_rows(conn: psycopg.Connection, pid: str, start: datetime, spo2: list, pulse: list) -> None:
    with (conn.transaction(), conn.cursor() as cur,
          cur.copy("COPY oxi_samples (patient_id, at, source, spo2, pulse) FROM STDIN") as copy):
        s, p = tenths(spo2), tenths(pulse)
        for i in range(len(s)):
            copy.write_row((pid, start + timedelta(seconds=i), "bench", s[i], p[i]))


def write_array(table: str) -> Callable[..., None]:
    def write(conn: psycopg.Connection, pid: str, start: datetime, spo2: list, pulse: list) -> None:
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, 'bench', 1, %s, %s)",
                         (pid, start, tenths(spo2), tenths(pulse)))
    return write


def write_bytea(conn: psycopg.Connection, pid: str, start: datetime, spo2: list, pulse: list) -> None:
    with conn.transaction():
        conn.execute("INSERT INTO oxi_bytea VALUES (%s, %s, 'bench', 1, %s, %s)",
                     (pid, start, encode_signal(spo2), encode_signal(pulse)))


def write_minute_rows(conn: psycopg.Connection, pid: str, start: datetime, spo2: list, pulse: list) -> None:
    agg_s, agg_p = minute_aggregates(spo2, 1.0), minute_aggregates(pulse, 1.0)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("INSERT INTO oxi_minutes_raw VALUES (%s, %s, 'bench', 1, %s, %s)",
                    (pid, start, encode_signal(spo2), encode_signal(pulse)))
        with cur.copy("COPY oxi_minutes FROM STDIN") as copy:
            for m in range(len(agg_s["n"])):
                copy.write_row((pid, start + timedelta(minutes=m), "bench", agg_s["min"][m], agg_s["mean"][m],
                                agg_s["max"][m], agg_p["min"][m], agg_p["mean"][m], agg_p["max"][m],
                                agg_s["n"][m]))


def write_minute_arrays(conn: psycopg.Connection, pid: str, start: datetime, spo2: list, pulse: list) -> None:
    agg_s, agg_p = minute_aggregates(spo2, 1.0), minute_aggregates(pulse, 1.0)
    with conn.transaction():
        conn.execute("INSERT INTO oxi_night_sig VALUES (%s, %s, 'bench', 1, %s, %s, %s, %s, %s, %s, %s)",
                     (pid, start, len(spo2), agg_s["min"], agg_s["mean"], agg_s["max"], agg_p["mean"],
                      encode_signal(spo2), encode_signal(pulse)))


class StorePy:
    """Writes through processors.store on an async connection driven by a private event loop."""

    def __init__(self, url: str) -> None:
        import asyncio

        from respmon.core.db import migrate

        migrate(url)
        self.loop = asyncio.new_event_loop()
        self.aconn = self.loop.run_until_complete(psycopg.AsyncConnection.connect(url))
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("oximetry_nights", "oximetry_signals"):
                for month in ("2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"):
                    conn.execute("SELECT respmon_create_month_partition(%s, %s)", (table, month))

    def envelope(self, pid: str, start: datetime, spo2: list, pulse: list) -> Any:
        from schemas import Envelope, OximetryNight

        night = OximetryNight(patient_id=pid, start=start, interval_s=1.0, spo2=spo2, pulse=pulse, source="bench")
        return Envelope(upload_id=str(uuid.uuid4()), device_id="bench", received_at=datetime.now(UTC), record=night)

    def write(self, env: Any) -> None:
        from processors.store import store_records

        self.loop.run_until_complete(store_records(self.aconn, [env]))

    def close(self) -> None:
        self.loop.run_until_complete(self.aconn.close())
        self.loop.close()


WRITERS: dict[str, Callable[..., None]] = {
    "rows": write_rows, "array_pglz": write_array("oxi_arr_pglz"), "array_lz4": write_array("oxi_arr_lz4"),
    "bytea_zlib": write_bytea, "minute_rows": write_minute_rows, "minute_arrays": write_minute_arrays,
}


# --- queries ---------------------------------------------------------------------------------

def per_minute_numpy(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(arr) // 60 * 60
    m = arr[:n].reshape(-1, 60)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmin(m, axis=1), np.nanmean(m, axis=1), np.nanmax(m, axis=1)


def timeline(option: str, conn: psycopg.Connection, pid: str, lo: datetime, hi: datetime) -> int:
    """Per-minute SpO2 min/mean/max of every night in [lo, hi); returns the number of minutes."""
    if option == "store_py":
        from respmon.queries import oximetry_minutes

        return sum(len(n["spo2_mean"]) for n in oximetry_minutes(conn, pid, lo.date(), (hi - timedelta(days=1)).date()))
    if option == "rows":
        rows = conn.execute(
            "SELECT date_bin('1 minute', at, timestamptz '2000-01-01') AS m, min(spo2), avg(spo2), max(spo2)"
            " FROM oxi_samples WHERE patient_id = %s AND at >= %s AND at < %s GROUP BY 1 ORDER BY 1",
            (pid, lo, hi)).fetchall()
        return len(rows)
    if option in ("array_pglz", "array_lz4"):
        table = TABLES[option][0]
        total = 0
        for (spo2,) in conn.execute(f"SELECT spo2 FROM {table} WHERE patient_id = %s AND start_at >= %s"
                                    " AND start_at < %s ORDER BY start_at", (pid, lo, hi)):
            arr = np.array([np.nan if v is None else v / 10 for v in spo2], dtype=float)
            total += len(per_minute_numpy(arr)[0])
        return total
    if option == "bytea_zlib":
        total = 0
        for (spo2,) in conn.execute("SELECT spo2 FROM oxi_bytea WHERE patient_id = %s AND start_at >= %s"
                                    " AND start_at < %s ORDER BY start_at", (pid, lo, hi)):
            total += len(per_minute_numpy(decode_signal(spo2))[0])
        return total
    if option == "minute_rows":
        rows = conn.execute("SELECT minute_at, spo2_min, spo2_mean, spo2_max FROM oxi_minutes WHERE patient_id = %s"
                            " AND minute_at >= %s AND minute_at < %s ORDER BY minute_at", (pid, lo, hi)).fetchall()
        return len(rows)
    rows = conn.execute("SELECT start_at, spo2_min_1m, spo2_mean_1m, spo2_max_1m FROM oxi_night_sig"
                        " WHERE patient_id = %s AND start_at >= %s AND start_at < %s ORDER BY start_at",
                        (pid, lo, hi)).fetchall()
    return sum(len(r[1]) for r in rows)


def raw_night(option: str, conn: psycopg.Connection, pid: str, start: datetime) -> int:
    """One night's spo2 and pulse at full resolution as numpy arrays; returns the sample count."""
    if option == "store_py":
        from respmon.queries import oximetry_signal

        return len(oximetry_signal(conn, pid, start)["spo2"])
    if option == "rows":
        rows = conn.execute("SELECT spo2, pulse FROM oxi_samples WHERE patient_id = %s AND at >= %s AND at < %s"
                            " ORDER BY at", (pid, start, start + timedelta(hours=12))).fetchall()
        arr = np.array([[np.nan if v is None else v / 10 for v in r] for r in rows], dtype=float)
        return len(arr)
    table = {"array_pglz": "oxi_arr_pglz", "array_lz4": "oxi_arr_lz4", "bytea_zlib": "oxi_bytea",
             "minute_rows": "oxi_minutes_raw", "minute_arrays": "oxi_night_sig"}[option]
    spo2, pulse = conn.execute(f"SELECT spo2, pulse FROM {table} WHERE patient_id = %s AND start_at = %s",
                               (pid, start)).fetchone()
    if option.startswith("array"):
        s = np.array([np.nan if v is None else v / 10 for v in spo2], dtype=float)
        np.array([np.nan if v is None else v / 10 for v in pulse], dtype=float)
        return len(s)
    return len(decode_signal(spo2)) + 0 * len(decode_signal(pulse))


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} TB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--nights", type=int, default=90, help="nights per patient (array and aggregate options)")
    ap.add_argument("--row-nights", type=int, default=90, help="nights of one patient for row-per-sample")
    ap.add_argument("--repeat", type=int, default=9, help="query repetitions (the median is kept)")
    ap.add_argument("--options", default=",".join(DDL), help="comma-separated subset of: " + ", ".join(DDL))
    ap.add_argument("--admin-url", default=ADMIN_URL)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "storage.json"))
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    options = args.options.split(",")

    rng = np.random.default_rng(args.seed)
    print(f"generating {args.nights} synthetic 8 h 1 Hz nights ...", file=sys.stderr)
    nights = [synthetic_night(rng) for _ in range(args.nights)]

    dbname = f"respmon_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}")
    url = args.admin_url.rsplit("/", 1)[0] + f"/{dbname}"
    results: dict[str, Any] = {}
    try:
        with psycopg.connect(url) as conn:
            server = conn.execute("SELECT version()").fetchone()[0]
            conn.commit()
            for option in options:
                store_py = StorePy(url) if option == "store_py" else None
                if DDL[option]:
                    with conn.transaction():
                        conn.execute(DDL[option])
                n_patients = 1 if option == "rows" else args.patients
                n_nights = args.row_nights if option == "rows" else args.nights
                print(f"{option}: loading {n_patients} x {n_nights} nights ...", file=sys.stderr)
                insert_s = []
                for p in range(n_patients):
                    pid = f"P{p:04d}"
                    for k in range(n_nights):
                        spo2, pulse = nights[k % len(nights)]
                        start = FIRST_NIGHT + timedelta(days=k)
                        if store_py:
                            env = store_py.envelope(pid, start, spo2, pulse)  # model validation: not timed
                            t0 = time.perf_counter()
                            store_py.write(env)
                        else:
                            t0 = time.perf_counter()
                            WRITERS[option](conn, pid, start, spo2, pulse)
                        insert_s.append(time.perf_counter() - t0)
                if store_py:
                    store_py.close()
                conn.commit()
                conn.autocommit = True
                for t in TABLES[option]:
                    parts = conn.execute("SELECT relid::text FROM pg_partition_tree(%s::regclass)", (t,)).fetchall()
                    for (part,) in parts or [(t,)]:
                        conn.execute(f"VACUUM ANALYZE {part}")
                conn.autocommit = False
                size = sum(conn.execute(
                    "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%s::regclass)),"
                    " pg_total_relation_size(%s::regclass))::bigint", (t, t)).fetchone()[0] for t in TABLES[option])
                total_nights = n_patients * n_nights
                lo, hi = FIRST_NIGHT, FIRST_NIGHT + timedelta(days=90)
                pid = "P0000"
                minutes = timeline(option, conn, pid, lo, hi)
                t_timeline = median_ms(partial(timeline, option, conn, pid, lo, hi), args.repeat)
                samples = raw_night(option, conn, pid, FIRST_NIGHT + timedelta(days=3))
                t_raw = median_ms(partial(raw_night, option, conn, pid, FIRST_NIGHT + timedelta(days=3)), args.repeat)
                conn.rollback()
                results[option] = {
                    "tables": TABLES[option],
                    "patients": n_patients,
                    "nights": total_nights,
                    "bytes_total": size,
                    "bytes_per_night": round(size / total_nights),
                    "projected_1y_1000_patients_bytes": round(size / total_nights * NIGHTS_PER_YEAR_X_1000),
                    "insert_ms_per_night_median": round(statistics.median(insert_s) * 1e3, 2),
                    "insert_ms_per_night_p95": round(float(np.percentile(insert_s, 95)) * 1e3, 2),
                    "timeline_90d_ms_median": round(t_timeline, 2),
                    "timeline_90d_minutes": minutes,
                    "raw_night_ms_median": round(t_raw, 2),
                    "raw_night_samples": samples,
                    "extrapolated": option == "rows",
                }
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")

    out = {
        "benchmark": "storage.oximetry_signals",
        "date": date.today().isoformat(),
        "samples_per_night": len(nights[0][0]),
        "signals": ["spo2", "pulse"],
        "interval_s": 1.0,
        "repeat": args.repeat,
        "server": server,
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "machine": platform.machine(),
        "options": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    header = (f"{'option':<14} {'nights':>6} {'bytes/night':>12} {'1y x 1000 pts':>14} {'insert ms':>10}"
              f" {'90d chart ms':>13} {'raw night ms':>13}")
    print(header)
    print("-" * len(header))
    for option, r in results.items():
        star = "*" if r["extrapolated"] else " "
        print(f"{option:<14} {r['nights']:>6} {human(r['bytes_per_night']):>12} "
              f"{human(r['projected_1y_1000_patients_bytes']) + star:>14} {r['insert_ms_per_night_median']:>10.1f}"
              f" {r['timeline_90d_ms_median']:>13.1f} {r['raw_night_ms_median']:>13.1f}")
    if "rows" in results:
        print("* row-per-sample: one patient loaded, size per night extrapolated")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
