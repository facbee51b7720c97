"""Shared base for canonical records: strict, immutable, no unknown fields, plausible numbers and dates."""

from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    field_validator,
)

PatientId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
"""Pseudonymous patient identifier (never a name): letters, digits and . _ : - only."""

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""Measurements are dated in [EARLIEST, LATEST): far enough from year 1 and 9999 that converting to UTC,
a night's noon-to-noon shift or a trend window never overflows `datetime` (nor PostgreSQL reads back
a year Python cannot hold)."""


def _not_bool(value: Any) -> Any:
    """pydantic's lax mode reads true as 1: `"fvc_l": true` would be stored as 1.0 L."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")  # noqa: TRY004 - pydantic reports only ValueError
    return value


def plausible_time(value: date | datetime) -> bool:
    """In [EARLIEST, LATEST); an aware datetime is compared through its offset, which never overflows
    (Python compares the differences, it builds no UTC datetime); a naive one or a date by the calendar."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return EARLIEST.replace(tzinfo=None) <= value < LATEST.replace(tzinfo=None)
        return EARLIEST <= value < LATEST
    return EARLIEST.date() <= value < LATEST.date()


def _plausible_instant(value: datetime) -> datetime:
    if not plausible_time(value):
        raise ValueError("date/time must be in the years 1900-2099 (UTC)")
    return value


def _plausible_day(value: date) -> date:
    if not plausible_time(value):
        raise ValueError("date must be in the years 1900-2099")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]
"""A measured value: an int or a float (45 and 45.0 alike), never a boolean; NaN/inf refused by `Record`."""

Count = Annotated[int, BeforeValidator(_not_bool)]
"""A whole number (a score, a count), never a boolean."""

Instant = Annotated[AwareDatetime, AfterValidator(_plausible_instant)]
"""When a measurement was taken: with a UTC offset, in the years 1900-2099."""

Day = Annotated[date, AfterValidator(_plausible_day)]
"""A calendar day of a measurement (a NIV night), in the years 1900-2099."""


class Record(BaseModel):
    """Base of every canonical record: unknown fields are an error, values are immutable,
    floats must be finite (JSON uploads may carry NaN or Infinity, which no range check catches)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold NUL: a record carrying one would fail its insert on every retry
        and stall its partition in the worker, so it is refused here (ingest answers 422)."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value
