"""The running pipeline: ingest and worker processes on free ports, and a webhook receiver."""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from alerts.receiver import WebhookReceiver
from respmon.core.settings import Settings
from respmon.launcher import service
from tests.conftest import free_port

SECRET = "test-webhook-secret"


ESCALATE_AFTER_S = 4.0


class Mailbox:
    """An SMTP server on loopback (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[attr-defined]
        return "250 OK"


class PipelineClient:
    """What a test does against running services: provision credentials and upload like a device.
    Needs `ingest_url` and `db_url` on the class using it."""

    ingest_url: str
    db_url: str

    def team_member(self, member_id: str, team: str = "respiratory") -> str:
        from alerts.team import provision

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return provision(conn, member_id, team)

    def device(self, device_id: str, patient_id: str, team: str = "respiratory") -> str:
        """Provision a device, its patient in the care of `team` (whose members `team_member` makes);
        returns its bearer token."""
        from alerts.careteams import assign
        from ingest.devices import provision

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            assign(conn, patient_id, team, "tests")
            return provision(conn, device_id, patient_id)

    def upload(self, token: str | None, body: bytes | str, content_type: str = "application/json",
               headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
        """POST an upload; keyword arguments become query parameters (filename, format)."""
        sent = {"Content-Type": content_type, **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return httpx.post(f"{self.ingest_url}/v1/uploads", content=body, headers=sent, params=params, timeout=30)


@dataclass(frozen=True)
class ServicePorts:
    """Free loopback ports of one pipeline's ingest, worker and team API, and the settings naming them."""

    ingest: int
    worker: int
    alerts: int

    @classmethod
    def free(cls) -> "ServicePorts":
        return cls(free_port(), free_port(), free_port())

    def env(self) -> dict[str, str]:
        return {"RESPMON_INGEST_PORT": str(self.ingest), "RESPMON_WORKER_WEB_PORT": str(self.worker),
                "RESPMON_ALERTS_API_PORT": str(self.alerts), "RESPMON_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.alerts}"}


@contextmanager
def running_services(env: dict[str, str], ports: ServicePorts, logs: Path) -> Iterator[tuple[str, str, str]]:
    """The worker, ingest and the team API as processes; yields (ingest, worker, alerts) base URLs once
    each answers, stops them all after."""
    ingest, worker, alerts = (f"http://127.0.0.1:{port}" for port in (ports.ingest, ports.worker, ports.alerts))
    with service(["worker"], env, f"{worker}/healthz", logs / "worker.log"), \
         service(["ingest"], env, f"{ingest}/healthz", logs / "ingest.log"), \
         service(["alerts-api"], env, f"{alerts}/healthz", logs / "alerts.log"):
        yield ingest, worker, alerts


@dataclass
class Pipeline(PipelineClient):
    ingest_url: str
    worker_url: str
    alerts_url: str
    receiver: WebhookReceiver
    escalation_receiver: WebhookReceiver
    mailbox: Mailbox
    db_url: str
    log_dir: Path

    def worker_samples(self, family: str) -> list[Sample]:
        """The samples of one metric family on the worker's /metrics page now."""
        page = httpx.get(f"{self.worker_url}/metrics").text
        return [s for f in text_string_to_metric_families(page) if f.name == family for s in f.samples]


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    """Every record on the dead-letter topic so far, decoded (ingest's and the worker's)."""
    consumer = KafkaConsumer(settings.deadletter_topic, bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        return [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()


@pytest.fixture(scope="package")
def pipeline(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    logs = tmp_path_factory.mktemp("logs")
    ports = ServicePorts.free()
    mailbox = Mailbox()
    mailbox.controller.start()
    with WebhookReceiver(SECRET) as receiver, WebhookReceiver(SECRET) as escalation:
        routing = logs / "routing.yaml"
        routing.write_text(f"""
version: 1
routes:
  - {{name: team-webhook, channel: webhook, target: "${{TEST_WEBHOOK_URL}}", team: respiratory}}
  - {{name: team-email, channel: email, target: resp-team@hospital.test, min_severity: high}}
escalation:
  after_minutes: {ESCALATE_AFTER_S / 60}
  routes:
    - {{name: on-call, channel: webhook, target: "{escalation.url}", team: on-call, min_severity: warn}}
""")
        env = {**stack_env, **ports.env(), "RESPMON_ROUTING_FILE": str(routing),
               "TEST_WEBHOOK_URL": receiver.url, "RESPMON_WEBHOOK_SECRET": SECRET,
               "RESPMON_SMTP_PORT": str(mailbox.controller.port), "RESPMON_ESCALATION_CHECK_S": "0.5",
               "RESPMON_LOG_LEVEL": "INFO"}
        try:
            with running_services(env, ports, logs) as urls:
                yield Pipeline(*urls, receiver, escalation, mailbox, stack_env["RESPMON_DATABASE_URL"], logs)
        finally:
            mailbox.controller.stop()
    sys.stderr.write(f"service logs in {logs}\n")
