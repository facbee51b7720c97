"""Fault tests on PRIVATE stacks: every test here may stop, kill and restart brokers, PostgreSQL and the
worker, so none of them touches the shared dev stack (tests/conftest.py `stack`).

What each test checks is the promise of README "Delivery guarantees": whatever ingest acknowledged
ends up stored exactly once, findings equal the offline replay of the same records, and no alert
reaches the webhook twice.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from alerts.receiver import WebhookReceiver
from respmon.launcher import stop as stop_process
from respmon.launcher import wait_http
from tests.conftest import ROOT, free_port
from tests.reliability.stack import PrivateStack, wait_for

SECRET = "reliability-webhook-secret"

pytestmark = pytest.mark.reliability


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.reliability)


# ---------------------------------------------------------------- the private stack and its services

@pytest.fixture(scope="session")
def private_stack() -> Iterator[PrivateStack]:
    stack = PrivateStack()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        stack.remove()


@pytest.fixture
def rel_env(private_stack: PrivateStack, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh database and topic prefix on the private stack (started again if a test left it down)."""
    private_stack.start()
    run = uuid.uuid4().hex[:8]
    env = {
        "RESPMON_KAFKA_BOOTSTRAP": private_stack.bootstrap,
        "RESPMON_DATABASE_URL": private_stack.new_database(),
        "RESPMON_TOPIC_PREFIX": f"rel-{run}",
        "RESPMON_WORKER_APP_ID": f"respmon-rel-{run}",
        "RESPMON_WORKER_DATA_DIR": str(tmp_path / "worker"),
        "RESPMON_DISPATCH_INTERVAL_S": "0.2",
        "RESPMON_DELIVERY_BACKOFF_BASE_S": "0.5",
        "RESPMON_DELIVERY_BACKOFF_MAX_S": "2",
        "RESPMON_PUBLISH_TIMEOUT_S": "4",
        "RESPMON_LOG_LEVEL": "INFO",
        "RESPMON_WORKER_SESSION_TIMEOUT_S": "10",  # a killed worker's group membership expires in 10 s
        # the cohorts are dated (2025 scenarios, sessions from 2026-09-01): a finding older than the notify
        # horizon would be recorded without a message (issue 12) and leave the deliveries untested
        "RESPMON_NOTIFY_HORIZON_DAYS": "3650",
    }
    prepare(env)
    yield env


def prepare(env: dict[str, str]) -> None:
    for command in ("migrate", "topics"):
        subprocess.run([sys.executable, "-m", "respmon", command], check=True, env={**os.environ, **env}, cwd=ROOT,
                       capture_output=True, timeout=120)


class CountingReceiver(WebhookReceiver):
    """The reference receiver, plus a count of every POST it answered 2xx, per Idempotency-Key.

    The receiver drops repeats, so its `received` list cannot show a re-send; these counts can.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ok_posts: Counter[str | None] = Counter()
        lock = threading.Lock()
        base = self._server.RequestHandlerClass
        counts = self.ok_posts

        class Counting(base):  # type: ignore[misc, valid-type]
            def send_response(self, code: int, message: str | None = None) -> None:
                if 200 <= code < 300:
                    with lock:
                        counts[self.headers.get("Idempotency-Key")] += 1
                super().send_response(code, message)

        self._server.RequestHandlerClass = Counting


@dataclass
class Services:
    """ingest and worker as child processes this test owns (Popen objects), logs in `log_dir`."""

    env: dict[str, str]
    log_dir: Path
    receiver: CountingReceiver
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def start(self, name: str, timeout_s: float = 90, **extra: str) -> subprocess.Popen[bytes]:
        """Start `respmon ingest` or `respmon worker`; a name like "worker-b" starts another one of that
        service, on its own port (`extra`: more settings, e.g. its own RESPMON_WORKER_DATA_DIR)."""
        port = self.ports.setdefault(name, free_port())
        command = name.split("-")[0]
        variable = {"ingest": "RESPMON_INGEST_PORT", "worker": "RESPMON_WORKER_WEB_PORT"}[command]
        env = {**os.environ, **self.env, variable: str(port), "RESPMON_WEBHOOK_URL": self.receiver.url,
               "RESPMON_WEBHOOK_SECRET": SECRET, **extra}
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "respmon", command], env=env, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.procs[name] = proc
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s, proc)
        return proc

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(30)

    def stop_all(self) -> None:
        for name in list(self.procs):
            stop_process(self.procs.pop(name))

    def worker_ready(self, timeout_s: float = 90, name: str = "worker") -> None:
        """The worker's consumer owns its partitions (its lag gauge reports them)."""
        def assigned() -> bool:
            try:
                text = httpx.get(f"{self.url(name)}/metrics", timeout=2).text
            except httpx.HTTPError:
                return False
            return "respmon_worker_consumer_lag{" in text
        wait_for(assigned, timeout_s, "the worker's partition assignment")


