"""End-to-end benchmarks on a private Kafka + PostgreSQL stack: throughput, alert latency, worker memory.

The shared dev stack is never touched: `respmon/testing/privatestack.py` starts a stack of its own (temp folder,
free ports) and stops it at the end. Each scenario gets its own database and topic prefix; the
services are the real `respmon ingest` / `respmon worker` processes.

1. throughput - N nightly uploads (a full O2Ring CSV night, 8 h at 4 s, plus an NIV CSV row, one
   patient and device each) posted by C concurrent HTTP clients; timed from the first request to
   the last row in PostgreSQL, with every event counted as processed by the worker (findings
   evaluated). Next to it, on the same topic in the same run:
   - worker only: a second worker (fresh consumer group and database) replays the topic;
   - baseline: a bare kafka-python consumer that reads the topic and COPYs the same canonical
     rows (oximetry_nights / niv_nights columns, metrics not computed) into PostgreSQL;
   - like for like: `bench/baseline_service.py`, the single-process FastAPI service a user might write
     instead (same parser, same metrics, COPY of the same rows and signals in the request, no Kafka,
     history or rules), driven by the same clients with the same uploads: the target ratio (>= 0.5).
   CPU seconds per upload of every process (ingest, worker, PostgreSQL, Kafka, HTTP clients)
   name the bottleneck.
2. latency - low-FVC spirometry uploads at a steady rate (open loop), each raising one alert;
   upload accepted (HTTP 202 received) -> webhook received, stamped at an `alerts.receiver`
   instance; plus the worker's `respmon_upload_to_alert_delivered_seconds` histogram.
3. memory - a 10,000-patient nightly batch (NIV nights and small spirometry sessions, one envelope
   per patient) published straight to Kafka with kafka-python; worker peak RSS (VmHWM of
   /proc/<pid>/status) and the batch's throughput. Twice: for new patients, and for patients who
   already have 120 nights of NIV + oximetry history (written to the table's changelog before the
   worker starts, as a worker that ran for months leaves it, and recovered at start-up).

Usage: python bench/e2e.py [--quick] [--only throughput,latency,memory] [--code DIR]
(`--code` runs the services from another checkout, e.g. a `git archive` snapshot).
Writes bench/results/e2e_{throughput,latency,memory}.json.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, niv_csv, niv_csv_row, o2ring_csv, spirometry_json, synthetic_spo2, write_result

from alerts.receiver import WebhookReceiver
from respmon.launcher import stop, wait_http
from respmon.testing.privatestack import PrivateStack, free_port

SECRET = "bench-webhook-secret"
CLK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- processes

@dataclass
class Env:
    stack: PrivateStack
    name: str
    code: Path
    logs: Path

    @property
    def db(self) -> str:
        return f"bench_{self.name}"

    @property
    def url(self) -> str:
        return self.stack.db_url(self.db)

    def vars(self, **extra: str) -> dict[str, str]:
        return {"RESPMON_KAFKA_BOOTSTRAP": self.stack.bootstrap, "RESPMON_DATABASE_URL": self.url,
                "RESPMON_TOPIC_PREFIX": f"bench-{self.name}", "RESPMON_WORKER_APP_ID": f"bench-{self.name}-worker",
                "RESPMON_WORKER_DATA_DIR": str(self.logs / f"{self.name}-worker-data"),
                "RESPMON_WEBHOOK_SECRET": SECRET, "RESPMON_DISPATCH_INTERVAL_S": "0.2",
                "RESPMON_LOG_LEVEL": "INFO", "PYTHONPATH": str(self.code), **extra}

    def respmon(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "respmon", *args], check=True, cwd=self.code,
                       env={**os.environ, **self.vars()}, stdout=subprocess.DEVNULL)

    def prepare(self, topics: bool = True) -> None:
        with psycopg.connect(self.stack.db_url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.db}")
        self.respmon("migrate")
        if topics:
            self.respmon("topics")


@contextmanager
def service(env: Env, command: str, port_var: str, log_name: str, timeout_s: float = 120,
            **extra: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m respmon <command>` from the code under test; yields (process, base url) once healthy."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(env.logs / log_name, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "respmon", command], cwd=env.code,
                                env={**os.environ, **env.vars(**{port_var: str(port)}, **extra)},
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_http(f"{base}/healthz", timeout_s, proc, status=200)
            except RuntimeError as error:
                raise RuntimeError(f"{command}: {error}; see {env.logs / log_name}") from None
            yield proc, base
        finally:
            stop(proc)


def cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def children(ppid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int(p.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def tree(pid: int) -> list[int]:
    """The process and all its descendants (`respmon worker` is a supervisor over the faust process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def worker_process(proc: subprocess.Popen[bytes]) -> int:
    """The faust process under the `respmon worker` supervisor (whose own memory says nothing)."""
    kids = children(proc.pid)
    return kids[0] if kids else proc.pid


class CpuMeter:
    """CPU seconds used by named processes between start() and stop(); PostgreSQL = postmaster + backends.

    Backends that exit during the interval are not counted (the services keep pooled connections)."""

    def __init__(self, stack: PrivateStack, procs: dict[str, int]) -> None:
        self.stack, self.procs = stack, procs

    def _pg(self) -> dict[int, float]:
        pidfile = self.stack.dir / "pg" / "data" / "postmaster.pid"
        master = int(pidfile.read_text().split()[0])
        return {p: cpu_s(p) for p in [master, *children(master)]}

    def _sample(self) -> dict[str, Any]:
        kafka = int((self.stack.dir / "kafka" / "kafka.pid").read_text())
        return {"procs": {k: sum(cpu_s(p) for p in tree(v)) for k, v in {**self.procs, "kafka": kafka}.items()},
                "pg": self._pg(),
                "bench": sum(os.times()[:2]), "wall": time.monotonic()}

    def start(self) -> None:
        self.profilers = _profilers(self.procs)
        self.t0 = self._sample()

    def stop(self, per: int) -> dict[str, Any]:
        t1 = self._sample()
        for profiler in self.profilers:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        wall = t1["wall"] - self.t0["wall"]
        used = {k: t1["procs"][k] - self.t0["procs"][k] for k in t1["procs"]}
        used["postgresql"] = sum(v - self.t0["pg"].get(p, 0.0) for p, v in t1["pg"].items())
        used["bench_clients"] = t1["bench"] - self.t0["bench"]
        return {"wall_s": round(wall, 2),
                "cpu_s": {k: round(v, 2) for k, v in used.items()},
                "cpu_ms_per_upload": {k: round(1e3 * v / per, 1) for k, v in used.items()},
                "utilisation_of_one_core": {k: round(v / wall, 2) for k, v in used.items()},
                "total_utilisation_of_2_cores": round(sum(used.values()) / wall / 2, 2)}


def _profilers(procs: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """With RESPMON_BENCH_PROFILE=DIR, py-spy samples each named process (and its children) while the meter
    runs, writing DIR/<name>-<pid>.txt as collapsed stacks: where the CPU per upload goes. Not a dependency:
    `pip install py-spy` first. Sampling is non-blocking but still perturbs the figures of that run."""
    folder = os.environ.get("RESPMON_BENCH_PROFILE")
    if not folder:
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--nonblocking", "--gil", "--subprocesses", "--format", "raw",
                              "--rate", "250", "-p", str(pid), "-o", str(Path(folder) / f"{name}-{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in procs.items()]


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of a Prometheus counter/gauge series (optionally filtered by labels) in /metrics text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            if labels and not all(f'{k}="{v}"' in line for k, v in labels.items()):
                continue
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram(text: str, name: str) -> dict[str, Any]:
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    count = metric_value(text, f"{name}_count")
    total = metric_value(text, f"{name}_sum")

    def q(p: float) -> float | None:  # upper bound of the bucket holding the p-quantile
        for le, c in buckets:
            if count and c >= p * count:
                return le
        return None

    return {"count": int(count), "mean_s": round(total / count, 4) if count else None,
            "p50_bucket_le_s": q(0.5), "p99_bucket_le_s": q(0.99),
            "buckets": {str(le): int(c) for le, c in buckets}}


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


def count_rows(url: str, tables: tuple[str, ...]) -> int:
    with psycopg.connect(url) as conn:
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)


def stored_span(url: str, tables: tuple[str, ...]) -> tuple[float, float]:
    """Epoch seconds of the first and last stored_at over tables."""
    with psycopg.connect(url) as conn:
        sql = " UNION ALL ".join(f"SELECT stored_at FROM {t}" for t in tables)
        lo, hi = conn.execute(f"SELECT extract(epoch FROM min(stored_at)), extract(epoch FROM max(stored_at))"
                              f" FROM ({sql}) s").fetchone()
    return float(lo), float(hi)


def provision(url: str, patients: list[str]) -> dict[str, str]:
    from ingest.devices import provision as add

    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        return {p: add(conn, f"dev-{p}", p) for p in patients}


# ----------------------------------------------------------------------------- 1. throughput

def _o2ring_nights(count: int, seed: int) -> list[tuple[bytes, date]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        start = datetime(2026, 3, 1, 22, 30) + timedelta(days=i)
        spo2, pulse, _ = synthetic_spo2(rng)
        out.append((o2ring_csv(spo2, pulse, start, dt=4), (start - timedelta(hours=12)).date()))
    return out


def _post(client: httpx.Client, url: str, token: str, body: bytes, ctype: str, **params: str) -> httpx.Response:
    r = client.post(f"{url}/v1/uploads", content=body, params=params,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": ctype}, timeout=60)
    if r.status_code != 202:
        raise RuntimeError(f"upload answered {r.status_code}: {r.text[:200]}")
    return r


def _upload_night(client: httpx.Client, url: str, token: str, patient: str, night: tuple[bytes, date],
                  rng: np.random.Generator, times: dict[str, list[float]] | None = None) -> None:
    body, night_date = night
    name = f"O2Ring_{night_date:%Y%m%d}223000.csv"
    t0 = time.perf_counter()
    _post(client, url, token, body, "text/csv", filename=name, format="o2ring_csv")
    t1 = time.perf_counter()
    _post(client, url, token, niv_csv(rng, patient, night_date), "text/csv", filename="niv.csv", format="niv_csv")
    if times is not None:
        times["o2ring_csv"].append(t1 - t0)
        times["niv_csv"].append(time.perf_counter() - t1)


ROW_TABLES = ("oximetry_nights", "niv_nights")


def throughput(stack: PrivateStack, code: Path, logs: Path, uploads: int, clients: int, warm: int) -> dict[str, Any]:
    env = Env(stack, "tp", code, logs)
    env.prepare()
    patients = [f"TP{i:05d}" for i in range(warm + uploads)]
    tokens = provision(env.url, patients)
    nights = _o2ring_nights(min(uploads, 24), seed=11)
    result: dict[str, Any] = {"uploads": uploads, "http_clients": clients,
                              "upload": "O2Ring CSV 8 h at 4 s (7,200 rows, ~220 kB) + NIV CSV row, one patient each",
                              "envelopes": 2 * uploads,
                              "warm_up_uploads": f"{warm}, not counted: the services and the broker's JIT warm up "
                                                 "first (the baseline and the worker-only replay run later, warm); "
                                                 "a broker's CPU per request fell 4x over its first ~10,000 "
                                                 "requests (the pipeline's Kafka CPU per upload: 1.7 ms after "
                                                 "1,500 warm-up uploads, 0.7 after 6,000), and a production "
                                                 "broker runs for weeks"}
    with service(env, "worker", "RESPMON_WORKER_WEB_PORT", "tp-worker.log") as (worker, wurl), \
         service(env, "ingest", "RESPMON_INGEST_PORT", "tp-ingest.log") as (ingest, iurl):
        http_done = [0.0]
        times: dict[str, list[float]] = {"o2ring_csv": [], "niv_csv": []}

        def upload_all(indices: range) -> None:
            drive(iurl, tokens, patients, nights, indices, clients, times)

        upload_all(range(warm))
        wait_until(lambda: count_rows(env.url, ROW_TABLES) >= 2 * warm, 120, "warm-up rows")
        times["o2ring_csv"].clear()
        times["niv_csv"].clear()
        processed0 = metric_value(httpx.get(f"{wurl}/metrics").text, "respmon_worker_events_processed_total")
        meter = CpuMeter(stack, {"ingest": ingest.pid, "worker": worker.pid})
        meter.start()
        t0 = time.time()
        upload_all(range(warm, warm + uploads))
        http_done[0] = time.time()
        want = 2 * (warm + uploads)

        def done() -> bool:
            if count_rows(env.url, ROW_TABLES) < want:
                return False
            text = httpx.get(f"{wurl}/metrics").text
            return metric_value(text, "respmon_worker_events_processed_total") - processed0 >= 2 * uploads

        wait_until(done, 600, "pipeline rows")
        cpu = meter.stop(uploads)
        _, last = stored_span(env.url, ROW_TABLES)
        elapsed = last - t0
        with psycopg.connect(env.url) as conn:
            findings = conn.execute("SELECT count(*) FROM findings").fetchone()[0]
            signals = conn.execute("SELECT count(*) FROM oximetry_signals").fetchone()[0] if conn.execute(
                "SELECT to_regclass('oximetry_signals')").fetchone()[0] else None
        result["pipeline"] = {
            "elapsed_s": round(elapsed, 2), "uploads_per_s": round(uploads / elapsed, 2),
            "http_phase_s": round(http_done[0] - t0, 2),
            "http_uploads_per_s": round(uploads / (http_done[0] - t0), 2),
            "findings_stored": findings, "oximetry_signals_rows": signals, "cpu": cpu,
            "http_request_ms": {k: {"p50": round(1e3 * float(np.percentile(v, 50)), 1),
                                    "p95": round(1e3 * float(np.percentile(v, 95)), 1)} for k, v in times.items()},
        }

    # worker alone: a fresh consumer group and database replay the same topic
    wenv = Env(stack, "tpw", code, logs)
    wenv.prepare(topics=False)
    with service(wenv, "worker", "RESPMON_WORKER_WEB_PORT", "tpw-worker.log",
                 RESPMON_TOPIC_PREFIX="bench-tp") as (worker, wurl):
        meter = CpuMeter(stack, {"worker": worker.pid})
        meter.start()
        t0 = time.time()
        wait_until(lambda: count_rows(wenv.url, ROW_TABLES) >= 2 * (warm + uploads), 600, "worker-only rows")
        cpu = meter.stop(warm + uploads)
        first, last = stored_span(wenv.url, ROW_TABLES)
        result["worker_only"] = {
            "what": "a second worker (new consumer group, empty database) replays the topic the pipeline filled "
                    "(warm-up uploads included)",
            "elapsed_first_to_last_row_s": round(last - first, 2),
            "uploads_per_s": round((warm + uploads) / (last - first), 2),
            "startup_to_first_row_s": round(first - t0, 2), "cpu": cpu,
        }

    result["baseline"] = baseline_consumer(stack, env, warm + uploads)
    result["like_for_like"] = like_for_like(stack, code, logs, uploads, clients, warm, nights)
    result["ratio_pipeline_over_like_for_like"] = round(
        result["pipeline"]["uploads_per_s"] / result["like_for_like"]["uploads_per_s"], 3)
    result["ratio_pipeline_over_baseline"] = round(
        result["pipeline"]["uploads_per_s"] / result["baseline"]["uploads_per_s"], 3)
    result["ratio_worker_only_over_baseline"] = round(
        result["worker_only"]["uploads_per_s"] / result["baseline"]["uploads_per_s"], 3)
    result["cpu_ceiling"] = cpu_ceiling(result["pipeline"]["cpu"]["cpu_ms_per_upload"],
                                        result["baseline"]["uploads_per_s"])
    result["target"] = ("pipeline >= 0.5 x the like-for-like service, same run, same cores"
                        " (the bare consumer kept as a second reference)")
    result["target_met"] = result["ratio_pipeline_over_like_for_like"] >= 0.5
    services = {k: v for k, v in result["pipeline"]["cpu"]["cpu_ms_per_upload"].items() if k != "bench_clients"}
    result["cpu_ms_per_upload_services"] = round(sum(services.values()), 1)
    result["cpu_target"] = "<= 12 ms of CPU per upload, ingest + worker + Kafka + PostgreSQL"
    result["cpu_target_met"] = result["cpu_ms_per_upload_services"] <= 12
    return result


def drive(url: str, tokens: dict[str, str], patients: list[str], nights: list[tuple[bytes, date]],
          indices: range, clients: int, times: dict[str, list[float]]) -> None:
    """Upload night + NIV row for each patient index with `clients` concurrent HTTP clients (closed loop)."""
    todo: queue.Queue[int] = queue.Queue()
    errors: list[str] = []

    def client_loop() -> None:
        crng = np.random.default_rng()
        with httpx.Client() as c:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    _upload_night(c, url, tokens[patients[i]], patients[i], nights[i % len(nights)], crng, times)
                except Exception as error:  # noqa: BLE001 - reported, the benchmark fails below
                    errors.append(repr(error))

    for i in indices:
        todo.put(i)
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} uploads failed, first: {errors[0]}")


def like_for_like(stack: PrivateStack, code: Path, logs: Path, uploads: int, clients: int, warm: int,
                  nights: list[tuple[bytes, date]]) -> dict[str, Any]:
    """`bench/baseline_service.py` (one FastAPI process: parse, metrics, COPY rows + signals in the request)
    driven by the same clients with the same uploads, after the pipeline in the same run."""
    env = Env(stack, "ll", code, logs)
    env.prepare(topics=False)
    patients = [f"LL{i:05d}" for i in range(warm + uploads)]
    tokens = {p: uuid.uuid4().hex for p in patients}
    token_file = logs / "ll-tokens.json"
    token_file.write_text(json.dumps({t: p for p, t in tokens.items()}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    times: dict[str, list[float]] = {"o2ring_csv": [], "niv_csv": []}
    with open(logs / "ll-service.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "baseline_service.py"),
                                 "--port", str(port), "--database-url", env.url, "--tokens", str(token_file)],
                                cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            wait_http(f"{url}/healthz", 120, proc, status=200)
            drive(url, tokens, patients, nights, range(warm), clients, times)
            times["o2ring_csv"].clear()
            times["niv_csv"].clear()
            meter = CpuMeter(stack, {"service": proc.pid})
            meter.start()
            t0 = time.time()
            drive(url, tokens, patients, nights, range(warm, warm + uploads), clients, times)
            elapsed = time.time() - t0
            cpu = meter.stop(uploads)
        finally:
            stop(proc)
    with psycopg.connect(env.url) as conn:
        signals = conn.execute("SELECT count(*) FROM oximetry_signals").fetchone()[0]
    return {"what": "one FastAPI/uvicorn process (httptools, parse in the thread pool): same parser, same night "
                    "metrics and signal rows, COPY into oximetry_nights, oximetry_signals, niv_nights in the "
                    "request; no Kafka, no archive, no history, no rules (bench/baseline_service.py)",
            "elapsed_s": round(elapsed, 2), "uploads_per_s": round(uploads / elapsed, 2),
            "oximetry_signals_rows": signals, "cpu": cpu,
            "http_request_ms": {k: {"p50": round(1e3 * float(np.percentile(v, 50)), 1),
                                    "p95": round(1e3 * float(np.percentile(v, 95)), 1)} for k, v in times.items()}}


def cpu_ceiling(ms_per_upload: dict[str, float], baseline_per_s: float) -> dict[str, Any]:
    """What the measured CPU cost allows at best: every core busy with nothing but the services."""
    services = {k: v for k, v in ms_per_upload.items() if k != "bench_clients"}
    total = sum(services.values())
    cores = os.cpu_count() or 1
    best = 1000 * cores / total if total else float("inf")
    return {"what": f"{cores} cores / CPU ms per upload of ingest + worker + Kafka + PostgreSQL",
            "service_cpu_ms_per_upload": round(total, 1), "uploads_per_s_at_best": round(best, 1),
            "ratio_at_best_over_baseline": round(best / baseline_per_s, 3)}


OXI_COLS = ("patient_id", "start_at", "source", "night_date", "interval_s", "on_niv", "valid", "upload_id")
NIV_COLS = ("patient_id", "night_date", "source", "usage_hours", "leak_p95_lpm", "leak_kind", "ahi", "resp_rate",
            "tidal_volume_ml", "minute_vent_lpm", "spo2_mean", "spo2_t90_pct", "pct_spont_triggered", "upload_id")


def baseline_consumer(stack: PrivateStack, env: Env, uploads: int) -> dict[str, Any]:
    """kafka-python reads the measurements topic and COPYs canonical rows, no metrics, no rules."""
    from kafka import KafkaConsumer

    with psycopg.connect(env.url, autocommit=True) as conn:
        for t in ("oximetry_nights", "niv_nights"):
            conn.execute(f"CREATE TABLE baseline_{t} (LIKE {t} INCLUDING DEFAULTS INCLUDING INDEXES)")
        conn.execute("ALTER TABLE baseline_oximetry_nights ALTER COLUMN valid DROP NOT NULL")
    want = 2 * uploads
    consumer = KafkaConsumer(f"bench-{env.name}.measurements", bootstrap_servers=stack.bootstrap,
                             group_id=f"baseline-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                             enable_auto_commit=False, max_poll_records=500, fetch_max_bytes=64 * 2**20,
                             max_partition_fetch_bytes=16 * 2**20)
    seen = 0
    t0 = time.perf_counter()
    cpu0 = sum(os.times()[:2])
    with psycopg.connect(env.url) as conn:
        while seen < want:
            if time.perf_counter() - t0 > 600:
                raise TimeoutError("baseline consumer did not see every envelope")
            batch = consumer.poll(timeout_ms=1000)
            oxi, niv = [], []
            for records in batch.values():
                for msg in records:
                    if msg.value.startswith(b'{"tick_at"'):
                        continue
                    env_ = json.loads(msg.value) if msg.value[:1] == b"{" else msgpack.unpackb(msg.value)
                    rec = env_["record"]
                    if rec["kind"] == "oximetry_night":
                        start = datetime.fromisoformat(rec["start"])
                        oxi.append((rec["patient_id"], start, rec.get("source"), (start - timedelta(hours=12)).date(),
                                    rec["interval_s"], rec.get("on_niv"), None, env_["upload_id"]))
                    elif rec["kind"] == "niv_night":
                        niv.append(tuple([rec.get(c) for c in NIV_COLS[:-1]] + [env_["upload_id"]]))
                    seen += 1
            with conn.transaction(), conn.cursor() as cur:
                for table, cols, rows in (("baseline_oximetry_nights", OXI_COLS, oxi),
                                          ("baseline_niv_nights", NIV_COLS, niv)):
                    if rows:
                        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
            consumer.commit()
    elapsed = time.perf_counter() - t0
    cpu = sum(os.times()[:2]) - cpu0
    consumer.close()
    rows = count_rows(env.url, ("baseline_oximetry_nights", "baseline_niv_nights"))
    return {"what": "kafka-python consumer (new group, from earliest) -> json.loads -> COPY oximetry_nights/"
                    "niv_nights columns (no metrics, no signals, no rules), one transaction + offset commit per poll",
            "envelopes": seen, "rows": rows, "elapsed_s": round(elapsed, 2),
            "uploads_per_s": round(uploads / elapsed, 2), "consumer_cpu_s": round(cpu, 2)}


# ----------------------------------------------------------------------------- 2. latency

class _Stamped(list):
    def append(self, item: Any) -> None:
        item.at = time.time()
        super().append(item)


def latency(stack: PrivateStack, code: Path, logs: Path, rate: float, seconds: float) -> dict[str, Any]:
    env = Env(stack, "lat", code, logs)
    env.prepare()
    n = int(rate * seconds)
    patients = [f"LAT{i:05d}" for i in range(n + 1)]
    tokens = provision(env.url, patients)
    taken = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    bodies = {p: spirometry_json(p, taken, fvc_pct_pred=40.0, fvc_l=1.4) for p in patients}
    accepted: dict[str, float] = {}
    with ExitStack() as es:
        receiver = es.enter_context(WebhookReceiver(SECRET))
        receiver.received = _Stamped()
        _worker, wurl = es.enter_context(service(env, "worker", "RESPMON_WORKER_WEB_PORT", "lat-worker.log",
                                                RESPMON_WEBHOOK_URL=receiver.url))
        _, iurl = es.enter_context(service(env, "ingest", "RESPMON_INGEST_PORT", "lat-ingest.log"))
        with httpx.Client() as c:  # warm-up alert
            _post(c, iurl, tokens[patients[0]], bodies[patients[0]], "application/json")
        wait_until(lambda: len(receiver.received) >= 1, 60, "warm-up alert")
        warm_hist = histogram(httpx.get(f"{wurl}/metrics").text, "respmon_upload_to_alert_delivered_seconds")
        lock = threading.Lock()
        local = threading.local()

        def send(p: str) -> None:
            if not hasattr(local, "c"):
                local.c = httpx.Client()
            _post(local.c, iurl, tokens[p], bodies[p], "application/json")
            with lock:
                accepted[p] = time.time()

        from concurrent.futures import ThreadPoolExecutor

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:  # open loop: a slow answer does not delay the schedule
            futures = []
            for i, p in enumerate(patients[1:]):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(send, p))
            for f in futures:
                f.result()
        wait_until(lambda: len({r.body.get("patient_id") for r in receiver.received}) >= n + 1, 60,
                   "every alert delivered")
        text = httpx.get(f"{wurl}/metrics").text
    delivered: dict[str, float] = {}
    for r in receiver.received:
        p = r.body.get("patient_id")
        if p in accepted and p not in delivered:
            delivered[p] = r.at
    lat = sorted(delivered[p] - accepted[p] for p in delivered)
    hist = histogram(text, "respmon_upload_to_alert_delivered_seconds")
    hist["count_excluding_warmup"] = hist["count"] - warm_hist["count"]
    p99 = float(np.percentile(lat, 99))
    return {"rate_per_s": rate, "duration_s": seconds, "uploads": n, "alerts_delivered": len(lat),
            "upload": "spirometry JSON session, FVC 40 % pred (rule NS-FVC50), one new patient each",
            "dispatch_interval_s": 0.2,
            "measured": "HTTP 202 received by the client -> webhook request received (alerts.receiver), wall clock",
            "p50_s": round(float(np.percentile(lat, 50)), 3), "p90_s": round(float(np.percentile(lat, 90)), 3),
            "p99_s": round(p99, 3), "max_s": round(lat[-1], 3), "mean_s": round(statistics.mean(lat), 3),
            "signatures_ok": all(r.signature_ok for r in receiver.received),
            "worker_histogram": hist, "target": "p99 < 2 s", "target_met": p99 < 2.0}


# ----------------------------------------------------------------------------- 3. memory

def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def _nightly_batch(patients: int, rng: np.random.Generator) -> list[tuple[bytes, bytes]]:
    """One envelope per patient: alternating an NIV night (20 Nov) and a spirometry session (21 Nov)."""
    from schemas import Envelope, NivNight, SpirometrySession

    night = date(2026, 11, 20)
    taken = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    values = []
    for i in range(patients):
        p = f"MEM{i:06d}"
        if i % 2 == 0:
            cells = niv_csv_row(rng, p, night).split(",")
            rec: Any = NivNight(patient_id=p, night_date=night, usage_hours=float(cells[2]),
                                leak_p95_lpm=float(cells[3]), ahi=float(cells[4]), resp_rate=float(cells[5]),
                                tidal_volume_ml=float(cells[6]), minute_vent_lpm=float(cells[7]),
                                spo2_mean=float(cells[8]), spo2_t90_pct=float(cells[9]),
                                pct_spont_triggered=float(cells[10]), source="niv_csv")
        else:
            rec = SpirometrySession(patient_id=p, taken_at=taken, fvc_l=round(float(rng.uniform(2.5, 4.5)), 2),
                                    fvc_pct_pred=round(float(rng.uniform(60, 100)), 1), posture="sitting",
                                    source="home_spirometer", grade="A")
        e = Envelope(upload_id=str(uuid.uuid4()), device_id=f"dev-{p}", received_at=datetime.now(UTC), record=rec)
        values.append((p.encode(), e.model_dump_json().encode()))
    return values


def _history_values(patients: int, nights: int) -> Iterator[tuple[str, bytes]]:
    """Each patient's table value after `nights` nights of NIV + oximetry before the batch's night, as
    the worker writes it (`PatientHistory.to_json`, the default rules' retention)."""
    from history_cost import niv, oximetry  # same records as the per-event benchmark

    from processors.rules import PatientHistory, load_rules, step

    rules = load_rules()
    template = PatientHistory("MEM000000")
    first = date(2026, 11, 20) - timedelta(days=nights)
    for n in range(nights):
        for record in (niv("MEM000000", first + timedelta(days=n)), oximetry("MEM000000", first + timedelta(days=n))):
            step(template, record, rules)
    for i in range(patients):
        template.patient_id = f"MEM{i:06d}"
        yield template.patient_id, template.to_json()


def _prefill_changelog(env: Env, patients: int, nights: int) -> dict[str, Any]:
    """Write every patient's history to the worker's table changelog before it starts, as a worker that
    has run for `nights` nights left it: keys JSON-encoded (the table's key codec) on the partition of
    the patient's raw key in the measurements topic (where the worker looks them up)."""
    from kafka import KafkaProducer
    from kafka.partitioner.default import murmur2

    from respmon.core.settings import Settings

    settings = Settings(worker_app_id=env.vars()["RESPMON_WORKER_APP_ID"])
    partitions, topic = settings.topic_partitions, settings.history_changelog_topic  # made by Env.prepare
    producer = KafkaProducer(bootstrap_servers=env.stack.bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=20, compression_type="lz4", max_request_size=8 * 1024 * 1024)
    t0, size = time.time(), 0
    for patient, value in _history_values(patients, nights):
        partition = (murmur2(patient.encode()) & 0x7FFFFFFF) % partitions
        producer.send(topic, key=json.dumps(patient).encode(), value=value, partition=partition)
        size += len(value)
    producer.flush()
    producer.close()
    return {"history_nights": nights, "changelog_mib": round(size / 2**20, 1),
            "value_kib": round(size / patients / 1024, 1), "prefill_s": round(time.time() - t0, 1)}


def memory(stack: PrivateStack, code: Path, logs: Path, patients: int, history_nights: int = 0) -> dict[str, Any]:
    """Worker RSS while it processes one nightly batch of `patients` envelopes; with `history_nights`,
    every patient already has that many nights of history in the table (recovered at start-up)."""
    from kafka import KafkaProducer

    env = Env(stack, f"mem{history_nights}", code, logs)
    env.prepare()
    values = _nightly_batch(patients, np.random.default_rng(3))
    prefill = _prefill_changelog(env, patients, history_nights) if history_nights else {}
    tables = ("niv_nights", "spirometry_sessions")
    with service(env, "worker", "RESPMON_WORKER_WEB_PORT", f"{env.name}-worker.log") as (worker, wurl):
        t_ready = time.time()
        wait_http(f"{wurl}/readyz", 900, worker, status=200)  # the table recovered from its changelog
        recovered_s = time.time() - t_ready
        time.sleep(2)
        faust_pid = worker_process(worker)
        idle = _status(faust_pid)
        peak_rss = [idle["VmRSS"]]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    peak_rss.append(_status(faust_pid)["VmRSS"])
                except OSError:
                    return
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        meter = CpuMeter(stack, {"worker": worker.pid})
        meter.start()
        t0 = time.time()
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True,
                                 linger_ms=5, compression_type="gzip")
        for key, value in values:
            producer.send(f"bench-{env.name}.measurements", key=key, value=value)
        producer.flush()
        producer.close()
        published = time.time() - t0
        wait_until(lambda: count_rows(env.url, tables) >= patients, 900, "memory batch rows", poll_s=0.5)
        cpu = meter.stop(patients)
        stop.set()
        sampler.join()
        final = _status(faust_pid)
        first, last = stored_span(env.url, tables)
    elapsed = last - t0
    return {"patients": patients, "envelopes": patients,
            "batch": "alternating NIV nights and spirometry sessions (FVC 60-100 % pred), one envelope per patient",
            **({"history": {**prefill, "what": "every patient's table value before the batch: N nights of NIV + "
                                               "oximetry under the default rules' retention, recovered from the "
                                               "changelog at start-up", "recovery_s": round(recovered_s, 1)}}
               if prefill else {"history": "none: new patients"}),
            "publish_s": round(published, 2), "elapsed_publish_start_to_last_row_s": round(elapsed, 2),
            "envelopes_per_s": round(patients / elapsed, 1),
            "worker_first_to_last_row_s": round(last - first, 2),
            "worker_envelopes_per_s": round(patients / (last - first), 1),
            "idle_rss_mib": round(idle["VmRSS"] / 1024, 1), "idle_hwm_mib": round(idle["VmHWM"] / 1024, 1),
            "peak_rss_vmhwm_mib": round(final["VmHWM"] / 1024, 1),
            "max_sampled_rss_mib": round(max(peak_rss) / 1024, 1),
            "growth_over_idle_mib": round((final["VmHWM"] - idle["VmRSS"]) / 1024, 1),
            "kib_per_patient": round((final["VmHWM"] - idle["VmRSS"]) / patients, 2), "cpu": cpu}


# ----------------------------------------------------------------------------- main

SIZES = {"full": {"uploads": 600, "warm": 6000, "clients": 8, "rate": 2.0, "seconds": 60.0, "patients": 10_000,
                  "history_nights": 120},
         "quick": {"uploads": 30, "warm": 6, "clients": 4, "rate": 2.0, "seconds": 10.0, "patients": 1_000,
                   "history_nights": 30}}


def run(quick: bool, only: set[str], code: Path) -> dict[str, Path]:
    size = SIZES["quick" if quick else "full"]
    written: dict[str, Path] = {}
    logs = Path(os.environ.get("RESPMON_BENCH_LOGS") or (Path("/tmp") / f"respmon-bench-logs-{uuid.uuid4().hex[:6]}"))
    logs.mkdir(parents=True, exist_ok=True)
    print(f"e2e: service logs in {logs}", file=sys.stderr)
    extra = {"quick": quick, "code": str(code), "service_logs": str(logs)}
    with PrivateStack() as stack:
        if "throughput" in only:
            r = throughput(stack, code, logs, size["uploads"], size["clients"], size["warm"])
            written["e2e_throughput"] = write_result("e2e_throughput", {**extra, **r})
            print(json.dumps(r, indent=2), file=sys.stderr)
        if "latency" in only:
            r = latency(stack, code, logs, size["rate"], size["seconds"])
            written["e2e_latency"] = write_result("e2e_latency", {**extra, **r})
            print(json.dumps(r, indent=2), file=sys.stderr)
        if "memory" in only:
            r = {"new_patients": memory(stack, code, logs, size["patients"]),
                 "patients_with_history": memory(stack, code, logs, size["patients"], size["history_nights"])}
            written["e2e_memory"] = write_result("e2e_memory", {**extra, **r})
            print(json.dumps(r, indent=2), file=sys.stderr)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--only", default="throughput,latency,memory")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose services are run (default: this one)")
    args = ap.parse_args()
    run(args.quick, set(args.only.split(",")), args.code.resolve())


if __name__ == "__main__":
    main()
