"""Wellue/Viatom oximeters (O2Ring, Checkme O2 Max): ViHealth / O2 Insight CSV exports and the O2Ring binary.

CSV dialects:
  * ``Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder`` with ``00:21:19 Mar 09 2026``;
  * ``Time,SpO2(%),Pulse Rate(bpm),Motion,SpO2 Reminder,PR Reminder`` with ``10:21:19PM Mar 09, 2026``.
The interval (2 s Checkme, 4 s O2Ring) is inferred from the timestamps; ``--`` means no reading.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
import struct
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ingest.parsers.columns import byte_windows, clean_readings, gridded, plain_lines, small_integers_ending
from ingest.parsers.common import (
    MAX_SAMPLES,
    Context,
    build,
    clean_pulse,
    clean_spo2,
    decode_text,
    grid_slots,
    infer_interval,
    require_valid_spo2,
    spread,
)
from schemas import OximetryNight
from schemas.oximetry import DeviceSummary

SPO2_COLUMNS = ("Oxygen Level", "SpO2(%)", "SpO2")
PULSE_COLUMNS = ("Pulse Rate", "Pulse Rate(bpm)", "PR(bpm)", "Pulse")
TIME_FORMATS = (
    "%H:%M:%S %b %d %Y",
    "%I:%M:%S%p %b %d, %Y",
    "%I:%M:%S %p %b %d, %Y",
    "%I:%M:%S%p %B %d, %Y",
    "%I:%M:%S %p %B %d, %Y",
    "%I:%M:%S%p %b %d %Y",
    "%H:%M:%S %B %d %Y",
)
NO_READING = {"--", ""}
BIN_HEADER = 40
BIN_RECORD = 5
BIN_INTERVAL_S = 4.0
BIN_RECORD_DTYPE = np.dtype([("spo2", "u1"), ("pulse", "<u2"), ("motion", "u1"), ("flag", "u1")])
"""A record as numpy reads the whole body at once (packed: 5 bytes; a loop of struct calls was 1.8 ms)."""
MAX_MOTION = 255
"""The devices count motion in a byte; a larger cell is corrupt and drops the motion trace, not the night."""


def is_wellue_header(first_line: str) -> bool:
    cells = [c.strip() for c in first_line.split(",")]
    return bool(cells) and cells[0] == "Time" and any(c in SPO2_COLUMNS for c in cells[1:])


def _column(header: list[str], names: tuple[str, ...], ctx: Context) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise ctx.error(f"wrong header: no {names[0]!r} column", "line 1")


class _Clock:
    """Parses the export's timestamps, remembering which dialect matched first."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.fmt: str | None = None

    def parse(self, cell: str, line: int) -> datetime:
        text = " ".join(cell.split())
        if self.fmt in (None, TIME_FORMATS[0]) and (fast := _fast_standard(text)) is not None:
            self.fmt = TIME_FORMATS[0]
            return fast
        for fmt in (self.fmt,) if self.fmt else TIME_FORMATS:
            try:
                value = datetime.strptime(text, fmt)
            except ValueError:
                continue
            self.fmt = fmt
            return value
        raise self.ctx.error("column Time: unrecognised timestamp", f"line {line}")


_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                         "Nov", "Dec"), start=1)}


def _fast_standard(text: str) -> datetime | None:
    """`HH:MM:SS Mon DD YYYY` by slicing: strptime on every row was half of the parse time of a night.
    Anything unusual returns None and goes through strptime, which stays the reference."""
    if len(text) != 20 or text[2] != ":" or text[5] != ":" or text[8] != " " or text[12] != " " or text[15] != " ":
        return None
    month = _MONTHS.get(text[9:12])
    parts = (text[16:20], text[13:15], text[0:2], text[3:5], text[6:8])
    if month is None or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    year, day, hour, minute, second = map(int, parts)
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def _reading(cell: str, ctx: Context, line: int, column: str) -> float | None:
    cell = cell.strip()
    if cell in NO_READING:
        return None
    if not re.fullmatch(r"\d{1,5}(\.\d+)?", cell):
        raise ctx.error(f"column {column}: not a number", f"line {line}")
    return float(cell)


