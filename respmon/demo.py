"""`respmon demo`: a small synthetic cohort travels the whole pipeline on the running local stack.

Starts the worker and the ingest service, provisions one device per patient, uploads what their
devices would send (spirometry JSON, an O2Ring CSV night, a real ResMed STR.edf), waits for the
alerts at a local webhook receiver and prints them. Then it opens the team's web view on the same data:
the patients go to the care team `demo` (with a synthetic 20-patient history seeded once, so the charts
have something to draw), a member `demo-nurse` gets a fresh password, and the team service is started in
the background (or reused when it already answers); the last lines print its address and the login.
"""

import json
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from alerts.careteams import assign
from alerts.receiver import WebhookReceiver
from alerts.sessions import set_password
from alerts.team import add_member
from ingest.devices import provision
from respmon.core.settings import Settings, get_settings
from respmon.launcher import service, stop, wait_http
from respmon.testing.cohort import seed

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data"
DEMO_TEAM, DEMO_MEMBER, HISTORY_PREFIX = "demo", "demo-nurse", "DEMO-SYN"


def o2ring_csv(start: datetime, hours: float = 7.0, plateau_min: int = 8) -> str:
    """An O2Ring export at 4 s: baseline 94 %, then a continuous plateau at 87 % for `plateau_min` minutes."""
    rows = ["Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder"]
    n = int(hours * 3600 / 4)
    plateau = range(n // 2, n // 2 + plateau_min * 15)
    for i in range(n):
        t = start + timedelta(seconds=4 * i)
        spo2 = 87 if i in plateau else 94 + (i % 3 == 0)
        rows.append(f"{t.strftime('%H:%M:%S %b %d %Y')},{spo2},{62 + i % 5},0,0,0")
    return "\n".join(rows) + "\n"


def cohort(run: str) -> list[tuple[str, str, bytes, str, str]]:
    """(patient, what, body, content type, file name) per upload."""
    now = datetime.now(UTC).replace(microsecond=0)
    spiro = lambda pid, pct: json.dumps({
        "patient_id": pid, "taken_at": (now - timedelta(hours=2)).isoformat(), "fvc_l": 1.7,
        "fvc_pct_pred": pct, "posture": "sitting", "source": "home-spirometer"}).encode()
    return [
        (f"DEMO-{run}-A", "home spirometry, FVC 46 % predicted", spiro(f"DEMO-{run}-A", 46.0),
         "application/json", "session.json"),
        (f"DEMO-{run}-B", "home spirometry, FVC 93 % predicted", spiro(f"DEMO-{run}-B", 93.0),
         "application/json", "session.json"),
        (f"DEMO-{run}-C", "O2Ring night with 8 min at 87 %",
         o2ring_csv((now - timedelta(hours=12)).replace(tzinfo=None)).encode(), "text/csv", "O2Ring_night.csv"),
        (f"DEMO-{run}-D", "ResMed AirCurve 10 SD card STR.edf",
         (SAMPLES / "resmed" / "aircurve10_vauto" / "STR.edf").read_bytes(), "application/octet-stream",
         "STR.edf"),
    ]


def run_demo(wait_s: float = 60) -> int:
    settings = get_settings()
    run = uuid.uuid4().hex[:6]
    secret = settings.webhook_secret.get_secret_value()
    logs = Path(tempfile.mkdtemp(prefix="respmon-demo-"))
    with WebhookReceiver(secret) as receiver:
        env = {"RESPMON_WEBHOOK_URL": receiver.url, "RESPMON_DISPATCH_INTERVAL_S": "0.5"}
        worker_health = f"http://{settings.worker_host}:{settings.worker_web_port}/healthz"
        ingest_url = f"http://{settings.ingest_host}:{settings.ingest_port}"
        print(f"starting worker and ingest (logs in {logs}) ...")
        with service(["worker"], env, worker_health, logs / "worker.log"), \
             service(["ingest"], env, f"{ingest_url}/healthz", logs / "ingest.log"):
            uploads = cohort(run)
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                tokens = {pid: provision(conn, f"demo-{pid}", pid) for pid, *_ in uploads}
                for pid, *_ in uploads:
                    assign(conn, pid, DEMO_TEAM, "demo")
            for pid, what, body, ctype, name in uploads:
                r = httpx.post(f"{ingest_url}/v1/uploads", content=body, params={"filename": name},
                               headers={"Authorization": f"Bearer {tokens[pid]}", "Content-Type": ctype},
                               timeout=30)
                print(f"  upload {pid:<18} {what:<40} -> HTTP {r.status_code} {r.json()}")
            expected = {uploads[0][0], uploads[2][0]}
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and not expected <= {a.body["patient_id"] for a in receiver.received}:
                time.sleep(0.5)
            time.sleep(2)
        print(f"\n{len(receiver.received)} alert(s) delivered to the webhook:")
        for alert in receiver.received:
            _print_alert(alert.body, alert.signature_ok)
    missing = expected - {a.body["patient_id"] for a in receiver.received}
    if missing:
        print(f"\nexpected alerts did not arrive for: {', '.join(sorted(missing))} (see {logs})")
        return 1
    _web_view(settings, logs)
    print("\nstack still running: `make stack-stop` stops it.")
    return 0


def _web_view(settings: Settings, logs: Path) -> None:
    """The last lines of the demo: the team service's address and a member who sees the demo patients."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        seeded = seed_history(conn)
        password = demo_member(conn)
    if seeded:
        print(f"\nseeded a synthetic 1-year history of {seeded} patients ({HISTORY_PREFIX}-...) in team `{DEMO_TEAM}`")
    url = f"http://{settings.alerts_api_host}:{settings.alerts_api_port}"
    started = _team_service(url, logs / "alerts-api.log")
    print(f"\nweb view: {url}/")
    print(f"  log in as `{DEMO_MEMBER}` with password `{password}`"
          f" (team `{DEMO_TEAM}`: this run's patients and the history)")
    print(f"  {started}")


def demo_member(conn: psycopg.Connection[Any]) -> str:
    """`demo-nurse`, a clinician of the demo team, with a fresh password (returned): each demo prints its own."""
    password = secrets.token_urlsafe(12)
    add_member(conn, DEMO_MEMBER, DEMO_TEAM, "clinician", "demo")
    set_password(conn, DEMO_MEMBER, password)
    return password


def seed_history(conn: psycopg.Connection[Any]) -> int:
    """A synthetic history in the demo team (once: a later demo finds it there); how many patients."""
    found = conn.execute("SELECT 1 FROM patient_teams WHERE team = %s AND patient_id LIKE %s LIMIT 1",
                         (DEMO_TEAM, f"{HISTORY_PREFIX}-%")).fetchone()
    if found:
        return 0
    return len(seed(conn, 20, 365, team=DEMO_TEAM, prefix=HISTORY_PREFIX, seed_value=2024).patients)


def _team_service(url: str, log_path: Path) -> str:
    """Start `respmon alerts-api` in the background unless it already answers; says how to stop it."""
    try:
        if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
            return "the team service was already running there (`respmon alerts-api`)"
    except httpx.HTTPError:
        pass
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "respmon", "alerts-api"], stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"{url}/healthz", 60, proc)
    except (RuntimeError, TimeoutError) as error:
        stop(proc)
        return f"the team service did not start ({error}; log {log_path}): run `.venv/bin/respmon alerts-api`"
    return (f"team service `respmon alerts-api` running in the background (pid {proc.pid}, log {log_path}):"
            f" stop it with `kill {proc.pid}`")


def _print_alert(alert: dict[str, object], signature_ok: bool) -> None:
    print(f"\n  [{str(alert['severity']).upper()}] {alert['category']} {alert['rule_id']} "
          f"for {alert['patient_id']} (signature {'verified' if signature_ok else 'INVALID'})")
    print(f"    action:   {alert['recommended_action']}")
    print(f"    citation: {alert['citation']}")
    evidence = json.dumps(alert["evidence"], default=str)
    print(f"    evidence: {evidence[:300]}{' ...' if len(evidence) > 300 else ''}")