@pytest.fixture
def services(rel_env: dict[str, str], tmp_path: Path) -> Iterator[Services]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with CountingReceiver(SECRET) as receiver:
        svc = Services(rel_env, log_dir, receiver)
        try:
            yield svc
        finally:
            svc.stop_all()
            sys.stderr.write(f"service logs in {log_dir}\n")


# ---------------------------------------------------------------- devices that upload and retry

def provision(db_url: str, device_id: str, patient_id: str) -> str:
    from ingest.devices import provision as provision_device

    with psycopg.connect(db_url, autocommit=True) as conn:
        return provision_device(conn, device_id, patient_id)


def session_body(patient: str, day: int, fvc_pct: float) -> bytes:
    taken = datetime(2026, 9, 1, 9, 0, tzinfo=UTC) + timedelta(days=day)
    return json.dumps({"patient_id": patient, "taken_at": taken.isoformat(), "fvc_l": round(fvc_pct / 25, 2),
                       "fvc_pct_pred": fvc_pct, "posture": "sitting", "source": "home-spirometer"}).encode()


@dataclass
class UploadLog:
    """Every attempt of every upload, as the device saw it."""

    patient: str
    body: bytes
    attempts: list[int] = field(default_factory=list)  # HTTP status, or 0 for a connection error
    upload_id: str | None = None

    @property
    def acknowledged(self) -> bool:
        return bool(self.attempts) and self.attempts[-1] in (200, 202)