def parse_csv(data: bytes, ctx: Context) -> list[OximetryNight]:
    """One file = one OximetryNight on a fixed grid from the first timestamp.

    The common O2Ring dialect goes through a whole-file vectorised reader; anything it does not
    recognise exactly, errors included, is read row by row, which stays the reference."""
    patient_id = ctx.require_patient("o2ring_csv")
    text = decode_text(data, ctx)
    raw = memoryview(data)[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
    values = _read_standard(text, ctx, raw) or _read_rows(text, ctx)
    values |= {"patient_id": patient_id, "source": "wellue_csv", "device_model": _model_from_name(ctx.filename)}
    return [build(OximetryNight, values, ctx, None)]


def _read_rows(text: str, ctx: Context) -> dict[str, Any]:
    """Row by row, any dialect: the start, interval and gridded samples, or a ParseError naming the line."""
    rows = list(_rows(text, ctx))
    if not rows:
        raise ctx.error("empty file")
    header = [c.strip() for c in rows[0][1]]
    if not header or header[0] != "Time":
        raise ctx.error("wrong header: expected 'Time,Oxygen Level,Pulse Rate,...'", "line 1")
    i_spo2 = _column(header, SPO2_COLUMNS, ctx)
    i_pulse = _column(header, PULSE_COLUMNS, ctx)
    i_motion = header.index("Motion") if "Motion" in header else None
    clock = _Clock(ctx)
    times, lines, spo2, pulse, motion = [], [], [], [], []
    for line, cells in rows[1:]:
        cells = _rejoin_time(cells, len(header))
        if len(cells) < len(header):
            raise ctx.error(f"expected {len(header)} columns, found {len(cells)}", f"line {line}")
        times.append(clock.parse(cells[0], line))
        lines.append(line)
        spo2.append(clean_spo2(_reading(cells[i_spo2], ctx, line, header[i_spo2])))
        pulse.append(clean_pulse(_reading(cells[i_pulse], ctx, line, header[i_pulse])))
        m = _reading(cells[i_motion], ctx, line, "Motion") if i_motion is not None else None
        motion.append(None if m is None or m > MAX_MOTION else int(m))
        if len(times) > MAX_SAMPLES:
            raise ctx.error(f"recording longer than {MAX_SAMPLES} samples", f"line {line}")
    seconds = [(t - times[0]).total_seconds() for t in times] if times else []
    interval = infer_interval(seconds, ctx, lines)
    slots = grid_slots(seconds, interval, ctx, lines)
    size = slots[-1] + 1
    require_valid_spo2(spo2, ctx)
    return {
        "start": times[0].replace(tzinfo=ctx.tz),
        "interval_s": interval,
        "spo2": spread(spo2, slots, size),
        "pulse": spread(pulse, slots, size),
        "motion": None if None in motion or len(set(slots)) != size else motion,
    }


STANDARD_HEADER = "Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder"
_TIME_FORM = "00:00:00 Mon 00 0000"
"""`HH:MM:SS Mon DD YYYY`: each byte minus its floor must be at most its span (uint8: below the floor wraps
high). Digits: floor '0', span 9 (5 for the tens of minutes and seconds, 2 for those of hours);
separators: span 0; the month's letters are any byte here, checked once per day by `_fast_standard`."""
_TIME_FLOOR = np.array([0 if c in "Mon" else 48 if c == "0" else ord(c) for c in _TIME_FORM], dtype=np.uint8)
_TIME_SPAN = np.array([255 if c in "Mon" else 9 if c == "0" else 0 for c in _TIME_FORM], dtype=np.uint8)
_TIME_SPAN[[0, 3, 6]] = (2, 5, 5)
_SECOND_WEIGHTS = {0: 36000, 1: 3600, 3: 600, 4: 60, 6: 10, 7: 1}  # of the digits of `HH:MM:SS`
MAX_DAYS = 16
"""Dates (runs of equal date text) the whole-file reader checks one by one; more is no night: row reader."""


def _read_standard(text: str, ctx: Context, raw: bytes | memoryview | None = None) -> dict[str, Any] | None:
    """The O2Ring dialect (`HH:MM:SS Mon DD YYYY`, cells of 1-3 digits or `--`) read as one byte array
    with numpy: row by row this was ~55 ms of CPU per 8 h night, most of ingest's time. Returns None,
    leaving the file to `_read_rows`, for any other dialect, any unusual row and any error. `raw`: the
    bytes the text was decoded from (less a BOM), read in place of a copy."""
    cells = _standard_cells(text, raw)
    if cells is None:
        return None
    buf, line_start, cuts = cells
    clock = _standard_seconds(buf, line_start, cuts[0] - line_start)
    if clock is None:
        return None
    widths = cuts[1:] - cuts[:-1]
    widths -= 1
    readings = small_integers_ending(buf, cuts[1:], widths, dashes=True)
    if readings is None:
        return None
    start, seconds = clock
    spo2, pulse, motion = readings
    grid = gridded(seconds, spo2, pulse, ctx)
    if grid is None:
        return None
    slots, values = grid
    no_gap = len(values["spo2"]) == len(slots)
    return {
        "start": start.replace(tzinfo=ctx.tz),
        **values,
        "motion": motion.copy() if no_gap and (motion <= MAX_MOTION).all() else None,  # NaN fails too
    }


def _standard_cells(text: str, raw: bytes | memoryview | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The body's bytes, its lines' starts and where the Time, SpO2, pulse and motion cells end: (4, rows),
    each row contiguous. The (rows, 5) comma table is let go here: the less numpy holds at once, the
    fewer page faults the heap's growth costs."""
    lines = plain_lines(text, STANDARD_HEADER, columns=6, raw=raw)
    if lines is None:
        return None
    buf, line_start, _, commas = lines
    return buf, line_start, commas[:, :4].T.copy()


_FORM_CACHE_ROWS = 32_768
_form_cache: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.uint8), np.empty(0, np.uint8))


