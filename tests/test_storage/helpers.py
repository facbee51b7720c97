"""Builders of canonical records and envelopes for the storage tests, and a runner for async store calls."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from schemas import AlsfrsR, Envelope, NivNight, OximetryNight, SpirometrySession

T = TypeVar("T")


def envelope(record: Any, upload_id: str | None = None) -> Envelope:
    return Envelope(upload_id=upload_id or str(uuid.uuid4()), device_id="dev-storage",
                    received_at=datetime.now(UTC), record=record)


def oximetry(patient: str, start: datetime, hours: float = 4.5, interval_s: float = 4.0,
             dip_every: int = 50, source: str = "o2ring") -> OximetryNight:
    """A night at 95-96 % with a dip to 86 % every `dip_every` samples and a few dropouts."""
    n = int(hours * 3600 / interval_s)
    spo2: list[float | None] = [95.0 + (i % 2) for i in range(n)]
    for i in range(0, n, dip_every):
        for j in range(i, min(i + 5, n)):
            spo2[j] = 86.0
    for i in range(7, n, 997):
        spo2[i] = None
    pulse: list[float | None] = [60.0 + (i % 7) * 0.5 for i in range(n)]
    return OximetryNight(patient_id=patient, start=start, interval_s=interval_s, spo2=spo2, pulse=pulse,
                         source=source)


def niv(patient: str, night: date, usage: float = 7.0, leak: float = 12.0, ahi: float = 3.0) -> NivNight:
    return NivNight(patient_id=patient, night_date=night, usage_hours=usage, leak_p95_lpm=leak, ahi=ahi)


def spirometry(patient: str, at: datetime, fvc_pct: float, fvc_l: float = 3.0) -> SpirometrySession:
    return SpirometrySession(patient_id=patient, taken_at=at, fvc_l=fvc_l, fvc_pct_pred=fvc_pct)


def alsfrs(patient: str, at: datetime, items: list[int] | None = None) -> AlsfrsR:
    return AlsfrsR(patient_id=patient, taken_at=at, items=items or [4, 4, 4, 3, 3, 3, 3, 3, 3, 2, 3, 4])


def run(db_url: str, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Run `fn(conn)` on a fresh async connection in one transaction (as the worker's `_write` does)."""

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            return await fn(conn)

    return asyncio.run(main())


def night_start(d: date, hour: int = 22) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def days(d: date, n: int) -> date:
    return d + timedelta(days=n)
