"""HTTP API for the respiratory team: list, show, acknowledge, resolve and annotate alerts.

Protected by team tokens (`respmon team-add`; services) or session cookies (`POST /v1/session`; people),
never by device tokens. A member sees only the patients of their care teams (`alerts/access.py`): anything
else answers 404. Every look at a patient's data is appended to `access_log` in the transaction of the
read; every change to the `alert_events` audit trail with who did it and their note.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Cookie, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from prometheus_client import Counter
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from alerts.access import Action, Look, may, memberships, record, scope
from alerts.carestate_api import care_state_routes
from alerts.fhirpush import queue_fhir
from alerts.lifecycle import DISCLAIMER
from alerts.sessions import session_member, session_routes
from alerts.team import Member, authenticate
from respmon.core import dbpool
from respmon.core.httpsecurity import NulFree
from respmon.core.probes import add_probes
from respmon.core.settings import Settings, get_settings
from schemas.findings import SEVERITIES

TEAM_ACTIONS = Counter("respmon_alert_team_actions_total", "Acknowledgements and resolutions by the team", ["action"])
ALERT_COLUMNS = ("alert_id, patient_id, rule_id, rule_version, category, severity, status, evidence, action,"
                 " citation, finding_at, opened_at, updated_at, acknowledged_at, acknowledged_by, resolved_at,"
                 " escalated_at, rules, resolution, notified_at")
"""`rules`: every contributing rule of the alert (one per patient and category); `rule_id`, `action` and
`citation` are the lead one's (the worst still open); `evidence`: rule id -> its evidence."""
_MOST_SEVERE_FIRST = list(reversed(SEVERITIES))
"""The order alerts are listed in (an array parameter: psycopg sends a list as text[])."""


class Note(BaseModel):
    note: NulFree = Field(default="", max_length=2000)  # stored in alert_events (PostgreSQL text: no NUL)


class NoteText(BaseModel):
    note: NulFree = Field(min_length=1, max_length=2000)


def look(request: Request, who: Member, action: str) -> Look:
    """What `access_log` records of a request: the route template (never the concrete path), the client."""
    route = f"{request.method} {getattr(request.scope.get('route'), 'path', '(no route)')}"
    return Look(who.member_id, action, route, request.client.host if request.client else None)


def refusal(conn: Any, alert_id: int, who: Member, permission: Action, looked: Look,
            allowed_from: tuple[str, ...] | None = None) -> tuple[int, str] | None:
    """Why the member may not act on the alert: 404 when its patient is outside their teams (as if it
    did not exist), 403 when their role there does not allow it, 409 when its status does not; else
    None. Locks the alert, and records the look once the member may act on it."""
    seen, seen_args = scope(who.member_id)
    alert = conn.execute(f"SELECT patient_id, status FROM alerts WHERE alert_id = %s AND {seen} FOR UPDATE",
                         (alert_id, *seen_args)).fetchone()
    if alert is None:
        return 404, f"alert {alert_id} not found"
    if not may(conn, who.member_id, alert["patient_id"], permission):
        return 403, f"your role in this patient's teams does not allow to {permission}"
    record(conn, looked, [alert["patient_id"]], alert_id)
    if allowed_from is not None and alert["status"] not in allowed_from:
        return 409, f"alert {alert_id} is {alert['status']}"
    return None


TeamChange = Literal["acknowledged", "resolved"]


