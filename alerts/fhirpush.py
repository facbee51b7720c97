"""Outbox rows for the FHIR push: every change of an alert (opened, severity changed, updated, acknowledged,
resolved) queues one `fhir` delivery per FHIR route, in the transaction of the change.

The row names the alert and the change, not the resources: the sender registered for the `fhir` channel
(`respmon/fhir/push.py`, installed by the top layer at the worker's start) builds the transaction Bundle from
the alert as it stands when it is sent, so a retried older change never puts back an older state. The
idempotency key is the audit event (`alert_events.id`) of the change: a replayed finding records no event and
queues nothing, and the Bundle's entries are PUTs on stable ids, so a second send changes nothing either.

A route takes an alert of its categories from its `min_severity` up, and keeps taking every later change of
an alert it took once (an alert that turned milder or was resolved is updated in the record, not left open).
"""

import json
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from alerts.routing import Route, routing_for
from respmon.core.settings import Settings

CHANNEL = "fhir"
_PUSHED = "SELECT DISTINCT route FROM deliveries WHERE alert_id = %s AND channel = 'fhir'"
_INSERT = ("INSERT INTO deliveries (alert_id, channel, target, idempotency_key, payload, route, kind)"
           " VALUES (%s, 'fhir', %s, %s, %s, %s, 'notify') ON CONFLICT (idempotency_key) DO NOTHING")


def _rows(routes: list[Route], pushed: set[str], alert_id: int, category: str, severity: str, change: str,
          event_id: int) -> list[tuple[Any, ...]]:
    """The outbox rows of one change (no patient id: the sender reads the alert by its id)."""
    out = []
    for route in routes:
        if not route.matches(category, severity) and route.name not in pushed:
            continue
        key = f"fhir-{alert_id}-{event_id}-{route.name}"
        payload = {"alert_id": alert_id, "category": category, "severity": severity, "change": change,
                   "event_id": event_id, "kind": "fhir", "route": route.name, "team": route.team,
                   "idempotency_key": key}
        out.append((alert_id, route.target, key, Jsonb(json.loads(json.dumps(payload))), route.name))
    return out


async def queue_fhir_async(conn: AsyncConnection[Any], settings: Settings, alert_id: int, category: str,
                           severity: str, change: str, event_id: int) -> int:
    """Queue the change for every FHIR route, in the caller's transaction; returns how many were queued."""
    routes = routing_for(settings).fhir_routes()
    if not routes:
        return 0
    pushed = {r[0] for r in await (await conn.execute(_PUSHED, (alert_id,))).fetchall()}
    queued = 0
    for row in _rows(routes, pushed, alert_id, category, severity, change, event_id):
        queued += (await conn.execute(_INSERT, row)).rowcount
    return queued


def queue_fhir(conn: psycopg.Connection[Any], settings: Settings, alert_id: int, category: str, severity: str,
               change: str, event_id: int) -> int:
    """`queue_fhir_async` for the team API's (synchronous) transactions."""
    routes = routing_for(settings).fhir_routes()
    if not routes:
        return 0
    pushed = {_first(r) for r in conn.execute(_PUSHED, (alert_id,)).fetchall()}
    return sum(conn.execute(_INSERT, row).rowcount
               for row in _rows(routes, pushed, alert_id, category, severity, change, event_id))


def _first(row: Any) -> str:
    """A row's first column, whatever the connection's row factory (the team API reads dicts)."""
    return str(row["route"] if isinstance(row, dict) else row[0])
