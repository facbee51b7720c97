"""CPU of the worker's writes per upload, before and after issue 17: the `oximetry_signals` row of an O2Ring
night (codec + per-minute arrays) and the alert lifecycle of a batch's findings on a scratch database.

The old implementations are read from git (`git show HEAD:<path>`) and run
alternately with the new ones in this process on the same inputs; medians of many repeats.

    .venv/bin/python bench/worker_writes.py [--repeats N] [--uploads N] [--no-db]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, o2ring_csv, synthetic_spo2


def old_module(name: str, path: str) -> types.ModuleType:
    """A module as committed (HEAD), imported under another name."""
    source = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"old:{path}", "exec"), module.__dict__)  # noqa: S102 - our own committed source
    sys.modules[name] = module
    return module


def alternate(old: Callable[[], Any], new: Callable[[], Any], repeats: int, number: int) -> tuple[float, float]:
    """Median ms per call of old and new, timed alternately."""
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(repeats):
        for label, fn in (("old", old), ("new", new)):
            start = time.process_time()
            for _ in range(number):
                fn()
            times[label].append((time.process_time() - start) / number * 1e3)
    return statistics.median(times["old"]), statistics.median(times["new"])


def o2ring_night() -> Any:
    """The e2e bench's upload: an O2Ring CSV night of 7,200 samples at 4 s, as the parser gives it."""
    from ingest.parsers import parse_bytes

    spo2, pulse, _ = synthetic_spo2(np.random.default_rng(17))
    data = o2ring_csv(spo2, pulse, datetime(2026, 1, 1, 22, tzinfo=UTC))
    [night] = parse_bytes(data, "O2Ring_20260101220000.csv", patient_id="P-bench")
    return night


def bench_signal_row(repeats: int) -> dict[str, float]:
    from processors import store

    old_sig = old_module("old_signals", "respmon/core/signals.py")
    old_store = old_module("old_store", "processors/store.py")
    old_store.minute_aggregates = old_sig.minute_aggregates  # type: ignore[attr-defined]
    old_store.encode_signal = old_sig.encode_signal  # type: ignore[attr-defined]
    night = o2ring_night()
    assert old_store.signal_row(night, "u") == store.signal_row(night, "u")
    old, new = alternate(lambda: old_store.signal_row(night, "u"), lambda: store.signal_row(night, "u"),
                         repeats, 20)
    return {"signal_row_old_ms": old, "signal_row_new_ms": new}


ADMIN_URL = "postgresql://respmon:respmon@127.0.0.1:15432/postgres"


def scratch_database() -> str:
    """A new database of the dev stack with the schema applied (dropped by `drop_database`)."""
    import os

    import psycopg

    name = f"respmon_bench_ww_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"postgresql://respmon:respmon@127.0.0.1:15432/{name}"
    subprocess.run([sys.executable, "-m", "respmon", "migrate"], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "RESPMON_DATABASE_URL": url})
    return url


