"""`POST /v1/patients/{patient_id}/care-state`: a clinician sets a patient's care state through the team API
(published and recorded by `alerts.carestate`, applied by the worker)."""

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from kafka.errors import KafkaError
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerts.access import Look, may
from alerts.access import record as record_look
from alerts.carestate import publish, record
from alerts.team import Member
from respmon.core.httpsecurity import NulFree
from respmon.core.settings import Settings
from schemas.carestate import CareStateChange, CareStateOrNone

__all__ = ["ROUTE", "CareStateBody", "care_state_routes"]

ROUTE = "/v1/patients/{patient_id}/care-state"


class CareStateBody(BaseModel):
    """What a clinician sends: the state (`none` clears it), from which day, and why."""

    model_config = ConfigDict(extra="forbid")

    state: CareStateOrNone
    since: date
    note: NulFree | None = Field(default=None, max_length=2000)


def care_state_routes(pool: ConnectionPool[Any], settings: Settings, member: Callable[..., Member]) -> APIRouter:
    """`POST /v1/patients/{patient_id}/care-state` for a clinician of one of the patient's teams: 202 once
    published and recorded; 403 for a role that may not, 404 for a patient outside the member's teams,
    422 for a bad state or a `since` after today, 503 when Kafka does not acknowledge."""
    router = APIRouter()

    @router.post(ROUTE, status_code=202)
    async def set_care_state(patient_id: str, body: CareStateBody, who: Annotated[Member, Depends(member)],
                             request: Request) -> dict[str, Any]:
        change = _change(patient_id, body, who)
        looked = Look(who.member_id, "care_state", f"POST {ROUTE}", request.client.host if request.client else None)
        return await run_in_threadpool(_apply, pool, settings, change, looked)

    return router


def _change(patient_id: str, body: CareStateBody, who: Member) -> CareStateChange:
    try:
        return CareStateChange(patient_id=patient_id, state=body.state, since=body.since, note=body.note,
                               set_by=who.member_id, set_at=datetime.now(UTC))
    except ValidationError as error:
        first = error.errors()[0]
        raise HTTPException(422, {"reason": first["msg"], "field": ".".join(map(str, first["loc"]))}) from None


def _apply(pool: ConnectionPool[Any], settings: Settings, change: CareStateChange, looked: Look) -> dict[str, Any]:
    """Check the member may, publish, then record the change and the look in one transaction."""
    with pool.connection() as conn:
        refused = _refusal(conn, looked.member_id, change.patient_id)
        if refused is not None:
            raise HTTPException(*refused)
        try:
            publish(settings, change)
        except KafkaError as error:
            raise HTTPException(503, f"Kafka did not take the change ({type(error).__name__}): retry") from None
        with conn.transaction():
            record(conn, change)
            record_look(conn, looked, [change.patient_id])
    return {"change_id": change.change_id, "patient_id": change.patient_id, "state": change.state,
            "since": change.since.isoformat(), "set_by": change.set_by, "set_at": change.set_at.isoformat()}


def _refusal(conn: psycopg.Connection[Any], member_id: str, patient_id: str) -> tuple[int, str] | None:
    """404 when the patient is outside the member's teams (as if unknown), 403 when their role there may
    only read; None when they may set the care state."""
    if may(conn, member_id, patient_id, "care_state"):
        return None
    if may(conn, member_id, patient_id, "read"):
        return 403, "your role in this patient's teams does not allow to set the care state"
    return 404, "patient not found"
