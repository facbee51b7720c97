"""A private Kafka + PostgreSQL stack (infra/stack.sh) for fault tests and benchmarks, never the shared one.

Every instance has its own folder under /tmp (RESPMON_STACK_DIR) and its own free ports, and its
processes are signalled only through the pid files it wrote, so a test may break it at will while
the dev stack and other people's stacks run on. The checkout's cached Kafka jars are linked in, so
no Maven run is needed. Works from a checkout (it runs the checkout's infra/stack.sh).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[2]  # the checkout (this file: respmon/testing/privatestack.py)
STACK_SH = ROOT / "infra" / "stack.sh"
CACHED_LIBS = ROOT / ".stack" / "kafka" / "libs"
# Broker settings shared by stack.sh's single broker and the fault tests' three-broker cluster.
BROKER_PROPERTIES = ROOT / "infra" / "kafka" / "broker.properties"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateStack:
    """One broker and one PostgreSQL server on free loopback ports; `with` starts, stops and deletes it."""

    def __init__(self, prefix: str = "respmon-stack-") -> None:
        # /tmp + mode 755: the postgres system user (stack.sh runs it when we are root) must reach the
        # data folder, or stack.sh falls back to a folder named after the checkout, shared by all stacks.
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.dir.chmod(0o755)
        self.kafka_port, self.controller_port, self.pg_port = free_port(), free_port(), free_port()
        if (CACHED_LIBS / ".complete").exists():
            (self.dir / "kafka").mkdir()
            (self.dir / "kafka" / "libs").symlink_to(CACHED_LIBS)

    @property
    def env(self) -> dict[str, str]:
        """What stack.sh reads to place this stack (the services need only bootstrap and db_url)."""
        return {"RESPMON_STACK_DIR": str(self.dir), "RESPMON_KAFKA_PORT": str(self.kafka_port),
                "RESPMON_KAFKA_CONTROLLER_PORT": str(self.controller_port), "RESPMON_PG_PORT": str(self.pg_port)}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def db_url(self, db: str = "respmon") -> str:
        return f"postgresql://respmon:respmon@127.0.0.1:{self.pg_port}/{db}"

    def stack_sh(self, *args: str) -> None:
        """Run infra/stack.sh for this stack; its own log lines explain a failure."""
        done = subprocess.run([str(STACK_SH), *args], env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=240, check=False)  # the failure is raised below, with stderr
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start(self) -> Self:
        """Start whatever of Kafka and PostgreSQL is not running (idempotent, like stack.sh start)."""
        self.stack_sh("start", "--no-schema")
        return self

    def stop(self) -> None:
        try:
            self.stack_sh("stop")
        finally:
            pid = self.kafka_pid()
            if pid:
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def kafka_pid(self) -> int | None:
        """The broker's pid from this stack's pid file, if that process still runs."""
        pid_file = self.dir / "kafka" / "kafka.pid"
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:  # half started (PostgreSQL up, Kafka not): leave nothing running
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.remove()