def record_team_change(conn: Any, alert_id: int, member_id: str, action: TeamChange, note: str,
                       settings: Settings | None) -> None:
    """The team's acknowledgement or resolution of an alert the caller has locked and found allowed
    (`refusal`): its status, its `alert_events` row and, with `settings`, the change queued for the FHIR
    routes, all in the caller's transaction. The team API and the web view's inbox both act through it."""
    stamp = ("acknowledged_at = now(), acknowledged_by = %s" if action == "acknowledged"
             else "resolved_at = now(), resolution = 'team'")
    stamp_args = (member_id,) if action == "acknowledged" else ()
    conn.execute(f"UPDATE alerts SET status = %s, updated_at = now(), {stamp} WHERE alert_id = %s",
                 (action, *stamp_args, alert_id))
    event = conn.cursor(row_factory=dict_row).execute(
        "INSERT INTO alert_events (alert_id, actor, action, note) VALUES (%s, %s, %s, %s) RETURNING id,"
        " (SELECT category FROM alerts WHERE alert_id = %s) AS category,"
        " (SELECT severity FROM alerts WHERE alert_id = %s) AS severity",
        (alert_id, member_id, action, note, alert_id, alert_id)).fetchone()
    if event is not None and settings is not None:
        queue_fhir(conn, settings, alert_id, event["category"], event["severity"], action, event["id"])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    pool = dbpool.new_sync_pool(settings.database_url, autocommit=True, row_factory=dict_row)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=30)
        yield
        pool.close()

    app = FastAPI(title="respmon alerts", version="1", lifespan=lifespan)

    def member(authorization: Annotated[str | None, Header()] = None,
               respmon_session: Annotated[str | None, Cookie()] = None) -> Member:
        """A bearer token (services, scripts) or, without one, a session cookie (people)."""
        with pool.connection() as conn:
            found = credentials(conn, authorization, respmon_session)
        if found is None:
            raise HTTPException(401, "missing, unknown, expired or revoked team credentials",
                                headers={"WWW-Authenticate": "Bearer"})
        return found

    def credentials(conn: Any, authorization: str | None, session: str | None) -> Member | None:
        if authorization is not None:  # a bearer that fails is refused, never passed over for the cookie
            bearer = authorization.lower().startswith("bearer ")
            return authenticate(conn, authorization[7:].strip()) if bearer else None
        member_id = session_member(conn, session, settings) if session else None
        return Member(member_id, "session") if member_id else None

    Who = Annotated[Member, Depends(member)]  # the team member behind the bearer token or session cookie

    @app.get("/v1/me")
    async def me(who: Who) -> dict[str, Any]:
        """Who the credentials belong to and their teams and roles (no patient data)."""
        def query() -> list[dict[str, str]]:
            with pool.connection() as conn:
                return memberships(conn, who.member_id)

        return {"member_id": who.member_id, "via": who.via, "memberships": await run_in_threadpool(query)}

    @app.get("/v1/alerts")
    async def list_alerts(
        who: Who,
        request: Request,
        status: Literal["open", "acknowledged", "resolved", "active"] = "active",
        category: str | None = None,
        severity: str | None = None,
        patient_id: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """`active` = open or acknowledged (not yet resolved); only patients of the member's teams."""
        where: list[str] = ["status <> 'resolved'" if status == "active" else "status = %s"]
        args: list[Any] = []
        if status != "active":
            args.append(status)
        for column, value in (("category", category), ("severity", severity), ("patient_id", patient_id)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        seen, seen_args = scope(who.member_id)
        looked = look(request, who, "list")

        def query() -> list[dict[str, Any]]:
            with pool.connection() as conn, conn.transaction():
                rows: list[dict[str, Any]] = conn.execute(
                    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)} AND {seen}"
                    " ORDER BY array_position(%s::text[], severity), opened_at"
                    " LIMIT %s", (*args, *seen_args, _MOST_SEVERE_FIRST, limit)).fetchall()
                record(conn, looked, (row["patient_id"] for row in rows))
                return rows

        return {"alerts": await run_in_threadpool(query), "disclaimer": DISCLAIMER}

    @app.get("/v1/alerts/{alert_id}")
    async def show_alert(alert_id: int, who: Who, request: Request) -> dict[str, Any]:
        """404 for an alert of a patient outside the member's teams, as for one that does not exist."""
        seen, seen_args = scope(who.member_id)
        looked = look(request, who, "show")

        def query() -> dict[str, Any] | None:
            with pool.connection() as conn, conn.transaction():
                alert = conn.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = %s AND {seen}",
                                     (alert_id, *seen_args)).fetchone()
                if alert is None:
                    return None
                alert["history"] = conn.execute(
                    "SELECT at, actor, action, note, finding_at FROM alert_events WHERE alert_id = %s ORDER BY id",
                    (alert_id,)).fetchall()
                alert["deliveries"] = conn.execute(
                    "SELECT channel, route, kind, status, attempts, created_at, delivered_at, last_error"
                    " FROM deliveries WHERE alert_id = %s ORDER BY created_at", (alert_id,)).fetchall()
                record(conn, looked, [alert["patient_id"]], alert_id)
                return dict(alert)

        alert = await run_in_threadpool(query)
        if alert is None:
            raise HTTPException(404, f"alert {alert_id} not found")
        return {**alert, "disclaimer": DISCLAIMER}

    def change(alert_id: int, who: Member, note: str, action: TeamChange, allowed_from: tuple[str, ...],
               looked: Look) -> dict[str, Any]:
        permission: Action = "acknowledge" if action == "acknowledged" else "resolve"
        with pool.connection() as conn, conn.transaction():
            refused = refusal(conn, alert_id, who, permission, looked, allowed_from)
            if refused is None:
                record_team_change(conn, alert_id, who.member_id, action, note, settings)
        if refused is not None:  # raised after the commit: the look at the alert stays recorded
            raise HTTPException(*refused)
        TEAM_ACTIONS.labels(action).inc()
        return {"alert_id": alert_id, "status": action}

    @app.post("/v1/alerts/{alert_id}/acknowledge")
    async def acknowledge(alert_id: int, body: Note, who: Who, request: Request) -> dict[str, Any]:
        """Clinicians of one of the patient's teams; a viewer gets 403."""
        return await run_in_threadpool(change, alert_id, who, body.note, "acknowledged", ("open",),
                                       look(request, who, "acknowledge"))

    @app.post("/v1/alerts/{alert_id}/resolve")
    async def resolve(alert_id: int, body: Note, who: Who, request: Request) -> dict[str, Any]:
        return await run_in_threadpool(change, alert_id, who, body.note, "resolved", ("open", "acknowledged"),
                                       look(request, who, "resolve"))

    @app.post("/v1/alerts/{alert_id}/notes", status_code=201)
    async def add_note(alert_id: int, body: NoteText, who: Who, request: Request) -> dict[str, Any]:
        """A note in the alert's history (`alert_events`, action `note`), whatever its status."""
        looked = look(request, who, "note")

        def write() -> dict[str, Any]:
            with pool.connection() as conn, conn.transaction():
                refused = refusal(conn, alert_id, who, "note", looked)
                row = None if refused else conn.execute(
                    "INSERT INTO alert_events (alert_id, actor, action, note) VALUES (%s, %s, 'note', %s)"
                    " RETURNING id, at", (alert_id, who.member_id, body.note)).fetchone()
            if refused is not None or row is None:
                raise HTTPException(*(refused or (500, "note not stored")))
            TEAM_ACTIONS.labels("noted").inc()
            return {"alert_id": alert_id, "note_id": row["id"], "at": row["at"]}

        return await run_in_threadpool(write)

    app.include_router(session_routes(pool, settings))
    app.include_router(care_state_routes(pool, settings, member))  # POST /v1/patients/{id}/care-state
    add_probes(app, pool, settings)
    app.state.pool = pool  # the web view (respmon/web) mounts its pages on this app and reads through it
    app.state.member = member  # the credential check, for routes mounted on this app (respmon/fhir)
    return app