class Device(threading.Thread):
    """One patient's device: uploads its queue in order, retrying an upload until it is acknowledged."""

    def __init__(self, ingest_url: str, token: str, uploads: list[UploadLog], stop: threading.Event,
                 pause_s: float = 0.05, give_up_s: float = 150) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.uploads, self.stop_event = f"{ingest_url}/v1/uploads", token, uploads, stop
        self.pause_s, self.give_up_s = pause_s, give_up_s
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                for upload in self._queue():
                    self._send(client, upload)
                    time.sleep(self.pause_s)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def _queue(self) -> Iterator[UploadLog]:
        """The uploads to send, in order (a subclass may make them up as it goes)."""
        yield from self.uploads

    def _send(self, client: httpx.Client, upload: UploadLog) -> None:
        deadline = time.monotonic() + self.give_up_s
        delay = 0.2
        while time.monotonic() < deadline and not self.stop_event.is_set():
            try:
                response = client.post(self.url, content=upload.body, headers={
                    "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
            except httpx.HTTPError:
                upload.attempts.append(0)
            else:
                upload.attempts.append(response.status_code)
                if response.status_code in (200, 202):
                    upload.upload_id = response.json()["upload_id"]
                    return
                assert response.status_code == 503, f"unexpected answer {response.status_code}: {response.text}"
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def make_cohort(db_url: str, patients: int, per_patient: int, tag: str) -> dict[str, tuple[str, list[UploadLog]]]:
    """patient -> (token, uploads): FVC falls a little each day, so trend and threshold rules fire."""
    cohort = {}
    for p in range(patients):
        patient = f"REL-{tag}-{p}-{uuid.uuid4().hex[:6]}"
        token = provision(db_url, f"dev-{patient}", patient)
        uploads = [UploadLog(patient, session_body(patient, d, round(72 - 2.5 * d - 3 * p, 1)))
                   for d in range(per_patient)]
        cohort[patient] = (token, uploads)
    return cohort


# ---------------------------------------------------------------- what must hold at the end

def records_of(uploads: list[UploadLog]) -> list[object]:
    from ingest.parsers import parse_bytes

    out: list[object] = []
    for upload in uploads:
        out.extend(parse_bytes(upload.body, "upload.json", fmt="spirometry_json", patient_id=upload.patient))
    return out


def expected_findings(records: list[object]) -> list[tuple[str, str, str, str]]:
    from processors.rules.evaluator import replay
    from processors.rules.loader import load_rules

    return sorted((f.rule_id, f.state, f.severity, f.at.isoformat()) for f in replay(records, load_rules()))  # type: ignore[arg-type]


def stored_findings(db: psycopg.Connection, patient: str) -> list[tuple[str, str, str, str]]:
    rows = db.execute("SELECT rule_id, state, severity, at FROM findings WHERE patient_id = %s", (patient,)).fetchall()
    return sorted((r, s, sev, at.isoformat()) for r, s, sev, at in rows)


def wait_all_stored(db_url: str, expected_rows: dict[str, int], timeout_s: float, table: str = "spirometry_sessions"
                    ) -> None:
    with psycopg.connect(db_url, autocommit=True) as db:
        def done() -> bool:
            got = dict(db.execute(f"SELECT patient_id, count(*) FROM {table} WHERE patient_id = ANY(%s)"
                                  " GROUP BY patient_id", (list(expected_rows),)).fetchall())
            return all(got.get(p, 0) >= n for p, n in expected_rows.items())
        wait_for(done, timeout_s, f"every record in {table}", interval_s=0.5)


@dataclass
class Verdict:
    stored_rows: int = 0
    duplicate_rows: int = 0
    findings: int = 0
    finding_mismatches: list[str] = field(default_factory=list)
    alerts: int = 0
    doubled_alerts: int = 0
    deliveries: int = 0
    webhook_keys: int = 0
    resent_after_2xx: dict[str, int] = field(default_factory=dict)


def verify_pipeline(db_url: str, records_by_patient: dict[str, list[object]], receiver: CountingReceiver,
                    settle_s: float = 60) -> Verdict:
    """Rows once per natural key, findings = offline replay, one active alert per (patient, rule), every
    queued webhook delivered with exactly one 2xx POST."""
    v = Verdict()
    patients = list(records_by_patient)
    with psycopg.connect(db_url, autocommit=True) as db:
        def findings_match() -> bool:
            return all(stored_findings(db, p) == expected_findings(r) for p, r in records_by_patient.items())
        try:
            wait_for(findings_match, settle_s, "findings equal to the offline replay", interval_s=0.5)
        except AssertionError:
            pass
        for patient, records in records_by_patient.items():
            want, got = expected_findings(records), stored_findings(db, patient)
            v.findings += len(got)
            if want != got:
                v.finding_mismatches.append(f"{patient}: missing {sorted(set(want) - set(got))},"
                                            f" extra {sorted(set(got) - set(want))}")
        v.stored_rows, distinct = db.execute(
            "SELECT count(*), count(DISTINCT (patient_id, taken_at, source)) FROM spirometry_sessions"
            " WHERE patient_id = ANY(%s)", (patients,)).fetchone()  # type: ignore[misc]
        v.duplicate_rows = v.stored_rows - distinct
        v.alerts, active_pairs, active = db.execute(
            "SELECT count(*), count(DISTINCT (patient_id, rule_id)) FILTER (WHERE status <> 'resolved'),"
            " count(*) FILTER (WHERE status <> 'resolved') FROM alerts WHERE patient_id = ANY(%s)",
            (patients,)).fetchone()  # type: ignore[misc]
        v.doubled_alerts = active - active_pairs

        def delivered() -> bool:
            pending = db.execute("SELECT count(*) FROM deliveries d JOIN alerts a USING (alert_id)"
                                 " WHERE a.patient_id = ANY(%s) AND d.status <> 'delivered'", (patients,)).fetchone()
            return pending == (0,)
        wait_for(delivered, 30, "every queued delivery delivered", interval_s=0.5)
        keys = [k for (k,) in db.execute("SELECT d.idempotency_key FROM deliveries d JOIN alerts a USING (alert_id)"
                                         " WHERE a.patient_id = ANY(%s) AND d.channel = 'webhook'",
                                         (patients,)).fetchall()]
    time.sleep(1.0)  # a wrong re-send would show up now
    v.deliveries = len(keys)
    v.webhook_keys = sum(1 for k in keys if receiver.ok_posts.get(k))
    v.resent_after_2xx = {k: n for k, n in receiver.ok_posts.items() if k in keys and n > 1}
    return v


@dataclass
class LogBurst:
    """Library ERROR lines a service logged while a broker was down, and what the repeat filter held back."""

    lines: int = 0
    suppressed: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


def library_errors(log: Path, windows: list[tuple[float, float]], prefix: str = "aiokafka") -> LogBurst:
    """Count ERROR lines of `prefix` loggers in a JSON log inside wall-clock (epoch s) windows."""
    burst = LogBurst(seconds=sum(end - start for start, end in windows))
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["ts"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue  # faust's start-up banner is not JSON
        if (entry.get("level") == "error" and str(entry.get("logger", "")).split(".")[0] == prefix
                and any(start <= at <= end for start, end in windows)):
            burst.lines += 1
            burst.suppressed += int(entry.get("suppressed", 0))
    return burst


def report(name: str, **numbers: object) -> None:
    """Numbers every fault test prints (pytest -s, or the captured output of a failure)."""
    line = json.dumps({"test": name, **numbers}, default=str)
    sys.stdout.write(line + "\n")
    out = Path(os.environ.get("RESPMON_RELIABILITY_REPORT", ROOT / ".stack" / "reliability-report.jsonl"))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass
