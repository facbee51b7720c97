"""Bearer tokens for devices and team members: 256-bit random, shown once, stored only as SHA-256.

A token is refused once revoked or past its expiry; each accepted use stamps `last_used_at`, so an
operator can tell a forgotten credential from one in use before ending it."""

import hashlib
import secrets
from typing import Any, Literal, LiteralString

import psycopg
from psycopg.rows import tuple_row

CredentialTable = Literal["devices", "team_members"]
_LOOKUPS: dict[str, LiteralString] = {
    # a device is bound to one patient: (device id, patient id)
    "devices": "UPDATE devices SET last_used_at = now() WHERE token_sha256 = %s AND active"
               " AND (expires_at IS NULL OR expires_at > now()) RETURNING device_id, patient_id",
    # a member may hold several tokens while one is rotated: (member id, member id); their teams and
    # roles are looked up per request, so a change of membership applies at once
    "team_members": "UPDATE team_tokens t SET last_used_at = now() FROM team_members m"
                    " WHERE t.token_sha256 = %s AND m.member_id = t.member_id AND m.active"
                    " AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())"
                    " RETURNING t.member_id, m.member_id",
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def active_holder(conn: psycopg.Connection[Any], table: CredentialTable, token: str) -> tuple[str, str] | None:
    """(id, scope) of the device or team member holding `token` while it is valid (not revoked, not
    expired, holder enabled), or None; stamps its last use. One look-up for both kinds of credential,
    each in its own table, so a device token never opens a team route."""
    row = conn.cursor(row_factory=tuple_row).execute(_LOOKUPS[table], (hash_token(token),)).fetchone()
    return (str(row[0]), str(row[1])) if row else None
