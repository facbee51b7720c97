"""Who may see and do what: roles per care team, the patients of a member's teams, and the access log.

A member sees a patient's data only through a team the patient belongs to (`patient_teams`) in which the
member holds a role that reads (`viewer`, `clinician`); an `admin` role alone reads nothing. Anything
outside the member's reach answers as if it did not exist (404), so existence does not leak. Every look
at a patient's data is appended to `access_log` in the same transaction as the read.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, LiteralString

import psycopg
from psycopg.rows import tuple_row

Role = Literal["viewer", "clinician", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "clinician", "admin")
Action = Literal["read", "acknowledge", "resolve", "note", "assign", "care_state",
                 "provision_members", "provision_devices", "assign_patients"]
PERMISSIONS: dict[Role, frozenset[Action]] = {
    "viewer": frozenset({"read"}),
    "clinician": frozenset({"read", "acknowledge", "resolve", "note", "assign", "care_state"}),
    # provisioning is done by an operator with `respmon` today; the role says who may, for the web view
    "admin": frozenset({"provision_members", "provision_devices", "assign_patients"}),
}

_TEAM_PATIENTS: LiteralString = (
    "SELECT pt.patient_id FROM patient_teams pt JOIN team_memberships tm ON tm.team = pt.team"
    " WHERE pt.ended_at IS NULL AND tm.member_id = %s AND tm.role = ANY(%s)")


def roles_that(action: Action) -> list[str]:
    return [role for role in ROLES if action in PERMISSIONS[role]]


def scope(member_id: str, action: Action = "read") -> tuple[LiteralString, tuple[str, list[str]]]:
    """A condition on a `patient_id` column (and its arguments): the patients of the member's teams in
    which one of their roles allows `action`. Every query of patient data adds it."""
    return f"patient_id IN ({_TEAM_PATIENTS})", (member_id, roles_that(action))


def may(conn: psycopg.Connection[Any], member_id: str, patient_id: str, action: Action) -> bool:
    """Whether one of the patient's teams gives the member a role allowing `action`."""
    row = conn.cursor(row_factory=tuple_row).execute(
        f"SELECT EXISTS ({_TEAM_PATIENTS} AND pt.patient_id = %s)",
        (member_id, roles_that(action), patient_id)).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class Look:
    """One access to patient data: who, through which route, from where."""

    member_id: str
    action: str
    route: str
    client: str | None


def record(conn: psycopg.Connection[Any], look: Look, patients: Iterable[str], alert_id: int | None = None) -> None:
    """Append one `access_log` row per patient looked at (call inside the transaction of the read)."""
    distinct = sorted(set(patients))
    if distinct:
        conn.execute(
            "INSERT INTO access_log (member_id, patient_id, action, route, alert_id, client)"
            " SELECT %s, p, %s, %s, %s, %s FROM unnest(%s::text[]) AS p",
            (look.member_id, look.action, look.route, alert_id, look.client, distinct))


def memberships(conn: psycopg.Connection[Any], member_id: str) -> list[dict[str, str]]:
    """The member's teams and roles (what `GET /v1/me` shows: no patient data)."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        "SELECT team, role FROM team_memberships WHERE member_id = %s ORDER BY team, role", (member_id,)).fetchall()
    return [{"team": team, "role": role} for team, role in rows]
