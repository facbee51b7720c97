"""Helpers shared by the format parsers: context, text decoding, numbers, time grids, validation."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from ingest.parsers.errors import ParseError, PatientMismatch

M = TypeVar("M", bound=BaseModel)

MAX_SAMPLES = 200_000
"""OximetryNight holds at most this many samples (55 h at 1 Hz)."""

MAX_CODES = 5
"""Distinct codes a skip summary quotes."""


@dataclass
class Notes:
    """What a file held that gave no record: every note as text for the caller, and counts by reason
    plus a few distinct codes for one log line per upload (one line per note flooded the logs)."""

    text: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    codes: list[str] = field(default_factory=list)

    def add(self, note: str, reason: str, code: str | None = None) -> None:
        """`note` names the entry and (escaped) code, never a value; `reason` is a fixed phrase."""
        self.text.append(note)
        self.counts[reason] += 1
        if code is not None and code not in self.codes and len(self.codes) < MAX_CODES:
            self.codes.append(code)

    @property
    def total(self) -> int:
        return len(self.text)


@dataclass
class Context:
    """What every parser needs besides the bytes: the file name for errors, patient and clock."""

    filename: str
    patient_id: str | None = None
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("UTC"))
    device_model: str | None = None
    notes: Notes = field(default_factory=Notes)

    def error(self, reason: str, where: str | None = None) -> ParseError:
        return ParseError(self.filename, reason, where)

    def require_patient(self, fmt: str) -> str:
        """Device files carry no patient id: the uploader must say whose recording it is."""
        if not self.patient_id or not self.patient_id.strip():
            raise self.error(f"patient id required for {fmt}")
        return self.patient_id.strip()

    def patient_for(self, file_pid: object, where: str | None) -> str:
        """Patient id written in the file, which must agree with the one given by the uploader."""
        if file_pid is not None and not isinstance(file_pid, str):
            raise self.error("field patient_id: must be a string", where)
        if not isinstance(file_pid, str) or not file_pid.strip():
            if self.patient_id:
                return self.patient_id.strip()
            raise self.error("patient_id missing", where)
        if self.patient_id and file_pid.strip() != self.patient_id.strip():
            raise PatientMismatch(self.filename, "patient id in file does not match the upload's patient id", where)
        return file_pid.strip()


def resolve_tz(name: str, filename: str) -> tzinfo:
    """Naive device clocks are read in the patient's zone; an unknown zone name is a caller error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ParseError(filename, f"unknown time zone {name!r}") from exc


def localize(value: datetime, tz: tzinfo) -> datetime:
    """Attach the patient's zone to a naive timestamp; keep an explicit offset as written."""
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def decode_text(data: bytes, ctx: Context) -> str:
    """Exports are UTF-8 (sometimes with a BOM); anything else is not one of our text formats."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ctx.error("not UTF-8 text", f"byte {exc.start}") from exc
    if "\x00" in text:
        raise ctx.error("binary data in a text file", f"byte {text.index(chr(0))}")
    return text


def parse_float(cell: str, ctx: Context, where: str, column: str) -> float | None:
    """Empty cell = not measured; otherwise a finite decimal number."""
    cell = cell.strip()
    if cell == "":
        return None
    try:
        value = float(cell)
    except ValueError:
        raise ctx.error(f"column {column}: not a number", where) from None
    if not math.isfinite(value):
        raise ctx.error(f"column {column}: not a finite number", where)
    return value


def validation_reason(exc: ValidationError) -> tuple[str, str]:
    """First pydantic error as (field path, reason), without the offending input value."""
    err = exc.errors(include_url=False, include_input=False)[0]
    path = ".".join(str(part) for part in err.get("loc", ())) or "record"
    return path, str(err.get("msg", "invalid value"))


def build(model: type[M], values: dict[str, Any], ctx: Context, where: str | None) -> M:
    """Validate one canonical record, turning a pydantic error into a ParseError naming the field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        path, reason = validation_reason(exc)
        prefix = f"{where}, field {path}" if where else f"field {path}"
        raise ctx.error(reason, prefix) from None


def clean_spo2(value: float | None) -> float | None:
    """0, 127 and 255 are 'no reading' codes; anything outside 1-100 % cannot be a saturation."""
    if value is None or not 0 < value <= 100:
        return None
    return float(value)


def clean_pulse(value: float | None) -> float | None:
    """0, 255, 511 and 0xFFFF are 'no reading' codes; a pulse above 250/min is not physiological."""
    if value is None or not 0 < value <= 250:
        return None
    return float(value)


def require_valid_spo2(spo2: Sequence[float | None], ctx: Context) -> None:
    """A night with no usable saturation at all is a failed upload, not an empty night."""
    if not any(v is not None for v in spo2):
        raise ctx.error("no valid SpO2 samples")


def infer_interval(times: Sequence[float], ctx: Context, lines: Sequence[int]) -> float:
    """Sampling interval = the most common step between the first timestamps (devices differ: 1, 2, 4 s)."""
    steps: dict[float, int] = {}
    for i in range(1, min(len(times), 64)):
        step = round(times[i] - times[i - 1], 3)
        if step <= 0:
            raise ctx.error("timestamp goes backwards or repeats", f"line {lines[i]}")
        steps[step] = steps.get(step, 0) + 1
    if not steps:
        raise ctx.error("need at least two samples to infer the sampling interval")
    interval = max(steps.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    if interval > 60:
        raise ctx.error(f"sampling interval {interval:g} s is longer than 60 s")
    return interval


def grid_slots(
    times: Sequence[float], interval: float, ctx: Context, lines: Sequence[int], tolerance: float = 0.2
) -> list[int]:
    """Slot index of each sample on the fixed-rate grid; whole missing steps become gaps (None).

    A step that is not a whole number of intervals (within `tolerance` x interval) means the
    file is not fixed-rate, and a step back in time means rows are out of order: both are errors.
    """
    slots = [0]
    for i in range(1, len(times)):
        step = times[i] - times[i - 1]
        if step <= 0:
            raise ctx.error("timestamp goes backwards or repeats", f"line {lines[i]}")
        k = round(step / interval)
        if k < 1 or abs(step - k * interval) > tolerance * interval:
            raise ctx.error(f"irregular sample spacing ({step:g} s, expected {interval:g} s)", f"line {lines[i]}")
        slots.append(slots[-1] + k)
        if slots[-1] >= MAX_SAMPLES:
            raise ctx.error(f"recording longer than {MAX_SAMPLES} samples", f"line {lines[i]}")
    return slots


def spread(values: Iterable[Any], slots: Sequence[int], size: int) -> list[Any]:
    """Place values on their grid slots; unfilled slots are None."""
    out: list[Any] = [None] * size
    for slot, value in zip(slots, values, strict=True):
        out[slot] = value
    return out


Parser = Callable[[bytes, Context], Sequence[BaseModel]]
"""One format's parser: the file's bytes and context in, its records out (each parser returns a list of
its own record type; `Sequence` is covariant, so `list[NivNight]` is a `Sequence[BaseModel]`)."""


def aware_iso(value: Any, tz: tzinfo) -> Any:
    """A naive ISO 8601 string from a JSON file is read in the patient's zone; other values pass through."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return value
    return localize(parsed, tz)
