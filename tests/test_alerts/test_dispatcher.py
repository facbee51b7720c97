"""The dispatcher on a real PostgreSQL: a send whose recording is lost to a database outage is
recorded once the database is back, not sent again; a send whose recording PostgreSQL refuses does
not hold up the other alerts."""

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.dispatcher import Dispatcher
from alerts.receiver import WebhookReceiver
from respmon.core.settings import Settings
from tests.conftest import namespace


class BackendKillingReceiver(WebhookReceiver):
    """The reference receiver that, just before answering, terminates one PostgreSQL backend: the
    database is lost between the receiver's answer and the dispatcher's commit."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.answers: Counter[int] = Counter()
        self.kill_pid: int | None = None
        self.db_url = ""
        receiver, lock = self, threading.Lock()
        base = self._server.RequestHandlerClass

        class Killing(base):  # type: ignore[misc, valid-type]
            def send_response(self, code: int, message: str | None = None) -> None:
                with lock:
                    receiver.answers[code] += 1
                    pid, receiver.kill_pid = receiver.kill_pid, None
                if pid is not None:
                    with psycopg.connect(receiver.db_url, autocommit=True) as admin:
                        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                super().send_response(code, message)

        self._server.RequestHandlerClass = Killing


@pytest.fixture
def db_url(stack: None, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: no running worker's dispatcher may take its deliveries."""
    with namespace(tmp_path) as env:
        yield env["RESPMON_DATABASE_URL"]


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, delivery_backoff_base_s=0.5, delivery_backoff_max_s=120)  # not the env's


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def receiver(settings: Settings, db_url: str) -> Iterator[BackendKillingReceiver]:
    with BackendKillingReceiver(secret=settings.webhook_secret.get_secret_value()) as receiver:
        receiver.db_url = db_url
        yield receiver


def queue_webhook(db: psycopg.Connection, url: str) -> uuid.UUID:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    (alert_id,) = db.execute(
        "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, evidence, action, citation,"
        " finding_at) VALUES (%s, 'NIV-START-FVC', 't', 'start_niv', 'high', '{}', 'a', 'c', now())"
        " RETURNING alert_id", (patient,)).fetchone()  # type: ignore[misc]
    (delivery_id,) = db.execute(
        "INSERT INTO deliveries (alert_id, channel, target, idempotency_key, payload)"
        " VALUES (%s, 'webhook', %s, %s, %s) RETURNING delivery_id",
        (alert_id, url, f"key-{patient}", Jsonb({"patient_id": patient, "idempotency_key": f"key-{patient}",
                                                   "category": "start_niv", "severity": "high"}))).fetchone()  # type: ignore[misc]
    return delivery_id  # type: ignore[no-any-return]


async def two_rounds(dispatcher: Dispatcher, receiver: BackendKillingReceiver, db_url: str) -> bool:
    """Round one loses its connection while the receiver answers; round two runs on a new one."""
    async with httpx.AsyncClient() as client:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            receiver.kill_pid = conn.info.backend_pid
            try:
                await dispatcher.dispatch_due(conn, client)
                lost = False
            except psycopg.OperationalError:  # AdminShutdown: the connection was terminated
                lost = True
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            await dispatcher.dispatch_due(conn, client)
    return lost


