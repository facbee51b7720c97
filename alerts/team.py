"""Team members (people and services) and their credentials for the team API.

A member holds roles in care teams (`team_memberships`); services and scripts authenticate with bearer
tokens (SHA-256 in `team_tokens`, kept apart from device tokens: a device token never authenticates
here), people with a password and a session cookie (`alerts/sessions.py`). Tokens can expire, be revoked
and be rotated with an overlap, so a service can switch to the new one before the old stops working.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from alerts.access import ROLES, Role
from respmon.core.tokens import active_holder, hash_token, new_token


@dataclass(frozen=True)
class Member:
    member_id: str
    via: Literal["token", "session"] = "token"


def add_member(conn: psycopg.Connection[Any], member_id: str, team: str, role: Role, by: str) -> bool:
    """Give `member_id` the role in `team` (creating the member if new); True when the member is new."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    created = conn.execute("INSERT INTO team_members (member_id) VALUES (%s) ON CONFLICT DO NOTHING",
                           (member_id,)).rowcount > 0
    conn.execute("INSERT INTO team_memberships (member_id, team, role, added_by) VALUES (%s, %s, %s, %s)"
                 " ON CONFLICT DO NOTHING", (member_id, team, role, by))
    return created


def remove_member(conn: psycopg.Connection[Any], member_id: str, team: str, role: Role | None = None) -> int:
    """Take the member's role (every role when None) in `team` away; returns how many were removed."""
    return conn.execute("DELETE FROM team_memberships WHERE member_id = %s AND team = %s"
                        " AND (%s::text IS NULL OR role = %s)", (member_id, team, role, role)).rowcount


def issue_token(conn: psycopg.Connection[Any], member_id: str, expires: datetime | None = None) -> str:
    """A new bearer token for the member (shown once, stored hashed); older tokens stay valid."""
    token = new_token()
    conn.execute("INSERT INTO team_tokens (token_sha256, member_id, expires_at) VALUES (%s, %s, %s)",
                 (hash_token(token), member_id, expires))
    return token


def provision(conn: psycopg.Connection[Any], member_id: str, team: str, role: Role = "clinician",
              expires: datetime | None = None, by: str = "respmon") -> str:
    """A member with one role and a fresh token: a service, or a test's member."""
    add_member(conn, member_id, team, role, by)
    return issue_token(conn, member_id, expires)


def rotate_token(conn: psycopg.Connection[Any], member_id: str, overlap_hours: float,
                 expires: datetime | None = None) -> str:
    """A new token; the member's current tokens stay valid `overlap_hours` more (never longer than they
    would have), so the service can switch over without a gap."""
    with conn.transaction():
        conn.execute("UPDATE team_tokens SET expires_at = least(coalesce(expires_at, 'infinity'),"
                     " now() + make_interval(secs => %s)) WHERE member_id = %s AND revoked_at IS NULL",
                     (overlap_hours * 3600, member_id))
        return issue_token(conn, member_id, expires)


def revoke_tokens(conn: psycopg.Connection[Any], member_id: str) -> tuple[int, int]:
    """End every token and open session of the member now: (tokens, sessions) ended."""
    with conn.transaction():
        tokens = conn.execute("UPDATE team_tokens SET revoked_at = now() WHERE member_id = %s"
                              " AND revoked_at IS NULL", (member_id,)).rowcount
        sessions = conn.execute("UPDATE team_sessions SET ended_at = now() WHERE member_id = %s"
                                " AND ended_at IS NULL", (member_id,)).rowcount
    return tokens, sessions


def exists(conn: psycopg.Connection[Any], member_id: str) -> bool:
    return conn.execute("SELECT 1 FROM team_members WHERE member_id = %s", (member_id,)).fetchone() is not None


def authenticate(conn: psycopg.Connection[Any], token: str) -> Member | None:
    holder = active_holder(conn, "team_members", token)
    return Member(holder[0]) if holder else None
