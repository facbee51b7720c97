"""The running pipeline: ingest and worker processes on free ports, and a webhook receiver."""

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from alerts.receiver import WebhookReceiver
from respmon.launcher import service
from tests.conftest import free_port

SECRET = "test-webhook-secret"


@dataclass
class Pipeline:
    ingest_url: str
    worker_url: str
    receiver: WebhookReceiver
    db_url: str
    log_dir: Path

    def device(self, device_id: str, patient_id: str) -> str:
        """Provision a device; returns its bearer token."""
        from ingest.devices import provision

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return provision(conn, device_id, patient_id)

    def upload(self, token: str | None, body: bytes | str, content_type: str = "application/json",
               headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
        """POST an upload; keyword arguments become query parameters (filename, format)."""
        sent = {"Content-Type": content_type, **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return httpx.post(f"{self.ingest_url}/v1/uploads", content=body, headers=sent, params=params, timeout=30)


@pytest.fixture(scope="session")
def pipeline(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    logs = tmp_path_factory.mktemp("logs")
    ingest_port, worker_port = free_port(), free_port()
    with WebhookReceiver(SECRET) as receiver:
        env = {**stack_env, "RESPMON_INGEST_PORT": str(ingest_port), "RESPMON_WORKER_WEB_PORT": str(worker_port),
               "RESPMON_WEBHOOK_URL": receiver.url, "RESPMON_WEBHOOK_SECRET": SECRET,
               "RESPMON_LOG_LEVEL": "INFO"}
        with service(["worker"], env, f"http://127.0.0.1:{worker_port}/healthz", logs / "worker.log"), \
             service(["ingest"], env, f"http://127.0.0.1:{ingest_port}/healthz", logs / "ingest.log"):
            yield Pipeline(f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{worker_port}", receiver,
                           stack_env["RESPMON_DATABASE_URL"], logs)
    sys.stderr.write(f"service logs in {logs}\n")
