"""The alert lifecycle on PostgreSQL, in the caller's transaction: the decisions of `alerts.decide` stored
as alert rows, `alert_events` audit rows and `deliveries` outbox rows.

One active alert per (patient, category): findings of every rule of that category join it. The row
is locked while it is decided on, so a team member's acknowledgement cannot interleave. Replaying the
same finding changes nothing and queues nothing (`decide` knows the findings an alert already took, and
the delivery idempotency key is derived from the alert change).
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from alerts.careteams import patient_routes
from alerts.decide import Alert, Contribution, Decision, Notification, announce, decide, evaluations
from alerts.fhirpush import queue_fhir_async
from alerts.routing import Route, routing_for
from respmon.core.settings import Settings
from schemas import Finding

DISCLAIMER = (
    "Decision support for the respiratory team, not an order: review the evidence and the patient "
    "before acting."
)
ALERT_ROW = ("alert_id, patient_id, category, severity, status, finding_at, rules, evidence, notified_severity,"
             " notified_at, resolution, rule_id, rule_version, action, citation")
"""The columns `alert_from_row` reads."""


async def apply_findings(conn: AsyncConnection, findings: Sequence[Finding], settings: Settings, *,
                         latest: Mapping[str, datetime] | None = None, now: datetime | None = None
                         ) -> list[Notification]:
    """The worker's whole batch: its findings, one evaluation and category at a time (one notification at
    most for the rules that open together), then the alerts that backfilled findings raised without a
    message and that hold now (`latest`: patient id -> time of their newest data). Returns what was sent.

    The latest alert of every (patient, category) of the batch is read and locked in one query; after a
    write, the row the write returns is that key's latest alert for the next evaluation of the batch."""
    now = now or datetime.now(UTC)
    groups = evaluations(findings)
    known = await _latest_of(conn, [(g[0].patient_id, g[0].category) for g in groups])
    sent = [n for group in groups if (n := await _apply(conn, group, settings, now, known)) is not None]
    return sent + await announce_held(conn, latest or {}, settings, now)


async def apply_finding(conn: AsyncConnection, finding: Finding, settings: Settings,
                        now: datetime | None = None) -> int | None:
    """Apply one finding; returns the alert id when a notification was queued. (`apply_findings` decides
    on a batch's findings together: rules that open in one evaluation share one notification.)"""
    known = await _latest_of(conn, [(finding.patient_id, finding.category)])
    note = await _apply(conn, [finding], settings, now or datetime.now(UTC), known)
    return None if note is None else note.alert_id


Key = tuple[str, str]
"""(patient id, category): the alerts of one key are one alert at a time."""


async def _apply(conn: AsyncConnection, group: Sequence[Finding], settings: Settings, now: datetime,
                 known: dict[Key, Alert | None]) -> Notification | None:
    """Decide on one evaluation's findings against the key's latest alert (`known`, kept up to date)."""
    first = group[0]
    key = (first.patient_id, first.category)
    for attempt in range(2):  # a second time only when another writer created the alert meanwhile
        if attempt:
            known[key] = (await _latest_of(conn, [key]))[key]
        decision = decide(known[key], group, now, horizon(settings))
        if not decision.events or decision.alert is None:
            return None
        written = await _save(conn, decision, max((f.received_at for f in group if f.received_at), default=None),
                              max(f.at for f in group))
        if written is not None:
            alert_id, known[key], event_id = written
            return await _record(conn, alert_id, decision, event_id, settings)
    raise RuntimeError(f"alert of {first.patient_id}/{first.category} changed under the worker twice")


async def announce_held(conn: AsyncConnection, latest: Mapping[str, datetime], settings: Settings,
                        now: datetime | None = None) -> list[Notification]:
    """Notify the active alerts that backfilled findings raised without a message, of the patients whose
    newest data (`latest`: patient id -> its time) are recent, i.e. whose alerts hold now."""
    now = now or datetime.now(UTC)
    recent = sorted(p for p, data_at in latest.items() if now - data_at <= horizon(settings))
    if not recent:
        return []
    rows = await (await conn.execute(
        f"SELECT {ALERT_ROW} FROM alerts WHERE patient_id = ANY(%s) AND status <> 'resolved'"
        " AND (notified_severity IS NULL OR notified_severity <> severity) ORDER BY alert_id FOR UPDATE",
        (recent,))).fetchall()
    sent = []
    for row in rows:
        decision = announce(alert_from_row(row), latest[row[1]], now, horizon(settings))
        if decision.notification is not None:
            written = await _save(conn, decision, None, None)
            if written is None:  # cannot happen: this transaction holds the row locked
                raise RuntimeError(f"alert {row[0]} vanished under the worker")
            note = await _record(conn, row[0], decision, written[2], settings)
            sent += [note] if note is not None else []
    return sent


