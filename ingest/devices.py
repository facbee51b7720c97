"""Per-device credentials: a random bearer token, stored only as its SHA-256, bound to one patient."""

from dataclasses import dataclass
from datetime import datetime

import psycopg

from respmon.core.tokens import active_holder, hash_token, new_token


@dataclass(frozen=True)
class Device:
    device_id: str
    patient_id: str


def provision(conn: psycopg.Connection, device_id: str, patient_id: str, expires: datetime | None = None) -> str:
    """Create a device (or rotate its token) and return the new token; it is shown once, never stored.
    `expires`: the token is refused from then on (None: until revoked)."""
    token = new_token()
    conn.execute(
        "INSERT INTO devices (device_id, patient_id, token_sha256, expires_at) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET patient_id = EXCLUDED.patient_id,"
        " token_sha256 = EXCLUDED.token_sha256, expires_at = EXCLUDED.expires_at, active = true,"
        " revoked_at = NULL, last_used_at = NULL",
        (device_id, patient_id, hash_token(token), expires),
    )
    return token


def revoke(conn: psycopg.Connection, device_id: str) -> bool:
    """End the device's token now (uploads with it answer 401); `device-add` gives it a new one."""
    cur = conn.execute("UPDATE devices SET active = false, revoked_at = coalesce(revoked_at, now())"
                       " WHERE device_id = %s", (device_id,))
    return cur.rowcount > 0


def authenticate(conn: psycopg.Connection, token: str) -> Device | None:
    holder = active_holder(conn, "devices", token)
    return Device(*holder) if holder else None


def rejected_bytes_today(conn: psycopg.Connection, device_id: str) -> int:
    """Bytes of this device's rejected uploads archived since 00:00 UTC: what its daily quota counts."""
    row = conn.execute(
        "SELECT coalesce(sum(size_bytes), 0) FROM raw_uploads WHERE device_id = %s AND status = 'rejected'"
        " AND received_at >= date_trunc('day', now(), 'UTC')",
        (device_id,),
    ).fetchone()
    return int(row[0]) if row else 0