def drop_database(url: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def e2e_findings(uploads: int) -> list[Any]:
    """The findings of `uploads` e2e uploads (an O2Ring night and a NIV night of a new patient each), as the
    worker's batch evaluation gives them."""
    import asyncio
    from types import SimpleNamespace

    from bench.common import niv_csv
    from ingest.parsers import parse_bytes
    from processors import batch as batches
    from processors.rules.loader import load_rules
    from schemas import Envelope

    rng = np.random.default_rng(3)
    day = datetime.now(UTC).date() - timedelta(days=2)
    start = datetime(day.year, day.month, day.day, 22, tzinfo=UTC)
    events = []
    for _ in range(uploads):
        patient = f"P-{uuid.uuid4().hex[:8]}"
        spo2, pulse, _ = synthetic_spo2(rng)
        records = parse_bytes(o2ring_csv(spo2, pulse, start), f"O2Ring_{start:%Y%m%d%H%M%S}.csv", patient_id=patient)
        records += parse_bytes(niv_csv(rng, patient, day), "niv.csv")
        for record in records:
            env = Envelope(upload_id=str(uuid.uuid4()), device_id="bench", received_at=datetime.now(UTC),
                           record=record)
            events.append(SimpleNamespace(key=patient.encode(), value=env.model_dump_json().encode()))
    batch = asyncio.run(batches.evaluate_all(cast(Any, events), lambda _p: None, load_rules(), 86400.0))
    return list(batch.findings)


def renamed(findings: list[Any]) -> list[Any]:
    """The same findings for new patients (each run starts from patients without alerts)."""
    names: dict[str, str] = {}
    return [f.model_copy(update={"patient_id": names.setdefault(f.patient_id, f"P-{uuid.uuid4().hex[:10]}")})
            for f in findings]


def bench_lifecycle(repeats: int, uploads: int) -> dict[str, float]:
    """apply_findings (and the findings' own rows) of a batch of `uploads` new patients: client CPU ms per
    upload and statements per upload, old and new alternately, each run in its own transaction."""
    import asyncio

    import psycopg

    from alerts import lifecycle
    from processors import store
    from respmon.core.settings import Settings

    old_lc = old_module("old_lifecycle", "alerts/lifecycle.py")
    url = scratch_database()
    routing = Path(f"/tmp/ww_routing_{uuid.uuid4().hex[:6]}.yaml")
    routing.write_text("routes: [{name: team, channel: webhook, target: 'http://127.0.0.1:9/hook'}]\n")
    settings = Settings(database_url=url, routing_file=routing, notify_horizon_days=14)
    findings = e2e_findings(uploads)
    statements = {"n": 0}
    real_execute, real_many = psycopg.AsyncCursor.execute, psycopg.AsyncCursor.executemany

    async def counted(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        statements["n"] += 1
        return await real_execute(self, query, params, **kw)

    async def counted_many(self: Any, query: Any, params_seq: Any, **kw: Any) -> Any:
        statements["n"] += 1
        return await real_many(self, query, params_seq, **kw)

    psycopg.AsyncCursor.execute = counted  # type: ignore[method-assign]
    psycopg.AsyncCursor.executemany = counted_many  # type: ignore[method-assign]

    async def old_write(conn: Any, batch: list[Any]) -> None:
        for finding in batch:
            await old_store.store_finding(conn, finding)
        await old_lc.apply_findings(conn, batch, settings, latest={})

    async def new_write(conn: Any, batch: list[Any]) -> None:
        await store.store_findings(conn, batch)
        await lifecycle.apply_findings(conn, batch, settings, latest={})

    old_store = old_module("old_store", "processors/store.py")
    times: dict[str, list[float]] = {"old": [], "new": []}
    counts: dict[str, list[int]] = {"old": [], "new": []}

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            for i in range(repeats + 3):
                for label, write in (("old", old_write), ("new", new_write)):
                    batch = renamed(findings)
                    statements["n"] = 0
                    start = time.process_time()
                    async with conn.transaction():
                        await write(conn, batch)
                    if i >= 3:  # after the statements are prepared, as in a running worker
                        times[label].append((time.process_time() - start) * 1e3 / uploads)
                        counts[label].append(statements["n"])

    try:
        asyncio.run(run())
    finally:
        psycopg.AsyncCursor.execute, psycopg.AsyncCursor.executemany = real_execute, real_many  # type: ignore[method-assign]
        drop_database(url)
        routing.unlink()
    return {"findings_per_upload": len(findings) / uploads,
            "lifecycle_old_ms_per_upload": statistics.median(times["old"]),
            "lifecycle_new_ms_per_upload": statistics.median(times["new"]),
            "statements_old_per_upload": statistics.median(counts["old"]) / uploads,
            "statements_new_per_upload": statistics.median(counts["new"]) / uploads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=10, help="new patients per batch (lifecycle)")
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--no-db", action="store_true")
    args = parser.parse_args()
    results = bench_signal_row(args.repeats)
    if not args.no_db:
        results |= bench_lifecycle(args.repeats, args.uploads)
    for key, value in results.items():
        print(f"{key:28} {value:8.3f}")


if __name__ == "__main__":
    main()
