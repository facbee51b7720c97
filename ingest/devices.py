"""Per-device credentials: a random bearer token, stored only as its SHA-256, bound to one patient."""

from dataclasses import dataclass

import psycopg

from respmon.core.tokens import active_holder, hash_token, new_token


@dataclass(frozen=True)
class Device:
    device_id: str
    patient_id: str


def provision(conn: psycopg.Connection, device_id: str, patient_id: str) -> str:
    """Create a device (or rotate its token) and return the new token; it is shown once, never stored."""
    token = new_token()
    conn.execute(
        "INSERT INTO devices (device_id, patient_id, token_sha256) VALUES (%s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET patient_id = EXCLUDED.patient_id,"
        " token_sha256 = EXCLUDED.token_sha256, active = true",
        (device_id, patient_id, hash_token(token)),
    )
    return token


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
