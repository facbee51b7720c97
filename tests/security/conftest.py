"""Security tests run on the real stack (tests/conftest.py `stack_env`: the shared dev Kafka and
PostgreSQL, a fresh database and topic prefix) with their own ingest, worker and team API, so that the
service logs this folder scans hold only what these tests sent."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alerts.receiver import WebhookReceiver
from tests.conftest import namespace
from tests.integration.conftest import PipelineClient, ServicePorts, running_services

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
    topic_prefix: str = "respmon"  # of its own topics, for tests that produce to Kafka directly

    @property
    def measurements_topic(self) -> str:
        return f"{self.topic_prefix}.measurements"


@pytest.fixture(scope="package")
def secured(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPipeline]:
    logs = tmp_path_factory.mktemp("security-logs")
    ports = ServicePorts.free()
    # its own database, topics and consumer group: the integration pipeline of the same run is still up
    with WebhookReceiver(SECRET) as receiver, namespace(tmp_path_factory.mktemp("security-worker")) as own:
        env = {**stack_env, **own, **ports.env(), "RESPMON_WEBHOOK_URL": receiver.url,
               "RESPMON_WEBHOOK_SECRET": SECRET, "RESPMON_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
               "RESPMON_LOG_LEVEL": "INFO"}
        with running_services(env, ports, logs) as urls:
            yield SecuredPipeline(*urls, receiver, own["RESPMON_DATABASE_URL"], logs, own["RESPMON_TOPIC_PREFIX"])
