"""The private stack of the fault tests (respmon/testing/privatestack.py), plus the faults they inflict on it:
the broker killed by its own pid file, PostgreSQL stopped, and a fresh database per test.
"""

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg

from respmon.testing.privatestack import PrivateStack as BaseStack


def pg_bin() -> Path:
    return max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))


def as_pg(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then (as stack.sh does)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def wait_for(check, timeout_s: float, what: str, interval_s: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class PrivateStack(BaseStack):
    def __init__(self) -> None:
        super().__init__(prefix="respmon-rel-")

    def admin_url(self, db: str = "postgres") -> str:
        return self.db_url(db)

    def start(self) -> "PrivateStack":
        """Start whatever is down (a test may have left it so) and wait until the broker serves metadata."""
        super().start()
        wait_for(self.kafka_answers, 60, "kafka metadata")
        return self

    # --- Kafka ---
    def kafka_kill(self, sig: signal.Signals) -> float:
        """Signal the broker (by its own pid file) and wait until it is gone; returns the seconds that took."""
        pid = self.kafka_pid()
        assert pid, "the private broker is not running"
        started = time.monotonic()
        os.kill(pid, sig)
        wait_for(lambda: not _alive(pid), 60, "the broker to exit")
        (self.dir / "kafka" / "kafka.pid").unlink(missing_ok=True)
        return time.monotonic() - started

    def kafka_answers(self) -> bool:
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        except Exception:  # noqa: BLE001 - not up yet
            return False
        try:
            admin.list_topics()
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            admin.close()

    # --- PostgreSQL ---
    @property
    def pg_data(self) -> Path:
        return self.dir / "pg" / "data"

    def pg_stop(self) -> None:
        subprocess.run(as_pg([str(pg_bin() / "pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "-t", "60",
                              "stop"]), check=True, capture_output=True, timeout=90)

    def pg_start(self) -> None:
        self.stack_sh("start", "--no-schema")

    def new_database(self) -> str:
        db = f"respmon_rel_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        return self.admin_url(db)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child still answers kill 0: look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
