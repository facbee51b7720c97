"""Team credentials: bearer tokens for clinicians and services reading alerts, stored as SHA-256 and
kept apart from device tokens (a device token never authenticates here)."""

from dataclasses import dataclass

import psycopg
from psycopg.rows import tuple_row

from respmon.tokens import hash_token, new_token


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


def authenticate(conn: psycopg.Connection, token: str) -> Member | None:
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute("SELECT member_id, team FROM team_members WHERE token_sha256 = %s AND active",
                      (hash_token(token),)).fetchone()
    return Member(*row) if row else None
