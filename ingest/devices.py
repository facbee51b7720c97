"""Per-device credentials: a random bearer token, stored only as its SHA-256, bound to one patient."""

import time
from dataclasses import dataclass
from datetime import datetime
from typing import LiteralString

import psycopg

from respmon.core.tokens import active_holder, hash_token, new_token

REMEMBER_S = 5.0
"""How long ingest trusts a device token it checked: a revoked, rotated or expired token is refused at most
this long after its change (each ingest process checks again at the first request after that)."""


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


REJECTED_BYTES_TODAY: LiteralString = (
    "SELECT coalesce(sum(size_bytes), 0) AS bytes FROM raw_uploads WHERE device_id = %(device_id)s"
    " AND status = 'rejected' AND received_at >= date_trunc('day', now(), 'UTC')")
"""Bytes of a device's rejected uploads archived since 00:00 UTC: what its daily quota counts (the archive
statement of `ingest.uploads` reads it as it inserts)."""


class RecentDevices:
    """Device tokens this process checked in the last `ttl_s` seconds, with their device.

    A device sends a night's files in one burst; only the first request of a burst pays the look-up
    (a database write, `last_used_at`, and a hop to a worker thread). The price is `ttl_s`: the time a
    revoked or expired token is still accepted here. Only accepted tokens are kept (by their SHA-256, not
    the token), so an unknown token is checked every time. Used from the event loop thread only.
    """

    def __init__(self, ttl_s: float = REMEMBER_S, max_entries: int = 10_000) -> None:
        self._ttl_s, self._max = ttl_s, max_entries
        self._seen: dict[str, tuple[float, Device]] = {}

    def get(self, token: str) -> Device | None:
        key = hash_token(token)
        entry = self._seen.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self._ttl_s:
            del self._seen[key]
            return None
        return entry[1]

    def put(self, token: str, device: Device) -> None:
        if len(self._seen) >= self._max:
            now = time.monotonic()
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] <= self._ttl_s}
            if len(self._seen) >= self._max:
                self._seen.clear()
        self._seen[hash_token(token)] = (time.monotonic(), device)
