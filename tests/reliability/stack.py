"""A private single-broker Kafka + PostgreSQL stack (infra/stack.sh) that a fault test may break at will.

Never the shared dev stack: every instance has its own folder under /tmp and its own free ports, and
processes are signalled only by the pid files this stack wrote.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from tests.conftest import ROOT, STACK, free_port

SHARED_LIBS = ROOT / ".stack" / "kafka" / "libs"


def pg_bin() -> Path:
    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]


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


class PrivateStack:
    def __init__(self) -> None:
        # /tmp + mode 755: the postgres user must reach the data folder, or stack.sh would fall back to
        # a folder named after the checkout (shared by every private stack of it).
        self.dir = Path(tempfile.mkdtemp(prefix="respmon-rel-"))
        self.dir.chmod(0o755)
        self.kafka_port = free_port()
        self.controller_port = free_port()
        self.pg_port = free_port()
        self.env = {**os.environ, "RESPMON_STACK_DIR": str(self.dir), "RESPMON_KAFKA_PORT": str(self.kafka_port),
                    "RESPMON_KAFKA_CONTROLLER_PORT": str(self.controller_port), "RESPMON_PG_PORT": str(self.pg_port)}
        if (SHARED_LIBS / ".complete").exists():  # reuse the cached jars instead of a Maven run
            (self.dir / "kafka").mkdir()
            (self.dir / "kafka" / "libs").symlink_to(SHARED_LIBS)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def admin_url(self, db: str = "postgres") -> str:
        return f"postgresql://respmon:respmon@127.0.0.1:{self.pg_port}/{db}"

    def _stack(self, *args: str) -> None:
        subprocess.run([str(STACK), *args], check=True, env=self.env, capture_output=True, timeout=240)

    def start(self) -> None:
        """Start whatever of Kafka and PostgreSQL is not running (idempotent, like stack.sh start)."""
        self._stack("start", "--no-schema")
        wait_for(self.kafka_answers, 60, "kafka metadata")

    def stop(self) -> None:
        try:
            self._stack("stop")
        finally:
            pid = self.kafka_pid()
            if pid:
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- Kafka ---
    def kafka_pid(self) -> int | None:
        pid_file = self.dir / "kafka" / "kafka.pid"
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

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
        self._stack("start", "--no-schema")

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