def _time_form(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """`_TIME_FLOOR` and `_TIME_SPAN` repeated for `rows` cells, flat. Up to 9 h at 1 Hz they are kept
    (read-only): building them per file was two fresh 150 kB arrays, and their page faults."""
    global _form_cache
    if rows > _FORM_CACHE_ROWS:
        return np.tile(_TIME_FLOOR, rows), np.tile(_TIME_SPAN, rows)
    floor, span = _form_cache
    if floor.size < rows * 20:
        floor, span = np.tile(_TIME_FLOOR, _FORM_CACHE_ROWS), np.tile(_TIME_SPAN, _FORM_CACHE_ROWS)
        floor.flags.writeable = span.flags.writeable = False
        _form_cache = floor, span
    return floor[: rows * 20], span[: rows * 20]


def _standard_seconds(buf: np.ndarray, starts: np.ndarray, widths: np.ndarray) -> tuple[datetime, np.ndarray] | None:
    """First timestamp and seconds since it, from `HH:MM:SS Mon DD YYYY` cells (None if any cell is
    not exactly that, or not a real date and time). The cells are copied as 20-byte items, checked
    against `_TIME_FORM` as one flat run of bytes (a (rows, 20) array is 20-byte inner loops: twice the
    time), and each date is read once."""
    if not starts.size or (widths != 20).any():
        return None
    flat = byte_windows(buf, 20)[starts].view(np.uint8)
    floor, span = _time_form(len(starts))
    np.subtract(flat, floor, out=flat)
    if (flat > span).any():
        return None
    chars = flat.reshape(-1, 20)
    second = np.zeros(len(starts), dtype=np.int64)
    for i, weight in _SECOND_WEIGHTS.items():
        second += chars[:, i] * np.int32(weight)
    if second.max() >= 86400:  # hours 24-29 (minutes and seconds are below 60 by their tens' span)
        return None
    words = chars.view(np.uint32)  # bytes 8-19, ` Mon DD YYYY` less the floor, are words 2-4
    changed = np.flatnonzero(functools.reduce(np.logical_or, (words[1:, k] != words[:-1, k] for k in (2, 3, 4)))) + 1
    if changed.size >= MAX_DAYS:
        return None
    days = np.concatenate(([0], changed))
    ordinals = []
    for row in days.tolist():
        at = int(starts[row]) + 9
        moment = _fast_standard(f"00:00:00 {buf[at:at + 11].tobytes().decode()}")  # month name and calendar
        if moment is None:
            return None
        ordinals.append(moment.toordinal())
    day = np.repeat(np.asarray(ordinals, dtype=np.int64) - ordinals[0], np.diff(days, append=len(starts)))
    absolute = day * 86400 + second
    first = datetime.fromordinal(ordinals[0]) + timedelta(seconds=int(second[0]))
    return first, (absolute - absolute[0]).astype(float)


def _rejoin_time(cells: list[str], width: int) -> list[str]:
    """The AM/PM dialect writes 'Mar 09, 2026' unquoted, so its comma splits the Time cell: rejoin it."""
    if len(cells) == width + 1 and re.fullmatch(r"\s*\d{4}\s*", cells[1]):
        return [f"{cells[0]},{cells[1]}", *cells[2:]]
    return cells


def _rows(text: str, ctx: Context) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with their 1-based line numbers."""
    out = []
    reader = csv.reader(io.StringIO(text))
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                out.append((reader.line_num, cells))
    except csv.Error as exc:
        raise ctx.error(f"malformed CSV ({exc})", f"line {reader.line_num}") from None
    return out


def _model_from_name(filename: str) -> str | None:
    """ViHealth names exports after the device ('O2Ring 0123_2026...csv'); use it when present."""
    name = Path(filename).name.lower()
    for key, model in (("o2ring", "O2Ring"), ("checkme", "Checkme O2 Max"), ("o2 max", "Checkme O2 Max")):
        if key in name:
            return model
    return None


# ---------------------------------------------------------------- O2Ring binary


def is_o2ring_bin(data: bytes) -> bool:
    """Version 3 header with a plausible date and whole 5-byte records."""
    if len(data) < BIN_HEADER or (len(data) - BIN_HEADER) % BIN_RECORD:
        return False
    version, year, month, day, hour, _minute, _second = struct.unpack_from("<HHBBBBB", data)
    return version == 3 and 2000 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31 and hour < 24


def parse_bin(data: bytes, ctx: Context) -> list[OximetryNight]:
    """40-byte header (u16 version 3, u16 year, month, day, hour, minute, second) + 5-byte records.

    Record: u8 SpO2, u16-LE pulse, u8 motion, u8 flag; SpO2 0xFF with pulse 0xFFFF = invalid.
    The header's night summary (the ring's average, lowest, drops, time below 90 %) becomes the record's
    `device_summary`.
    """
    patient_id = ctx.require_patient("o2ring_bin")
    if len(data) < BIN_HEADER:
        raise ctx.error(f"truncated: {len(data)} bytes, the header alone is {BIN_HEADER}")
    version, year, month, day, hour, minute, second = struct.unpack_from("<HHBBBBB", data)
    if version != 3:
        raise ctx.error(f"unsupported O2Ring file version {version} (expected 3)", "byte 0")
    try:
        start = datetime(year, month, day, hour, minute, second, tzinfo=ctx.tz)
    except ValueError:
        raise ctx.error("invalid start date/time in header", "byte 2") from None
    body = len(data) - BIN_HEADER
    if body % BIN_RECORD:
        partial = BIN_HEADER + body // BIN_RECORD * BIN_RECORD
        raise ctx.error(f"truncated record: {body} data bytes is not a multiple of {BIN_RECORD}", f"byte {partial}")
    count = body // BIN_RECORD
    if count == 0:
        raise ctx.error("no samples after the header")
    if count > MAX_SAMPLES:
        raise ctx.error(f"recording longer than {MAX_SAMPLES} samples")
    records = np.frombuffer(data, dtype=BIN_RECORD_DTYPE, offset=BIN_HEADER)
    spo2, pulse = records["spo2"].astype(np.float64), records["pulse"].astype(np.float64)
    clean_readings(spo2, pulse)  # the invalid record (0xFF, 0xFFFF) is outside both ranges: NaN too
    if np.isnan(spo2).all():
        raise ctx.error("no valid SpO2 samples")
    values = {
        "patient_id": patient_id,
        "start": start,
        "interval_s": BIN_INTERVAL_S,
        "spo2": spo2,
        "pulse": pulse,
        "motion": records["motion"].astype(np.float64),
        "source": "o2ring_bin",
        "device_model": "O2Ring",
        "device_summary": device_summary(data, ctx),
    }
    return [build(OximetryNight, values, ctx, None)]


SUMMARY = struct.Struct("<HHBBBBBHHHHBBBBBHBB")
"""The header's first 27 bytes: version, year, month, day, hour, minute, second, file size (low, high),
duration s (low, high), average SpO2, lowest SpO2, drops >= 3 %, drops >= 4 %, (unknown), seconds below
90 %, events below 90 %, O2 score x 10 (../shared/formats.md)."""


def device_summary(data: bytes, ctx: Context) -> DeviceSummary | None:
    """The ring's own figures for the night, as it wrote them (device-reported, shown beside ours).

    None when the ring wrote none (average 0: older firmware and our synthetic files) or figures that
    cannot be a night's (a lowest above the average, a saturation over 100 %): a noted skip, never a
    refused night, as the samples themselves are fine."""
    fields = SUMMARY.unpack_from(data)
    mean, lowest, drops3, drops4, t90_s = fields[11], fields[12], fields[13], fields[14], fields[16]
    if mean == 0:
        return None
    try:
        return DeviceSummary(mean_spo2=mean, min_spo2=lowest, drops3=drops3, drops4=drops4, t90_s=t90_s)
    except ValidationError:
        ctx.notes.add("O2Ring header: the device's night summary is implausible and was left out",
                      "implausible device summary")
        return None
