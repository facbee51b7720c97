"""Outbox dispatcher: sends pending deliveries, records every attempt, backs off exponentially on failure.

Each due delivery is claimed in a short transaction (`FOR UPDATE SKIP LOCKED`, then a lease on
`next_attempt_at`) and sent outside it, so several dispatchers can run side by side without sending the
same delivery twice, and no row lock or open transaction waits on a slow receiver. A send whose
recording then fails (the database went away between the receiver's answer and our commit) is
remembered and recorded, not sent again, once the database is back; only a crash in that window
re-sends, and the receiver drops that by its `Idempotency-Key`.

Webhooks and e-mail are sent here. Other channels (`fhir`: the alert as a FHIR transaction Bundle, built by
`respmon/fhir`, a layer above) are sent by a `Sender` the top layer registers at start-up
(`register_sender`); a due delivery of a channel nobody registered fails like a refused send and is retried
with the same backoff, so it waits for a process that can send it instead of being lost.
"""

import asyncio
import json
import logging
import smtplib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from psycopg import AsyncConnection

from alerts import email, metrics
from alerts.signing import HEADER, sign
from respmon.core.settings import Settings

log = logging.getLogger("respmon.alerts")


SendResult = tuple[bool, int | None, str | None]
"""(delivered, HTTP status or None, error or None): what a send returns."""


@dataclass(frozen=True)
class Delivery:
    """A claimed outbox row, as a registered sender gets it."""

    delivery_id: Any
    channel: str
    target: str
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int


Sender = Callable[[httpx.AsyncClient, Delivery], Awaitable[SendResult]]
SENDERS: dict[str, Sender] = {}
"""Channel -> its sender, registered by the top layer at start-up (`register_sender`)."""


def register_sender(channel: str, sender: Sender) -> None:
    """Let this process's dispatchers send `channel` deliveries with `sender`."""
    if channel in ("webhook", "email"):
        raise ValueError(f"{channel} is sent by the dispatcher itself")
    SENDERS[channel] = sender


def backoff_s(attempts: int, settings: Settings) -> float:
    return min(settings.delivery_backoff_max_s, settings.delivery_backoff_base_s * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Outcome:
    """What one send returned, with what recording and counting it need."""

    ok: bool
    code: int | None
    error: str | None
    channel: str
    payload: dict[str, Any]
    received_at: datetime | None
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Dispatcher:
    """Sends due deliveries; keeps the outcomes of sends it could not record until it can."""

    settings: Settings
    unrecorded: dict[Any, Outcome] = field(default_factory=dict)
    senders: MutableMapping[str, Sender] = field(default_factory=lambda: SENDERS)
    """The registered senders (the process-wide registry unless a test gives its own)."""

    async def dispatch_due(self, conn: AsyncConnection, client: httpx.AsyncClient, limit: int = 20) -> int:
        """Record what earlier rounds sent but could not record, then send up to `limit` due
        deliveries; returns how many were delivered."""
        await self._record_unrecorded(conn)
        delivered = 0
        for _ in range(limit):
            claimed = await self._claim(conn)
            if claimed is None:
                break
            delivery_id, channel, target, key, payload, attempts, received_at = claimed
            # sent outside any transaction: no row lock or open transaction waits on the network
            if channel in ("webhook", "email"):
                ok, code, error = await _send(client, channel, target, key, payload, self.settings)
            else:
                ok, code, error = await self._send_other(client, Delivery(delivery_id, channel, target, key,
                                                                          payload, attempts))
            outcome = Outcome(ok, code, error, channel, payload, received_at)
            try:
                async with conn.transaction():
                    await _record(conn, delivery_id, attempts + 1, outcome, self.settings)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as refused:
                await self._set_aside(conn, delivery_id, refused)  # the others must still go out
                continue
            except BaseException:
                self.unrecorded[delivery_id] = outcome
                raise
            _count(outcome)
            delivered += outcome.ok
        return delivered

    async def _send_other(self, client: httpx.AsyncClient, delivery: Delivery) -> SendResult:
        """A channel of a registered sender; a sender that raises is a failed attempt, retried later."""
        sender = self.senders.get(delivery.channel)
        if sender is None:
            return False, None, f"no sender for channel {delivery.channel} in this process"
        try:
            return await sender(client, delivery)
        except Exception as error:  # noqa: BLE001 (one bad delivery must not stop the round: retried later)
            log.error("sender failed", extra={"delivery_id": str(delivery.delivery_id),  # no message: it may
                                              "channel": delivery.channel, "error": type(error).__name__})  # name data
            return False, None, type(error).__name__

    async def _claim(self, conn: AsyncConnection) -> tuple[Any, ...] | None:
        """Take the next due delivery for this send: its `next_attempt_at` moves past the send's
        longest duration (a lease), so another dispatcher skips it, and the lock is released at once.
        A dispatcher that dies mid-send leaves the lease to expire and the delivery is sent again."""
        lease_s = self.settings.delivery_timeout_s * 2 + 30
        async with conn.transaction():
            row = await (
                await conn.execute(
                    "SELECT d.delivery_id, d.channel, d.target, d.idempotency_key, d.payload, d.attempts,"
                    " a.upload_received_at FROM deliveries d JOIN alerts a USING (alert_id)"
                    " WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
                    " ORDER BY d.next_attempt_at LIMIT 1 FOR UPDATE OF d SKIP LOCKED"
                )
            ).fetchone()
            if row is not None:
                await conn.execute("UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => %s)"
                                   " WHERE delivery_id = %s", (lease_s, row[0]))
        return tuple(row) if row is not None else None

    async def _set_aside(self, conn: AsyncConnection, delivery_id: Any, error: Exception) -> None:
        """PostgreSQL refused to record a send (not a lost connection: it would refuse it again). The
        delivery stays pending but moves back in line by the longest backoff, so it cannot hold up
        every other alert; it is sent again then."""
        log.error("could not record a send; sending it again later", extra={
            "delivery_id": str(delivery_id), "error": type(error).__name__,
            "retry_in_s": self.settings.delivery_backoff_max_s})
        async with conn.transaction():
            await conn.execute("UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => %s)"
                               " WHERE delivery_id = %s", (self.settings.delivery_backoff_max_s, delivery_id))

    async def _record_unrecorded(self, conn: AsyncConnection) -> None:
        for delivery_id, outcome in list(self.unrecorded.items()):
            async with conn.transaction():
                row = await (
                    await conn.execute(
                        "SELECT attempts FROM deliveries WHERE delivery_id = %s AND status = 'pending' FOR UPDATE",
                        (delivery_id,),
                    )
                ).fetchone()
                if row is not None:
                    await _record(conn, delivery_id, row[0] + 1, outcome, self.settings)
            del self.unrecorded[delivery_id]
            if row is not None:
                _count(outcome)
            log.info("recorded a send made before the database was lost",
                     extra={"delivery_id": str(delivery_id), "channel": outcome.channel, "ok": outcome.ok})


async def _record(conn: AsyncConnection, delivery_id: Any, attempts: int, outcome: Outcome,
                  settings: Settings) -> None:
    """The attempt row and the delivery's new state, in the caller's transaction."""
    await conn.execute(
        "INSERT INTO delivery_attempts (delivery_id, at, ok, status_code, error) VALUES (%s, %s, %s, %s, %s)",
        (delivery_id, outcome.sent_at, outcome.ok, outcome.code, outcome.error),
    )
    if outcome.ok:
        await conn.execute(
            "UPDATE deliveries SET status = 'delivered', attempts = %s, delivered_at = %s,"
            " last_error = NULL WHERE delivery_id = %s",
            (attempts, outcome.sent_at, delivery_id),
        )
        return
    await conn.execute(
        "UPDATE deliveries SET attempts = %s, last_error = %s,"
        " next_attempt_at = %s + make_interval(secs => %s) WHERE delivery_id = %s",
        (attempts, outcome.error, outcome.sent_at, backoff_s(attempts, settings), delivery_id),
    )
    log.warning("delivery failed", extra={"delivery_id": str(delivery_id), "channel": outcome.channel,
                                          "attempts": attempts, "error": outcome.error})


def _count(outcome: Outcome) -> None:
    """Metrics for a recorded attempt (counted once it is committed)."""
    metrics.DELIVERY_ATTEMPTS.labels(outcome.channel, "ok" if outcome.ok else "failed").inc()
    if not outcome.ok:
        return
    metrics.ALERTS_DELIVERED.labels(outcome.channel, outcome.payload.get("category"),
                                    outcome.payload.get("severity")).inc()
    if outcome.received_at is not None:
        metrics.UPLOAD_TO_DELIVERY.observe((outcome.sent_at - outcome.received_at).total_seconds())


async def _send(client: httpx.AsyncClient, channel: str, target: str, key: str, payload: dict[str, object],
                settings: Settings) -> tuple[bool, int | None, str | None]:
    if channel == "email":
        return await _send_email(target, payload, settings)
    if channel != "webhook":
        return False, None, f"unknown channel {channel}"
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        HEADER: sign(body, settings.webhook_secret.get_secret_value()),
    }
    try:
        response = await client.post(target, content=body, headers=headers, timeout=settings.delivery_timeout_s)
    except httpx.HTTPError as error:
        return False, None, type(error).__name__
    if 200 <= response.status_code < 300:
        return True, response.status_code, None
    return False, response.status_code, f"HTTP {response.status_code}"


async def _send_email(target: str, payload: dict[str, object], settings: Settings
                      ) -> tuple[bool, int | None, str | None]:
    message = email.build_message(payload, target, settings)
    try:
        await asyncio.to_thread(email.send, message, settings)
    except (OSError, smtplib.SMTPException) as error:
        return False, None, type(error).__name__
    return True, None, None
