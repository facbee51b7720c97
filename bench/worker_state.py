"""Worker memory and recovery time with patient histories, RocksDB table store against memory.

For each (store, patients): every patient gets 120 nights of NIV + oximetry history written to the
worker's table changelog (the e2e memory benchmark's prefill: the value the worker itself writes under the
default rules' retention, ~74 KiB), then on a private stack:
  1. cold start on an empty data folder: time to /readyz 200 (the table recovered from the changelog) and
     RSS after it (VmRSS of the faust process);
  2. one nightly batch (one envelope per patient, at most --batch-max of them, every history read and
     rewritten): peak RSS (VmHWM) and envelopes/s;
  3. RocksDB only: a restart on the same data folder, time to ready and RSS (the local files are kept,
     only the changelog written since is read).
Also the size of the data folder. Usage: python bench/worker_state.py [--runs memory:10000,rocksdb:10000]
Writes bench/results/worker_state.json (merging runs into the file's earlier ones).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, write_result
from e2e import (
    Env,
    _nightly_batch,
    _prefill_changelog,
    _status,
    count_rows,
    service,
    stored_span,
    wait_until,
    worker_process,
)

from respmon.launcher import wait_http
from respmon.testing.privatestack import PrivateStack

NIGHTS = 120
TABLES = ("niv_nights", "spirometry_sessions")
RESULT = ROOT / "bench" / "results" / "worker_state.json"


def folder_mib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


class PeakRss:
    """Samples a process's VmRSS every 0.25 s (VmHWM gives the peak too; this shows when)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples, self._stop = pid, [_status(pid)["VmRSS"]], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(_status(self.pid)["VmRSS"])
            except OSError:
                return
            self._stop.wait(0.25)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def recovered_worker(env: Env, store: str, log: str) -> Iterator[tuple[int, float, dict[str, int]]]:
    """Run the worker; yields (faust pid, seconds to /readyz 200 = table recovered, VmRSS/VmHWM 2 s after)."""
    with service(env, "worker", "RESPMON_WORKER_WEB_PORT", log, RESPMON_WORKER_STORE=store) as (worker, url):
        started = time.time()
        wait_http(f"{url}/readyz", 1800, worker, status=200)
        recovered = time.time() - started
        time.sleep(2)
        pid = worker_process(worker)
        yield pid, recovered, _status(pid)


def nightly_batch(env: Env, worker_pid: int, patients: int) -> dict[str, Any]:
    """Publish one envelope for each of the first `patients` patients and wait for every row; RSS sampled."""
    from kafka import KafkaProducer

    values = _nightly_batch(patients, np.random.default_rng(3))
    before = count_rows(env.url, TABLES)
    with PeakRss(worker_pid) as rss:
        t0 = time.time()
        producer = KafkaProducer(bootstrap_servers=env.stack.bootstrap, acks="all", enable_idempotence=True,
                                 linger_ms=5, compression_type="gzip")
        for key, value in values:
            producer.send(f"bench-{env.name}.measurements", key=key, value=value)
        producer.flush()
        producer.close()
        wait_until(lambda: count_rows(env.url, TABLES) >= before + patients, 3600, "nightly batch rows", poll_s=1.0)
    first, last = stored_span(env.url, TABLES)
    final = _status(worker_pid)
    return {"envelopes": patients, "elapsed_s": round(last - t0, 1),
            "envelopes_per_s": round(patients / (last - first), 1),
            "max_sampled_rss_mib": round(max(rss.samples) / 1024, 1),
            "peak_rss_vmhwm_mib": round(final["VmHWM"] / 1024, 1),
            "rss_after_mib": round(final["VmRSS"] / 1024, 1)}


def one_run(stack: PrivateStack, logs: Path, store: str, patients: int, batch_max: int) -> dict[str, Any]:
    env = Env(stack, f"state_{store}_{patients}", ROOT, logs)
    env.prepare()
    prefill = _prefill_changelog(env, patients, NIGHTS)
    data = logs / f"{env.name}-worker-data"
    with recovered_worker(env, store, f"{env.name}-worker.log") as (pid, cold_s, cold):
        batch = nightly_batch(env, pid, min(patients, batch_max))
    out: dict[str, Any] = {
        "store": store, "patients": patients, "history": prefill,
        "cold_start": {"what": "empty data folder: the whole table recovered from the changelog",
                       "recovery_s": round(cold_s, 1), "rss_after_recovery_mib": round(cold["VmRSS"] / 1024, 1),
                       "peak_during_recovery_vmhwm_mib": round(cold["VmHWM"] / 1024, 1)},
        "nightly_batch": batch, "data_folder_mib": folder_mib(data)}
    if store == "rocksdb":
        with recovered_worker(env, store, f"{env.name}-worker-2.log") as (_, warm_s, warm):
            pass
        out["warm_restart"] = {"what": "same data folder: RocksDB files kept, changelog read from their offset",
                               "recovery_s": round(warm_s, 1), "rss_after_recovery_mib": round(warm["VmRSS"] / 1024, 1),
                               "peak_during_recovery_vmhwm_mib": round(warm["VmHWM"] / 1024, 1)}
    print(json.dumps(out, indent=1), file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="memory:10000,rocksdb:10000,rocksdb:100000",
                    help="store:patients,... (store rocksdb or memory)")
    ap.add_argument("--batch-max", type=int, default=10_000,
                    help="envelopes in the nightly batch at most (the first N patients): 100,000 take ~30 min here")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1,000 patients on each store")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.batch_max = "memory:1000,rocksdb:1000", 1000
    logs = Path(os.environ.get("RESPMON_BENCH_LOGS") or f"/tmp/respmon-bench-state-{uuid.uuid4().hex[:6]}")
    logs.mkdir(parents=True, exist_ok=True)
    print(f"worker_state: service logs in {logs}", file=sys.stderr)
    earlier = json.loads(RESULT.read_text()).get("runs", {}) if RESULT.exists() else {}
    runs = dict(earlier)
    with PrivateStack() as stack:
        for spec in args.runs.split(","):
            store, patients = spec.split(":")
            runs[f"{store}:{int(patients)}"] = one_run(stack, logs, store, int(patients), args.batch_max)
            write_result("worker_state", {"nights_per_patient": NIGHTS, "service_logs": str(logs), "runs": runs})


if __name__ == "__main__":
    main()
