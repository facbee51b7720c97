"""Turn findings into alert state changes, audit rows and outbox deliveries, in the caller's transaction.

One active alert per (patient, rule): a new finding opens it, a finding with another severity
updates it and notifies again, a resolved finding resolves it. Replaying the same finding changes
nothing and queues nothing (the delivery idempotency key is derived from the alert change).
"""

import json

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from respmon.settings import Settings
from schemas import Finding

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
            " finding_at = EXCLUDED.finding_at, updated_at = now(),"
            " upload_received_at = EXCLUDED.upload_received_at"
            " WHERE alerts.severity <> EXCLUDED.severity AND alerts.finding_at < EXCLUDED.finding_at"
            " RETURNING alert_id, (xmax = 0) AS created",
            (finding.patient_id, finding.rule_id, finding.rule_version, finding.category, finding.severity,
             Jsonb(finding.evidence), finding.action, finding.citation, finding.at, finding.received_at),
        )
    ).fetchone()
    if row is None:
        return None  # same alert, same severity: already notified
    alert_id, created = row
    await conn.execute(
        "INSERT INTO alert_events (alert_id, actor, action, note, finding_at) VALUES (%s, 'rules', %s, %s, %s)",
        (alert_id, "opened" if created else f"severity:{finding.severity}", finding.rule_version, finding.at),
    )
    await _queue_deliveries(conn, alert_id, finding, settings)
    return int(alert_id)


async def _resolve(conn: AsyncConnection, finding: Finding) -> None:
    row = await (
        await conn.execute(
            "UPDATE alerts SET status = 'resolved', updated_at = now() WHERE patient_id = %s AND rule_id = %s"
            " AND status <> 'resolved' AND finding_at <= %s RETURNING alert_id",
            (finding.patient_id, finding.rule_id, finding.at),
        )
    ).fetchone()
    if row:
        await conn.execute(
            "INSERT INTO alert_events (alert_id, actor, action, finding_at) VALUES (%s, 'rules', 'resolved', %s)",
            (row[0], finding.at),
        )


def alert_payload(alert_id: int, finding: Finding, settings: Settings) -> dict[str, object]:
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


async def _queue_deliveries(conn: AsyncConnection, alert_id: int, finding: Finding, settings: Settings) -> None:
    if not settings.webhook_url:
        return
    payload = alert_payload(alert_id, finding, settings)
    key = f"alert-{alert_id}-{finding.severity}-{finding.at.isoformat()}-webhook"
    payload["idempotency_key"] = key
    await conn.execute(
        "INSERT INTO deliveries (alert_id, channel, target, idempotency_key, payload)"
        " VALUES (%s, 'webhook', %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING",
        (alert_id, settings.webhook_url, key, Jsonb(json.loads(json.dumps(payload, default=str)))),
    )
