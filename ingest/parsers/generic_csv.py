"""Our own CSV layouts: spirometry sessions, NIV nights and generic oximetry (`timestamp,spo2,pulse`).

Oxygen (issue 12): an optional `o2_lpm` column (L/min) on oximetry rows and NIV nights records supplemental
oxygen, which the rules count (never drop) and read as worse news; the NIV `leak_kind` column is optional
and a night without it is `unknown` (the schema default), never compared with ResMed's 24 L/min.

Errors name the line (1 = header) and the column, never the cell's value.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from ingest.parsers.columns import gridded, iso_wall_seconds, plain_cells, small_integers
from ingest.parsers.common import (
    MAX_SAMPLES,
    Context,
    build,
    clean_pulse,
    clean_spo2,
    decode_text,
    grid_slots,
    infer_interval,
    localize,
    parse_float,
    require_valid_spo2,
    spread,
    validation_reason,
)
from ingest.parsers.errors import ParseError
from schemas import NivNight, OximetryNight, SpirometrySession

SPIRO_REQUIRED = ("patient_id", "taken_at")
SPIRO_NUMBERS = (
    "fvc_l", "fvc_pct_pred", "fev1_l", "svc_l", "mip_cmh2o", "mep_cmh2o", "snip_cmh2o", "pcf_lpm",
    "age_years", "height_cm",
)  # fmt: skip
SPIRO_TEXT = ("posture", "sex", "grade", "source", "pcf_assisted")
NIV_REQUIRED = ("patient_id", "night_date", "usage_hours")
NIV_NUMBERS = (
    "usage_hours", "leak_p50_lpm", "leak_p95_lpm", "ahi", "resp_rate", "tidal_volume_ml", "minute_vent_lpm",
    "spo2_mean", "spo2_t90_pct", "pct_spont_triggered", "mask_sessions", "o2_lpm",
)  # fmt: skip
NIV_TEXT = ("leak_kind", "source", "device_model")
OXI_COLUMNS = ("timestamp", "spo2", "pulse")
OXI_OXYGEN = "o2_lpm"
"""Optional oximetry column: supplemental oxygen flow on that sample (L/min; 0 = room air, empty = not said)."""


def header_of(text: str) -> list[str]:
    """First line's column names, for format detection."""
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    return [c.strip().lower() for c in first.split(",")]


def _table(text: str, ctx: Context) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (lower-cased) and non-blank rows with 1-based line numbers."""
    reader = csv.reader(io.StringIO(text))
    rows = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as exc:
        raise ctx.error(f"malformed CSV ({exc})", f"line {reader.line_num}") from None
    if not rows:
        raise ctx.error("empty file")
    header = [c.lower() for c in rows[0][1]]
    if len(set(header)) != len(header):
        raise ctx.error("wrong header: duplicate column names", "line 1")
    return header, rows[1:]


def _check_header(header: list[str], required: tuple[str, ...], allowed: set[str], ctx: Context) -> None:
    for column in required:
        if column not in header:
            raise ctx.error(f"wrong header: required column {column!r} missing", "line 1")
    for column in header:
        if column not in allowed:
            raise ctx.error(f"wrong header: unknown column {column!r}", "line 1")


def _row_dict(header: list[str], cells: list[str], line: int, ctx: Context) -> dict[str, str]:
    if len(cells) != len(header):
        raise ctx.error(f"expected {len(header)} columns, found {len(cells)}", f"line {line}")
    return dict(zip(header, cells, strict=True))


def _datetime(cell: str, ctx: Context, line: int, column: str) -> datetime:
    try:
        value = datetime.fromisoformat(cell.replace("Z", "+00:00") if cell.endswith("Z") else cell)
    except ValueError:
        raise ctx.error(f"column {column}: not an ISO 8601 date-time", f"line {line}") from None
    return localize(value, ctx.tz)


def _record(model: type[BaseModel], values: dict[str, Any], line: int, ctx: Context) -> Any:
    """Validate a row; the error names the CSV column rather than the model field path."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        path, reason = validation_reason(exc)
        raise ctx.error(f"column {path}: {reason}", f"line {line}") from None


def _rows_to_records(
    data: bytes,
    ctx: Context,
    required: tuple[str, ...],
    allowed: set[str],
    convert: Callable[[dict[str, str], int], dict[str, Any]],
    model: type[BaseModel],
    source: str,
) -> list[Any]:
    header, rows = _table(decode_text(data, ctx), ctx)
    _check_header(header, required, allowed, ctx)
    records = []
    for line, cells in rows:
        row = _row_dict(header, cells, line, ctx)
        values = convert(row, line)
        values["patient_id"] = ctx.patient_for(row.get("patient_id"), f"line {line}")
        values.setdefault("source", source)
        records.append(_record(model, values, line, ctx))
    return records


def parse_spirometry_csv(data: bytes, ctx: Context) -> list[SpirometrySession]:
    """One session per row; measures after taken_at optional, MIP negative or magnitude."""

    def convert(row: dict[str, str], line: int) -> dict[str, Any]:
        values: dict[str, Any] = {"taken_at": _datetime(row["taken_at"], ctx, line, "taken_at")}
        for column in SPIRO_NUMBERS:
            if column in row:
                values[column] = parse_float(row[column], ctx, f"line {line}", column)
        for column in SPIRO_TEXT:
            if row.get(column):
                values[column] = row[column].lower() if column != "grade" else row[column].upper()
        if "pcf_assisted" in values:
            values["pcf_assisted"] = values["pcf_assisted"] in {"true", "1", "yes", "y"}
        return values

    allowed = set(SPIRO_REQUIRED) | set(SPIRO_NUMBERS) | set(SPIRO_TEXT)
    return _rows_to_records(data, ctx, SPIRO_REQUIRED, allowed, convert, SpirometrySession, "spirometry_csv")