@pytest.mark.parametrize("answer", [200, 503])
def test_send_lost_to_a_database_outage_is_recorded_not_resent(
        answer: int, settings: Settings, receiver: BackendKillingReceiver, db: psycopg.Connection,
        db_url: str) -> None:
    receiver.fail_with = None if answer == 200 else answer
    delivery_id = queue_webhook(db, receiver.url)
    dispatcher = Dispatcher(settings)

    lost = asyncio.run(two_rounds(dispatcher, receiver, db_url))

    assert lost, "the first round's recording should have failed"
    assert receiver.answers == {answer: 1}, "the delivery was sent again after the outage"
    assert dispatcher.unrecorded == {}
    status, attempts, last_error, next_at_after_attempt = db.execute(
        "SELECT status, attempts, last_error, next_attempt_at - (SELECT max(at) FROM delivery_attempts x"
        " WHERE x.delivery_id = d.delivery_id) FROM deliveries d WHERE delivery_id = %s",
        (delivery_id,)).fetchone()  # type: ignore[misc]
    rows = db.execute("SELECT ok, status_code FROM delivery_attempts WHERE delivery_id = %s",
                      (delivery_id,)).fetchall()
    assert rows == [(answer == 200, answer)]
    assert attempts == 1
    if answer == 200:
        assert status == "delivered" and last_error is None
    else:  # recorded as a failure that backs off from when it was sent, as any other failure
        assert status == "pending" and last_error == "HTTP 503"
        assert next_at_after_attempt.total_seconds() == pytest.approx(settings.delivery_backoff_base_s)


def test_a_send_postgres_refuses_to_record_does_not_hold_up_the_others(
        settings: Settings, receiver: BackendKillingReceiver, db: psycopg.Connection, db_url: str) -> None:
    refused = queue_webhook(db, receiver.url)
    other = queue_webhook(db, receiver.url)  # due after `refused`: before, it never went out
    db.execute("UPDATE deliveries SET next_attempt_at = next_attempt_at + interval '1 ms' WHERE delivery_id = %s",
               (other,))
    db.execute(f"ALTER TABLE delivery_attempts ADD CONSTRAINT refuse_one CHECK (delivery_id <> '{refused}')")

    async def one_round() -> int:
        async with httpx.AsyncClient() as client, await psycopg.AsyncConnection.connect(db_url) as conn:
            return await Dispatcher(settings).dispatch_due(conn, client)

    assert asyncio.run(one_round()) == 1
    assert receiver.answers == {200: 2}  # both sent; the refused one could not be recorded
    states = {row[0]: row[1:] for row in db.execute(
        "SELECT delivery_id, status, attempts, next_attempt_at - now() > make_interval(secs => %s)"
        " FROM deliveries", (settings.delivery_backoff_max_s - 5,)).fetchall()}
    assert states == {other: ("delivered", 1, False), refused: ("pending", 0, True)}  # set aside for a while


def test_no_row_lock_or_transaction_is_held_while_the_receiver_answers(
        settings: Settings, receiver: BackendKillingReceiver, db: psycopg.Connection, db_url: str) -> None:
    """A slow receiver must not hold the outbox row (escalation, the team's acknowledge and other
    dispatchers touch it) nor keep a transaction open on the database while it thinks."""
    delivery_id = queue_webhook(db, receiver.url)
    seen: dict[str, object] = {}
    base = receiver._server.RequestHandlerClass

    class Probing(base):  # type: ignore[misc, valid-type]
        def send_response(self, code: int, message: str | None = None) -> None:
            with psycopg.connect(db_url, autocommit=True) as probe:
                try:
                    probe.execute("SELECT 1 FROM deliveries WHERE delivery_id = %s FOR UPDATE NOWAIT",
                                  (delivery_id,))
                    seen["row_free"] = True
                except psycopg.errors.LockNotAvailable:
                    seen["row_free"] = False
                seen["open_transactions"] = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%%'").fetchone()[0]  # type: ignore[index]
            super().send_response(code, message)

    receiver._server.RequestHandlerClass = Probing

    async def one_round() -> int:
        async with httpx.AsyncClient() as client, await psycopg.AsyncConnection.connect(db_url) as conn:
            return await Dispatcher(settings).dispatch_due(conn, client)

    assert asyncio.run(one_round()) == 1
    assert seen == {"row_free": True, "open_transactions": 0}
    assert db.execute("SELECT status, attempts FROM deliveries WHERE delivery_id = %s",
                      (delivery_id,)).fetchone() == ("delivered", 1)
