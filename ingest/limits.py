"""Checks every parsed upload passes before it is published, whatever its format.

Parsers check their own syntax; these check what no single format should decide: how many records one
upload may carry, and that every time in a record is plausible. A session dated 2099 would sit in a
patient's history as the latest value for decades; a time whose UTC form falls outside years 1-9999
made the worker fail (OverflowError) and dead-letter the record after ingest had answered 202.
"""

import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

from pydantic import BaseModel

from respmon.core.settings import Settings

PLAIN = (str, int, float, bool, bytes, type(None))
"""Field types that can never hold a date: such fields (signal lists included) are not walked."""


@dataclass(frozen=True)
class Limits:
    """What ingest accepts, from the settings, so that ingest and `respmon reprocess` apply the same checks.
    `rejected_bytes_quota` is per device and UTC day (0 = none); the defaults are those of `Settings`."""

    max_records: int = 5000
    max_clock_skew_s: float = 86400.0
    min_record_date: date = date(1990, 1, 1)
    rejected_bytes_quota: int = 100 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(settings.max_records_per_upload, settings.max_clock_skew_s, settings.min_record_date,
                   settings.rejected_bytes_quota)


@dataclass(frozen=True)
class Violation:
    """What is wrong, where: `field` is the record field (dotted or indexed when nested)."""

    field: str | None
    where: str
    reason: str


def check_records(records: Sequence[BaseModel], limits: Limits, now: datetime) -> Violation | None:
    """The first violation of `limits` in `records` (received at `now`), or None when all pass."""
    if len(records) > limits.max_records:
        return Violation(None, "upload", f"{len(records)} records in one upload, at most {limits.max_records}"
                                         " are accepted (RESPMON_MAX_RECORDS_PER_UPLOAD): split the upload")
    latest = now + timedelta(seconds=limits.max_clock_skew_s)
    earliest = datetime.combine(limits.min_record_date, time(0), UTC)
    for number, record in enumerate(records, start=1):
        for name, value in record_times(record):
            reason = time_out_of_range(value, earliest, latest, limits)
            if reason:
                return Violation(name, f"record {number}", f"{name} {reason}")
    return None


def time_out_of_range(value: date, earliest: datetime, latest: datetime, limits: Limits) -> str | None:
    """Why `value` (a date or a datetime, naive = UTC) is not between `earliest` and `latest`, or None.

    An aware datetime near year 1 or 9999 can overflow when brought to UTC: that is out of range too.
    """
    try:
        if isinstance(value, datetime):
            moment = value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
            moment.astimezone(UTC)  # raises OverflowError when its UTC form is outside years 1-9999
            too_late, too_early = moment > latest, moment < earliest
        else:
            too_late, too_early = value > latest.date(), value < earliest.date()
    except OverflowError:
        return "is outside the years 1-9999 once converted to UTC"
    if too_late:
        return (f"is in the future: later than {limits.max_clock_skew_s:g} s after the upload was received"
                " (RESPMON_MAX_CLOCK_SKEW_S)")
    if too_early:
        return f"is before {limits.min_record_date.isoformat()} (RESPMON_MIN_RECORD_DATE)"
    return None


def record_times(record: BaseModel, prefix: str = "") -> Iterator[tuple[str, date]]:
    """Every date and datetime a record holds, with its field name, nested models and lists included."""
    for name in _fields_with_times(type(record)):
        yield from _times(getattr(record, name), prefix + name)


def _times(value: Any, name: str) -> Iterator[tuple[str, date]]:
    if isinstance(value, date):  # datetime too
        yield name, value
    elif isinstance(value, BaseModel):
        yield from record_times(value, name + ".")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _times(item, f"{name}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _times(item, f"{name}[{key!r}]")


@cache
def _fields_with_times(model: type[BaseModel]) -> tuple[str, ...]:
    """Fields whose type may hold a date: a night's 28,800 SpO2 floats are never looked at one by one."""
    return tuple(name for name, info in model.model_fields.items() if _may_hold_time(info.annotation))


def _may_hold_time(annotation: Any) -> bool:
    """False only for types built from plain scalars (str, numbers, bool, None, Literal) and containers of them."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return False
    if origin is not None:  # list[...], X | None, Annotated[...], dict[...]
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            args = args[:1]
        return any(_may_hold_time(arg) for arg in args)
    return not (isinstance(annotation, type) and issubclass(annotation, PLAIN))
