"""HTTP API for the respiratory team: list, show, acknowledge and resolve alerts.

Protected by team tokens (`respmon team-add`), never by device tokens. Every change is written to
the append-only `alert_events` audit trail with who did it and their note.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from prometheus_client import Counter
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from alerts.lifecycle import DISCLAIMER
from alerts.team import Member, authenticate
from respmon.core import dbpool
from respmon.core.httpsecurity import NulFree
from respmon.core.probes import add_probes
from respmon.core.settings import Settings, get_settings
from schemas.findings import SEVERITIES

TEAM_ACTIONS = Counter("respmon_alert_team_actions_total", "Acknowledgements and resolutions by the team", ["action"])
ALERT_COLUMNS = ("alert_id, patient_id, rule_id, rule_version, category, severity, status, evidence, action,"
                 " citation, finding_at, opened_at, updated_at, acknowledged_at, acknowledged_by, resolved_at,"
                 " escalated_at")
_MOST_SEVERE_FIRST = list(reversed(SEVERITIES))
"""The order alerts are listed in (an array parameter: psycopg sends a list as text[])."""


class Note(BaseModel):
    note: NulFree = Field(default="", max_length=2000)  # stored in alert_events (PostgreSQL text: no NUL)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    pool = dbpool.new_sync_pool(settings.database_url, autocommit=True, row_factory=dict_row)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=30)
        yield
        pool.close()

    app = FastAPI(title="respmon alerts", version="1", lifespan=lifespan)

    def member(authorization: str | None = Header(default=None)) -> Member:
        if authorization and authorization.lower().startswith("bearer "):
            with pool.connection() as conn:
                found = authenticate(conn, authorization[7:].strip())
            if found:
                return found
        raise HTTPException(401, "missing or unknown team token", headers={"WWW-Authenticate": "Bearer"})

    Who = Annotated[Member, Depends(member)]  # the team member behind the bearer token

    @app.get("/v1/alerts")
    async def list_alerts(
        who: Who,
        status: Literal["open", "acknowledged", "resolved", "active"] = "active",
        category: str | None = None,
        severity: str | None = None,
        patient_id: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """`active` = open or acknowledged (not yet resolved)."""
        where: list[str] = ["status <> 'resolved'" if status == "active" else "status = %s"]
        args: list[str] = []
        if status != "active":
            args.append(status)
        for column, value in (("category", category), ("severity", severity), ("patient_id", patient_id)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)

        def query() -> list[dict[str, Any]]:
            with pool.connection() as conn:
                return conn.execute(
                    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)}"
                    " ORDER BY array_position(%s::text[], severity), opened_at"
                    " LIMIT %s", (*args, _MOST_SEVERE_FIRST, limit)).fetchall()

        return {"alerts": await run_in_threadpool(query), "disclaimer": DISCLAIMER}

    @app.get("/v1/alerts/{alert_id}")
    async def show_alert(alert_id: int, who: Who) -> dict[str, Any]:
        def query() -> dict[str, Any] | None:
            with pool.connection() as conn:
                alert = conn.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = %s",
                                     (alert_id,)).fetchone()
                if alert is None:
                    return None
                alert["history"] = conn.execute(
                    "SELECT at, actor, action, note, finding_at FROM alert_events WHERE alert_id = %s ORDER BY id",
                    (alert_id,)).fetchall()
                alert["deliveries"] = conn.execute(
                    "SELECT channel, route, kind, status, attempts, created_at, delivered_at, last_error"
                    " FROM deliveries WHERE alert_id = %s ORDER BY created_at", (alert_id,)).fetchall()
                return alert

        alert = await run_in_threadpool(query)
        if alert is None:
            raise HTTPException(404, f"alert {alert_id} not found")
        return {**alert, "disclaimer": DISCLAIMER}

    def change(alert_id: int, who: Member, note: str, action: str, allowed_from: tuple[str, ...]) -> dict[str, Any]:
        stamp = "acknowledged_at = now(), acknowledged_by = %s" if action == "acknowledged" else "resolved_at = now()"
        stamp_args = (who.member_id,) if action == "acknowledged" else ()
        with pool.connection() as conn, conn.transaction():
            row = conn.execute(
                f"UPDATE alerts SET status = %s, updated_at = now(), {stamp} WHERE alert_id = %s"
                " AND status = ANY(%s) RETURNING alert_id, status",
                (action, *stamp_args, alert_id, list(allowed_from))).fetchone()
            if row is None:
                current = conn.execute("SELECT status FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
                if current is None:
                    raise HTTPException(404, f"alert {alert_id} not found")
                raise HTTPException(409, f"alert {alert_id} is {current['status']}")
            conn.execute("INSERT INTO alert_events (alert_id, actor, action, note) VALUES (%s, %s, %s, %s)",
                         (alert_id, who.member_id, action, note))
        TEAM_ACTIONS.labels(action).inc()
        return {"alert_id": alert_id, "status": action}

    @app.post("/v1/alerts/{alert_id}/acknowledge")
    async def acknowledge(alert_id: int, body: Note, who: Who) -> dict[str, Any]:
        return await run_in_threadpool(change, alert_id, who, body.note, "acknowledged", ("open",))

    @app.post("/v1/alerts/{alert_id}/resolve")
    async def resolve(alert_id: int, body: Note, who: Who) -> dict[str, Any]:
        return await run_in_threadpool(change, alert_id, who, body.note, "resolved", ("open", "acknowledged"))

    add_probes(app, pool, settings)
    return app
