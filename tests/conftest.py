"""Shared fixtures. Integration tests run on the real stack: infra/stack.sh starts Kafka and PostgreSQL
(and stops them at the end if this run started them); each run gets its own database and topic prefix."""

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "infra" / "stack.sh"
ADMIN_URL = "postgresql://respmon:respmon@127.0.0.1:15432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    """The real Kafka broker and PostgreSQL server of infra/stack.sh."""
    was_running = subprocess.run([str(STACK), "status"], capture_output=True, check=False).returncode == 0
    subprocess.run([str(STACK), "start", "--no-schema"], check=True)
    yield
    if not was_running:
        subprocess.run([str(STACK), "stop"], check=True)


@contextmanager
def namespace(worker_dir: Path) -> Iterator[dict[str, str]]:
    """A fresh database (schema applied) and a unique topic prefix and consumer group: pipelines of
    one test run that must not see each other's events, alerts or outbox each get their own."""
    run = uuid.uuid4().hex[:8]
    db = f"respmon_test_{run}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    env = {
        "RESPMON_DATABASE_URL": f"postgresql://respmon:respmon@127.0.0.1:15432/{db}",
        "RESPMON_TOPIC_PREFIX": f"test-{run}",
        "RESPMON_WORKER_APP_ID": f"respmon-test-{run}",
        "RESPMON_WORKER_DATA_DIR": str(worker_dir),
        "RESPMON_DISPATCH_INTERVAL_S": "0.2",
        "RESPMON_DELIVERY_BACKOFF_BASE_S": "0.5",
        "RESPMON_DELIVERY_BACKOFF_MAX_S": "2",
    }
    for command in ("migrate", "topics"):
        subprocess.run([sys.executable, "-m", "respmon", command], check=True, env={**os.environ, **env}, cwd=ROOT)
    try:
        yield env
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture(scope="session")
def stack_env(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for this run's services, also set in this process (for code under test)."""
    with namespace(tmp_path_factory.mktemp("worker")) as env:
        saved = dict(os.environ)
        os.environ.update(env)
        from respmon.core.settings import get_settings

        get_settings.cache_clear()
        yield env
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def db_url(stack_env: dict[str, str]) -> str:
    return stack_env["RESPMON_DATABASE_URL"]


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn
