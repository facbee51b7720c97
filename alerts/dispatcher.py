"""Outbox dispatcher: sends pending deliveries, records every attempt, backs off exponentially on failure.

Each delivery row is locked (`FOR UPDATE SKIP LOCKED`) while it is sent, so several dispatchers can
run side by side without sending the same delivery twice; the receiver also gets an
`Idempotency-Key` header to drop a resend after a crash between its 2xx and our commit.
"""

import asyncio
import json
import logging
import smtplib
from datetime import UTC, datetime

import httpx
from psycopg import AsyncConnection

from alerts import email, metrics
from alerts.signing import HEADER, sign
from respmon.settings import Settings

log = logging.getLogger("respmon.alerts")


def backoff_s(attempts: int, settings: Settings) -> float:
    return min(settings.delivery_backoff_max_s, settings.delivery_backoff_base_s * 2 ** max(0, attempts - 1))


async def dispatch_due(conn: AsyncConnection, client: httpx.AsyncClient, settings: Settings, limit: int = 20) -> int:
    """Send up to `limit` due deliveries; returns how many were delivered."""
    delivered = 0
    for _ in range(limit):
        async with conn.transaction():
            row = await (
                await conn.execute(
                    "SELECT d.delivery_id, d.channel, d.target, d.idempotency_key, d.payload, d.attempts,"
                    " a.upload_received_at FROM deliveries d JOIN alerts a USING (alert_id)"
                    " WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
                    " ORDER BY d.next_attempt_at LIMIT 1 FOR UPDATE OF d SKIP LOCKED"
                )
            ).fetchone()
            if row is None:
                break
            delivery_id, channel, target, key, payload, attempts, received_at = row
            ok, code, error = await _send(client, channel, target, key, payload, settings)
            attempts += 1
            await conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, ok, status_code, error) VALUES (%s, %s, %s, %s)",
                (delivery_id, ok, code, error),
            )
            if ok:
                await conn.execute(
                    "UPDATE deliveries SET status = 'delivered', attempts = %s, delivered_at = now(),"
                    " last_error = NULL WHERE delivery_id = %s",
                    (attempts, delivery_id),
                )
                delivered += 1
                metrics.ALERTS_DELIVERED.labels(channel, payload.get("category"), payload.get("severity")).inc()
                if received_at is not None:
                    metrics.UPLOAD_TO_DELIVERY.observe((datetime.now(UTC) - received_at).total_seconds())
            else:
                await conn.execute(
                    "UPDATE deliveries SET attempts = %s, last_error = %s,"
                    " next_attempt_at = now() + make_interval(secs => %s) WHERE delivery_id = %s",
                    (attempts, error, backoff_s(attempts, settings), delivery_id),
                )
                log.warning("delivery failed", extra={"delivery_id": str(delivery_id), "channel": channel,
                                                      "attempts": attempts, "error": error})
            metrics.DELIVERY_ATTEMPTS.labels(channel, "ok" if ok else "failed").inc()
    return delivered


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