def horizon(settings: Settings) -> timedelta:
    """Findings older than this when computed are history: recorded, not notified."""
    return timedelta(days=settings.notify_horizon_days)


_LATEST_OF = (
    "SELECT " + ", ".join(f"a.{c.strip()}" for c in ALERT_ROW.split(",")) +
    " FROM unnest(%s::text[], %s::text[]) AS k (patient_id, category) CROSS JOIN LATERAL"
    " (SELECT alert_id FROM alerts WHERE patient_id = k.patient_id AND category = k.category"
    " ORDER BY alert_id DESC LIMIT 1) AS newest JOIN alerts AS a USING (alert_id)"
    " ORDER BY a.alert_id FOR UPDATE OF a").encode()
"""Each key's newest alert (active or resolved): its id from the index, the rows locked in id order."""


async def _latest_of(conn: AsyncConnection, keys: Sequence[Key]) -> dict[Key, Alert | None]:
    """The patient's newest alert of the category for every key, in one query (None: the key has no alert yet),
    locked for this transaction in id order."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    found: dict[Key, Alert | None] = dict.fromkeys(wanted)
    rows = await (await conn.execute(_LATEST_OF, ([p for p, _ in wanted], [c for _, c in wanted]))).fetchall()
    for row in rows:
        found[(row[1], row[2])] = alert_from_row(row)
    return found


def alert_from_row(row: tuple[Any, ...]) -> Alert:
    """An alert row (columns `ALERT_ROW`) as `decide` sees it. A row from before migration 0006 or
    written by hand without `rules` is one rule's alert: its `rule_id` and evidence."""
    (alert_id, patient_id, category, severity, status, finding_at, rules, evidence, told, notified_at,
     resolution, rule_id, rule_version, action, citation) = row
    if not rules:
        state = "resolved" if status == "resolved" else "open"
        rules = {rule_id: {"severity": severity, "state": state, "at": finding_at.isoformat(),
                           "rule_version": rule_version, "action": action, "citation": citation}}
        evidence = {rule_id: evidence}
    if told is None and notified_at is not None:
        told = severity  # notified before the column existed
    return Alert(patient_id=patient_id, category=category, severity=severity, finding_at=finding_at,
                 rules={rid: _contribution(c) for rid, c in rules.items()}, evidence=evidence or {},
                 status=status, notified_severity=told, resolution=resolution, alert_id=alert_id)


def _contribution(data: dict[str, Any]) -> Contribution:
    return Contribution(severity=data["severity"], state=data["state"], at=datetime.fromisoformat(data["at"]),
                        rule_version=data["rule_version"], action=data["action"], citation=data["citation"],
                        resolution=data.get("resolution"))


def _rules_json(alert: Alert) -> dict[str, Any]:
    return {rid: {"severity": c.severity, "state": c.state, "at": c.at.isoformat(), "rule_version": c.rule_version,
                  "action": c.action, "citation": c.citation, "resolution": c.resolution}
            for rid, c in alert.rules.items()}


def _head(alert: Alert) -> tuple[str, Contribution]:
    lead = alert.lead
    if lead is None:
        raise ValueError("an alert without contributing rules")
    return lead, alert.rules[lead]


_EVENTS = (
    "events AS (INSERT INTO alert_events (alert_id, actor, action, note, finding_at)"
    " SELECT alert.alert_id, 'rules', e.action, e.note, %s FROM alert,"
    " unnest(%s::text[], %s::text[]) WITH ORDINALITY AS e (action, note, i) ORDER BY e.i RETURNING id)"
    " SELECT alert.*, (SELECT max(id) FROM events) FROM alert")
"""The audit rows of the alert the statement wrote, in the decision's order (ids ascend with it)."""
_INSERT = (
    "WITH alert AS (INSERT INTO alerts (severity, status, evidence, finding_at, rules, notified_severity,"
    " resolution, rule_id, rule_version, action, citation, patient_id, category, upload_received_at, notified_at,"
    " resolved_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " CASE WHEN %s THEN now() END, CASE WHEN %s = 'resolved' THEN now() END)"
    f" ON CONFLICT (patient_id, category) WHERE status <> 'resolved' DO NOTHING RETURNING {ALERT_ROW}), "
    + _EVENTS).encode()
_UPDATE = (
    "WITH alert AS (UPDATE alerts SET severity = %s, status = %s, evidence = %s, finding_at = %s, rules = %s,"
    " notified_severity = %s, resolution = %s, rule_id = %s, rule_version = %s, action = %s, citation = %s,"
    " updated_at = now(), upload_received_at = coalesce(%s, upload_received_at),"
    " notified_at = CASE WHEN %s THEN now() ELSE notified_at END,"
    " escalated_at = CASE WHEN %s THEN NULL ELSE escalated_at END,"
    " resolved_at = CASE WHEN %s = 'resolved' THEN now() ELSE resolved_at END WHERE alert_id = %s"
    f" RETURNING {ALERT_ROW}), " + _EVENTS).encode()


