"""Team credentials: bearer tokens for clinicians and services reading alerts, stored as SHA-256 and
kept apart from device tokens (a device token never authenticates here)."""

from dataclasses import dataclass
from typing import Any

import psycopg

from respmon.core.tokens import active_holder, hash_token, new_token


@dataclass(frozen=True)
class Member:
    member_id: str
    team: str


def provision(conn: psycopg.Connection, member_id: str, team: str) -> str:
    token = new_token()
    conn.execute(
        "INSERT INTO team_members (member_id, team, token_sha256) VALUES (%s, %s, %s)"
        " ON CONFLICT (member_id) DO UPDATE SET team = EXCLUDED.team, token_sha256 = EXCLUDED.token_sha256,"
        " active = true",
        (member_id, team, hash_token(token)),
    )
    return token


def authenticate(conn: psycopg.Connection[Any], token: str) -> Member | None:
    holder = active_holder(conn, "team_members", token)
    return Member(*holder) if holder else None
