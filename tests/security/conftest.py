"""Security tests run on the real stack (tests/conftest.py `stack_env`: the shared dev Kafka and
PostgreSQL, a fresh database and topic prefix) with their own ingest, worker and team API, so that the
service logs this folder scans hold only what these tests sent."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alerts.receiver import WebhookReceiver
from respmon.launcher import service
from tests.conftest import free_port, namespace
from tests.integration.conftest import PipelineClient

SECRET = "security-webhook-secret"
MAX_UPLOAD = 256 * 1024


@dataclass
class SecuredPipeline(PipelineClient):
    ingest_url: str
    worker_url: str
    alerts_url: str
    receiver: WebhookReceiver
    db_url: str
    log_dir: Path


@pytest.fixture(scope="package")
def secured(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPipeline]:
    logs = tmp_path_factory.mktemp("security-logs")
    ingest_port, worker_port, alerts_port = free_port(), free_port(), free_port()
    # its own database, topics and consumer group: the integration pipeline of the same run is still up
    with WebhookReceiver(SECRET) as receiver, namespace(tmp_path_factory.mktemp("security-worker")) as own:
        env = {**stack_env, **own, "RESPMON_INGEST_PORT": str(ingest_port), "RESPMON_WORKER_WEB_PORT": str(worker_port),
               "RESPMON_ALERTS_API_PORT": str(alerts_port), "RESPMON_WEBHOOK_URL": receiver.url,
               "RESPMON_WEBHOOK_SECRET": SECRET, "RESPMON_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
               "RESPMON_PUBLIC_BASE_URL": f"http://127.0.0.1:{alerts_port}", "RESPMON_LOG_LEVEL": "INFO"}
        with service(["worker"], env, f"http://127.0.0.1:{worker_port}/healthz", logs / "worker.log"), \
             service(["ingest"], env, f"http://127.0.0.1:{ingest_port}/healthz", logs / "ingest.log"), \
             service(["alerts-api"], env, f"http://127.0.0.1:{alerts_port}/healthz", logs / "alerts.log"):
            yield SecuredPipeline(f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{worker_port}",
                                  f"http://127.0.0.1:{alerts_port}", receiver, own["RESPMON_DATABASE_URL"], logs)