async def _save(conn: AsyncConnection, decision: Decision, received_at: datetime | None,
                finding_at: datetime | None) -> tuple[int, Alert, int] | None:
    """Write the decided alert and its audit rows in one statement: insert a new alert (None when another
    writer created it first) or update it. Returns its id, the alert as stored (as `_latest_of` would read it
    now) and the id of its last audit row."""
    alert = decision.alert
    assert alert is not None
    lead, head = _head(alert)
    notify = decision.notification is not None
    values = (alert.severity, alert.status, Jsonb(dict(alert.evidence)), alert.finding_at, Jsonb(_rules_json(alert)),
              alert.notified_severity, alert.resolution, lead, head.rule_version, head.action, head.citation)
    events = (finding_at, [action for action, _ in decision.events], [note for _, note in decision.events])
    if decision.created:
        cur = await conn.execute(_INSERT, (*values, alert.patient_id, alert.category, received_at, notify,
                                           alert.status, *events))
    else:
        cur = await conn.execute(_UPDATE, (*values, received_at, notify, notify, alert.status, alert.alert_id,
                                           *events))
    row = await cur.fetchone()
    return None if row is None else (int(row[0]), alert_from_row(row[:-1]), int(row[-1]))


async def _record(conn: AsyncConnection, alert_id: int, decision: Decision, event_id: int,
                  settings: Settings) -> Notification | None:
    """For a notification one outbox row per matching route, and the change for the FHIR routes once the
    team has been told of the alert (a backfilled alert held quiet is not pushed either). The audit rows
    (`event_id` the last) are written with the alert (`_save`)."""
    sent, alert = decision.notification, decision.alert
    if alert is not None and alert.notified_severity is not None and decision.events:
        await queue_fhir_async(conn, settings, alert_id, alert.category, alert.severity, decision.events[-1][0],
                               event_id)
    if sent is None or alert is None:
        return None
    routes = routing_for(settings).notify_routes(alert.category, alert.severity)
    routes += await patient_routes(conn, alert.patient_id, alert.category, alert.severity)  # its care teams'
    await queue_deliveries(conn, alert_id, alert_payload(alert_id, alert, sent.change, settings), routes, "notify")
    return replace(sent, alert_id=alert_id)


def alert_payload(alert_id: int, alert: Alert, change: str, settings: Settings) -> dict[str, Any]:
    """The message every channel carries: enough to act on without opening another system. `rule_id`,
    its action, citation and evidence are the lead rule's (the worst open one); `rules` names them all."""
    lead, head = _head(alert)
    return {
        "alert_id": alert_id,
        "patient_id": alert.patient_id,
        "category": alert.category,
        "severity": alert.severity,
        "change": change,
        "rules": list(alert.open_rules),
        "rule_id": lead,
        "rule_version": head.rule_version,
        "finding_at": alert.finding_at.isoformat(),
        "evidence": alert.evidence.get(lead, {}),
        "recommended_action": head.action,
        "citation": head.citation,
        "links": {"alert": f"{settings.public_base_url}/v1/alerts/{alert_id}"},
        "disclaimer": DISCLAIMER,
    }


_DELIVERY = (b"INSERT INTO deliveries (alert_id, channel, target, idempotency_key, payload, route, kind)"
             b" VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING")
_dumps = partial(json.dumps, default=str)
"""The payload's JSON as PostgreSQL stores it: whatever JSON cannot say (a datetime) as its text."""


async def queue_deliveries(conn: AsyncConnection, alert_id: int, payload: dict[str, Any], routes: list[Route],
                           kind: str) -> int:
    """One outbox row per route; the idempotency key names the alert change, so a replay queues nothing.
    Several routes go in one pipelined `executemany`; returns the rows queued."""
    rows = []
    for route in routes:
        key = f"alert-{alert_id}-{payload['severity']}-{payload['finding_at']}-{kind}-{route.name}"
        message = {**payload, "kind": kind, "route": route.name, "team": route.team, "idempotency_key": key}
        rows.append((alert_id, route.channel, route.target, key, Jsonb(message, dumps=_dumps), route.name, kind))
    if len(rows) == 1:
        return (await conn.execute(_DELIVERY, rows[0])).rowcount
    if not rows:
        return 0
    async with conn.cursor() as cur:
        await cur.executemany(_DELIVERY, rows)
        return cur.rowcount
