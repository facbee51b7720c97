"""Bearer tokens for devices and team members: 256-bit random, shown once, stored only as SHA-256."""

import hashlib
import secrets
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

CredentialTable = Literal["devices", "team_members"]
_HOLDER_COLUMNS: dict[str, tuple[str, str]] = {
    "devices": ("device_id", "patient_id"),  # a device is bound to one patient
    "team_members": ("member_id", "team"),
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def active_holder(conn: psycopg.Connection[Any], table: CredentialTable, token: str) -> tuple[str, str] | None:
    """(id, scope) of the active device or team member holding `token`, or None. One look-up for both
    kinds of credential, each in its own table, so a device token never opens a team route."""
    id_column, scope_column = _HOLDER_COLUMNS[table]
    query = sql.SQL("SELECT {}, {} FROM {} WHERE token_sha256 = %s AND active").format(
        sql.Identifier(id_column), sql.Identifier(scope_column), sql.Identifier(table))
    row = conn.cursor(row_factory=tuple_row).execute(query, (hash_token(token),)).fetchone()
    return (str(row[0]), str(row[1])) if row else None
