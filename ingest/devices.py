"""Per-device credentials: a random bearer token, stored only as its SHA-256, bound to one patient."""

from dataclasses import dataclass

import psycopg

from respmon.tokens import hash_token, new_token


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
    row = conn.execute(
        "SELECT device_id, patient_id FROM devices WHERE token_sha256 = %s AND active",
        (hash_token(token),),
    ).fetchone()
    return Device(*row) if row else None