def parse_niv_csv(data: bytes, ctx: Context) -> list[NivNight]:
    """One NIV night per row (e.g. exported from AirView or a ventilator's software)."""

    def convert(row: dict[str, str], line: int) -> dict[str, Any]:
        try:
            night = date.fromisoformat(row["night_date"])
        except ValueError:
            raise ctx.error("column night_date: not an ISO 8601 date", f"line {line}") from None
        values: dict[str, Any] = {"night_date": night}
        for column in NIV_NUMBERS:
            if column in row:
                values[column] = parse_float(row[column], ctx, f"line {line}", column)
        if values.get("mask_sessions") is not None:
            count = values["mask_sessions"]
            if count != int(count):
                raise ctx.error("column mask_sessions: not a whole number", f"line {line}")
            values["mask_sessions"] = int(count)
        for column in NIV_TEXT:
            if row.get(column):
                values[column] = row[column].lower() if column == "leak_kind" else row[column]
        return values

    allowed = set(NIV_REQUIRED) | set(NIV_NUMBERS) | set(NIV_TEXT)
    return _rows_to_records(data, ctx, NIV_REQUIRED, allowed, convert, NivNight, "niv_csv")


def parse_oximetry_csv(data: bytes, ctx: Context) -> list[OximetryNight]:
    """`timestamp,spo2,pulse` at any fixed rate; gaps of whole intervals become None samples.

    The plain layout (ISO 8601 times all with the same offset, whole-number cells or empty ones) goes
    through a whole-file vectorised reader; anything else, errors included, is read row by row, which
    stays the reference."""
    patient_id = ctx.require_patient("oximetry_csv")
    text = decode_text(data, ctx)
    values = _read_oximetry_plain(text, ctx) or _read_oximetry_rows(text, ctx)
    values |= {"patient_id": patient_id, "source": "oximetry_csv"}
    return [build(OximetryNight, values, ctx, None)]


def _read_oximetry_rows(text: str, ctx: Context) -> dict[str, Any]:
    """Row by row, any CSV: the start, interval and gridded samples, or a ParseError naming the line."""
    header, rows = _table(text, ctx)
    _check_header(header, OXI_COLUMNS, {*OXI_COLUMNS, OXI_OXYGEN}, ctx)
    if len(rows) > MAX_SAMPLES:
        raise ctx.error(f"recording longer than {MAX_SAMPLES} samples")
    times, lines, spo2, pulse, oxygen = [], [], [], [], []
    for line, cells in rows:
        row = _row_dict(header, cells, line, ctx)
        times.append(_datetime(row["timestamp"], ctx, line, "timestamp"))
        lines.append(line)
        spo2.append(clean_spo2(parse_float(row["spo2"], ctx, f"line {line}", "spo2")))
        pulse.append(clean_pulse(parse_float(row["pulse"], ctx, f"line {line}", "pulse")))
        if OXI_OXYGEN in row:
            flow = parse_float(row[OXI_OXYGEN], ctx, f"line {line}", OXI_OXYGEN)
            if flow is not None and flow < 0:
                raise ctx.error(f"column {OXI_OXYGEN}: must not be negative", f"line {line}")
            oxygen.append(flow)
    seconds = [(t - times[0]).total_seconds() for t in times]
    interval = infer_interval(seconds, ctx, lines)
    slots = grid_slots(seconds, interval, ctx, lines)
    require_valid_spo2(spo2, ctx)
    return {
        "start": times[0],
        "interval_s": interval,
        "spo2": spread(spo2, slots, slots[-1] + 1),
        "pulse": spread(pulse, slots, slots[-1] + 1),
        **_oxygen(oxygen),
    }


def _oxygen(flows: list[float | None]) -> dict[str, Any]:
    """The night's oxygen from the `o2_lpm` cells: on oxygen if any sample had a flow (the highest is
    kept), room air if every given cell is 0, unknown (nothing set) if the column is absent or empty."""
    given = [f for f in flows if f is not None]
    if not given:
        return {}
    top = max(given)
    return {"supplemental_o2": top > 0, "o2_lpm": top}


def _read_oximetry_plain(text: str, ctx: Context) -> dict[str, Any] | None:
    """The plain layout read as one byte array with numpy (row by row: ~130 ms of CPU per 8 h night at
    1 Hz). Returns None, leaving the file to `_read_oximetry_rows`, for anything else and any error."""
    cells = plain_cells(text, ",".join(OXI_COLUMNS), columns=3)
    if cells is None:
        return None
    buf, starts, widths = cells
    seconds = iso_wall_seconds(buf, starts[:, 0], widths[:, 0])
    spo2, pulse = (small_integers(buf, starts[:, k], widths[:, k], empty=True) for k in (1, 2))
    if seconds is None or spo2 is None or pulse is None:
        return None
    try:
        start = _datetime(bytes(buf[: widths[0, 0]]).decode(), ctx, 2, "timestamp")
    except ParseError:
        return None
    grid = gridded(seconds, spo2, pulse, ctx)
    return None if grid is None else {"start": start, **grid[1]}
