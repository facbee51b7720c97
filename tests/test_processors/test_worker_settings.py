"""The worker hands its typed settings to faust, and reports what its memory grows with."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_session_timeout_setting_reaches_faust() -> None:
    """A dead worker's partitions move to another after RESPMON_WORKER_SESSION_TIMEOUT_S, not faust's 60 s."""
    probe = ("from processors import app as w; c = w.app.conf; "
             "print(c.broker_session_timeout, c.broker_heartbeat_interval)")
    env = {**os.environ, "RESPMON_WORKER_SESSION_TIMEOUT_S": "15"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert [float(v) for v in out[-2:]] == [15.0, 3.0]


def test_the_default_session_timeout_is_ten_seconds() -> None:
    from processors import app as worker

    assert worker.app.conf.broker_session_timeout == worker.settings.worker_session_timeout_s == 10.0


def test_history_gauges_count_held_values_and_their_bytes_when_scraped() -> None:
    from prometheus_client import generate_latest

    from processors import telemetry

    table: dict[str, bytes | None] = {"A": b'{"a":1}', "B": None, "C": b"x" * 1000}
    telemetry.watch_histories(table.values)
    table["D"] = b"yy"  # a patient added after start-up shows at the next scrape
    lines = generate_latest().decode().splitlines()
    assert "respmon_worker_patient_histories 3.0" in lines
    assert "respmon_worker_patient_history_bytes 1009.0" in lines


def test_the_web_port_binds_the_worker_host_and_routes_only_the_workers_own_pages() -> None:
    """faust binds 0.0.0.0 and serves its table, router and statistics views unless told otherwise."""
    probe = ("from processors import app as w; web = w.app.web; web.init_server(); "
             "print(w.app.conf.web_bind, *sorted({r.resource.canonical for r in web.web_app.router.routes()}))")
    env = {**os.environ, "RESPMON_WORKER_HOST": "127.0.0.2"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out[-4:] == ["127.0.0.2", "/healthz", "/metrics", "/readyz"]
