"""A private Kafka + PostgreSQL stack for end-to-end benchmarks (never the shared dev stack).

`infra/stack.sh` is run with its own RESPMON_STACK_DIR (a fresh temp folder) and free ports; the
cached Kafka jars of the checkout's `.stack/kafka/libs` are symlinked in, so no Maven run is needed.
`stop()` stops exactly this stack and deletes its folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK_SH = ROOT / "infra" / "stack.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateStack:
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="respmon-bench-stack-")))
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        return {"RESPMON_STACK_DIR": str(self.dir), "RESPMON_KAFKA_PORT": str(self.kafka_port),
                "RESPMON_KAFKA_CONTROLLER_PORT": str(self.controller_port), "RESPMON_PG_PORT": str(self.pg_port)}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def db_url(self, db: str = "respmon") -> str:
        return f"postgresql://respmon:respmon@127.0.0.1:{self.pg_port}/{db}"

    def _run(self, *args: str) -> None:
        subprocess.run([str(STACK_SH), *args], check=True, env={**os.environ, **self.env},
                       stdout=subprocess.DEVNULL)

    def start(self) -> PrivateStack:
        os.chmod(self.dir, 0o755)  # the postgres system user must reach the data folder (runs as root)
        libs = self.dir / "kafka" / "libs"
        libs.mkdir(parents=True)
        cached = ROOT / ".stack" / "kafka" / "libs"
        jars = sorted(cached.glob("*.jar"))
        if not jars:
            raise RuntimeError(f"no cached Kafka jars in {cached}: run `infra/stack.sh start` once")
        for jar in jars:
            (libs / jar.name).symlink_to(jar)
        (libs / ".complete").touch()
        self._run("start", "--no-schema")
        return self

    def stop(self) -> None:
        try:
            self._run("stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
