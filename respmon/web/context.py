"""What every page router gets: the database pool, the settings, the person and CSRF dependencies, and
`looked` for the access log (the route template and client, never the concrete path: it holds ids)."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import HTTPException, Request
from psycopg_pool import ConnectionPool

from alerts.access import Action, Look, may, record
from respmon.core.settings import Settings
from respmon.web.auth import Person


@dataclass(frozen=True)
class Web:
    pool: ConnectionPool[Any]
    settings: Settings
    person: Any  # FastAPI dependency -> Person (session cookie; LoginRequired otherwise)
    posted: Any  # FastAPI dependency -> Person, with the form's CSRF token checked

    @contextmanager
    def reading(self, request: Request, who: Person, action: str, patient_id: str,
                permission: Action = "read") -> Iterator[psycopg.Connection[Any]]:
        """A transaction on one patient's data: 404 unless one of the member's teams allows `permission`
        on the patient (as if the patient did not exist), and the look recorded in `access_log`."""
        with self.pool.connection() as conn, conn.transaction():
            if not may(conn, who.member_id, patient_id, "read"):
                raise HTTPException(404, "patient not found")
            if permission != "read" and not may(conn, who.member_id, patient_id, permission):
                raise HTTPException(403, f"your role in this patient's teams does not allow to {permission}")
            record(conn, looked(request, who, action), [patient_id])
            yield conn


def looked(request: Request, who: Person, action: str) -> Look:
    route = f"{request.method} {getattr(request.scope.get('route'), 'path', '(no route)')}"
    return Look(who.member_id, action, route, request.client.host if request.client else None)
