"""Turn findings into alert state changes, audit rows and outbox deliveries, in the caller's transaction.

One active alert per (patient, rule): a new finding opens it, a finding with another severity
updates it and notifies again, a resolved finding resolves it. Replaying the same finding changes
nothing and queues nothing (the delivery idempotency key is derived from the alert change).
"""

import json
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from alerts.routing import Route, routing_for
from respmon.core.settings import Settings
from schemas import Finding
from schemas.findings import SEVERITIES

DISCLAIMER = (
    "Decision support for the respiratory team, not an order: review the evidence and the patient "
    "before acting."
)


async def apply_finding(conn: AsyncConnection, finding: Finding, settings: Settings) -> int | None:
    """Apply one finding; returns the alert id when a notification was queued."""
    if finding.state == "resolved":
        await _resolve(conn, finding)
        return None
    row = await (
        await conn.execute(
            "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, evidence, action,"
            " citation, finding_at, upload_received_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (patient_id, rule_id) WHERE status <> 'resolved' DO UPDATE SET"
            " severity = EXCLUDED.severity, evidence = EXCLUDED.evidence, rule_version = EXCLUDED.rule_version,"
            " finding_at = EXCLUDED.finding_at, updated_at = now(), notified_at = now(), escalated_at = NULL,"
            " upload_received_at = EXCLUDED.upload_received_at,"
            # a worse severity needs a fresh acknowledgement; a milder one keeps the team's acknowledgement
            " status = CASE WHEN array_position(%s::text[], EXCLUDED.severity)"
            " > array_position(%s::text[], alerts.severity) THEN 'open' ELSE alerts.status END"
            " WHERE alerts.severity <> EXCLUDED.severity AND alerts.finding_at < EXCLUDED.finding_at"
            " RETURNING alert_id, (xmax = 0) AS created",
            (finding.patient_id, finding.rule_id, finding.rule_version, finding.category, finding.severity,
             Jsonb(finding.evidence), finding.action, finding.citation, finding.at, finding.received_at,
             list(SEVERITIES), list(SEVERITIES)),
        )
    ).fetchone()
    if row is None:
        return None  # same alert, same severity: already notified
    alert_id, created = row
    await conn.execute(
        "INSERT INTO alert_events (alert_id, actor, action, note, finding_at) VALUES (%s, 'rules', %s, %s, %s)",
        (alert_id, "opened" if created else f"severity:{finding.severity}", finding.rule_version, finding.at),
    )
    await queue_deliveries(conn, alert_id, finding_payload(alert_id, finding, settings),
                           routing_for(settings).notify_routes(finding.category, finding.severity), "notify")
    return int(alert_id)


async def _resolve(conn: AsyncConnection, finding: Finding) -> None:
    row = await (
        await conn.execute(
            "UPDATE alerts SET status = 'resolved', updated_at = now(), resolved_at = now()"
            " WHERE patient_id = %s AND rule_id = %s"
            " AND status <> 'resolved' AND finding_at <= %s RETURNING alert_id",
            (finding.patient_id, finding.rule_id, finding.at),
        )
    ).fetchone()
    if row:
        await conn.execute(
            "INSERT INTO alert_events (alert_id, actor, action, finding_at) VALUES (%s, 'rules', 'resolved', %s)",
            (row[0], finding.at),
        )


def finding_payload(alert_id: int, finding: Finding, settings: Settings) -> dict[str, Any]:
    """The message every channel carries: enough to act on without opening another system."""
    return {
        "alert_id": alert_id,
        "patient_id": finding.patient_id,
        "rule_id": finding.rule_id,
        "rule_version": finding.rule_version,
        "category": finding.category,
        "severity": finding.severity,
        "finding_at": finding.at.isoformat(),
        "evidence": finding.evidence,
        "recommended_action": finding.action,
        "citation": finding.citation,
        "links": {"alert": f"{settings.public_base_url}/v1/alerts/{alert_id}"},
        "disclaimer": DISCLAIMER,
    }


async def queue_deliveries(conn: AsyncConnection, alert_id: int, payload: dict[str, Any], routes: list[Route],
                           kind: str) -> int:
    """One outbox row per route; the idempotency key names the alert change, so a replay queues nothing."""
    queued = 0
    for route in routes:
        key = f"alert-{alert_id}-{payload['severity']}-{payload['finding_at']}-{kind}-{route.name}"
        message = {**payload, "kind": kind, "route": route.name, "team": route.team, "idempotency_key": key}
        cur = await conn.execute(
            "INSERT INTO deliveries (alert_id, channel, target, idempotency_key, payload, route, kind)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING",
            (alert_id, route.channel, route.target, key, Jsonb(json.loads(json.dumps(message, default=str))),
             route.name, kind),
        )
        queued += cur.rowcount
    return queued
