"""Escalation: an open alert nobody acknowledged within the site's time is re-sent to the escalation
routes, once per notification (a new severity starts the clock again). An alert never notified (raised
by backfilled findings, `notified_at` NULL) is not escalated."""

import logging

from psycopg import AsyncConnection

from alerts.lifecycle import ALERT_ROW, alert_from_row, alert_payload, queue_deliveries
from alerts.routing import routing_for
from respmon.core.settings import Settings

log = logging.getLogger("respmon.alerts")


async def escalate_due(conn: AsyncConnection, settings: Settings, limit: int = 100) -> int:
    """Queue escalation deliveries for overdue alerts; returns how many alerts were escalated."""
    routing = routing_for(settings)
    if routing.escalation is None:
        return 0
    escalated = 0
    async with conn.transaction():
        rows = await (
            await conn.execute(
                f"SELECT {ALERT_ROW} FROM alerts WHERE status = 'open' AND escalated_at IS NULL"
                " AND notified_at < now() - make_interval(secs => %s)"
                " ORDER BY notified_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (routing.escalation.after_minutes * 60, limit),
            )
        ).fetchall()
        for row in rows:
            alert = alert_from_row(row)
            alert_id = row[0]
            routes = routing.escalation_routes(alert.category, alert.severity)
            await queue_deliveries(conn, alert_id, alert_payload(alert_id, alert, "escalated", settings), routes,
                                   "escalation")
            await conn.execute("UPDATE alerts SET escalated_at = now() WHERE alert_id = %s", (alert_id,))
            await conn.execute(
                "INSERT INTO alert_events (alert_id, actor, action, note) VALUES (%s, 'escalation', 'escalated', %s)",
                (alert_id, f"not acknowledged within {routing.escalation.after_minutes:g} min; sent to "
                           + (", ".join(r.name for r in routes) or "no matching route")),
            )
            escalated += 1
            log.info("alert escalated", extra={"alert_id": alert_id, "routes": len(routes)})
    return escalated
