"""Whole-file readers' building blocks: a plain CSV body as one byte array, its cells found and read
with numpy instead of row by row (an 8 h night at 1 Hz is 28,800 rows).

Each helper returns None where the row-by-row reader would raise or read differently, so a fast
reader can step aside and leave errors, with their line numbers, to the row reader.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from ingest.parsers.common import MAX_SAMPLES, Context, infer_interval
from ingest.parsers.errors import ParseError


def plain_cells(text: str, header: str, columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The body under exactly `header` as bytes, with (start, width) of its cells (see `cell_bounds`);
    None for another header, quotes, CR, non-ASCII text, a row of another width or too many rows."""
    lines = plain_lines(text, header, columns)
    if lines is None:
        return None
    buf, line_start, line_end, commas = lines
    return buf, *_bounds(line_start, line_end, commas)


def plain_lines(text: str, header: str, columns: int, raw: bytes | memoryview | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """`plain_cells` before its (rows, columns) tables are built: the body's bytes, each line's start
    and end, and its `columns - 1` comma offsets (rows, columns - 1). A reader that needs a few cells
    takes them from here: on the VM, each fresh 100 kB of numpy temporaries costs ~40 us in page faults.
    `raw`, the bytes `text` was decoded from (less a BOM), saves encoding the text again."""
    body_at = len(header) + 1
    if not text.startswith(header + "\n") or not text.isascii():
        return None
    if text.find('"', body_at) >= 0 or text.find("\r", body_at) >= 0:
        return None
    size = len(text) - body_at - text.endswith("\n")  # the body without its last newline
    if size <= 0:
        return None
    if raw is None or len(raw) != len(text):  # ASCII text: its bytes, one per character
        raw = text.encode("ascii")  # the body is a view of these bytes
    buf = np.frombuffer(raw, dtype=np.uint8, offset=body_at, count=size)
    lines = line_commas(buf, columns)
    if lines is None or len(lines[0]) > MAX_SAMPLES:
        return None
    return buf, *lines


def gridded(seconds: np.ndarray, spo2: np.ndarray, pulse: np.ndarray, ctx: Context
            ) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The readings on their fixed-rate grid, as the row readers build them: the slots, and the
    `interval_s`, `spo2` and `pulse` values of the record (readings cleaned in place). None where a
    row reader would raise (irregular steps, no valid SpO2)."""
    try:
        interval = first_interval(seconds, ctx)
    except ParseError:
        return None
    slots = fixed_grid_slots(seconds, interval)
    clean_readings(spo2, pulse)
    if slots is None or np.isnan(spo2).all():
        return None
    size = int(slots[-1]) + 1
    return slots, {"interval_s": interval, "spo2": spread_array(spo2, slots, size),
                   "pulse": spread_array(pulse, slots, size)}


def first_interval(seconds: np.ndarray, ctx: Context) -> float:
    """`common.infer_interval` of the first 64 timestamps; when their steps are all equal (a night without
    a gap there) the answer is that step, found without its Python loop."""
    head = np.diff(seconds[:64])
    if head.size and (head == head[0]).all():
        step = round(float(head[0]), 3)
        if 0 < step <= 60:
            return step
    return infer_interval(seconds[:64].tolist(), ctx, range(2, 66))


def cell_bounds(buf: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, width) of every cell, shape (rows, columns); None unless every line has `columns` cells."""
    lines = line_commas(buf, columns)
    return None if lines is None else _bounds(*lines)


def line_commas(buf: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Each line's start and end offsets and its commas' (rows, columns - 1); None unless every line
    has `columns` cells (both searches share one mask: a fresh buffer-sized temporary is page faults)."""
    mask = np.equal(buf, 10)
    newlines = np.flatnonzero(mask)
    commas = np.flatnonzero(np.equal(buf, 44, out=mask))
    del mask
    rows = newlines.size + 1
    if commas.size != (columns - 1) * rows:
        return None
    line_start = np.empty(rows, dtype=np.int64)
    line_start[0], line_start[1:] = 0, newlines + 1
    line_end = np.append(newlines, buf.size)
    inner = commas.reshape(rows, columns - 1)
    # each line's own commas lie inside it; with the total right, every line has exactly columns - 1
    if (inner[:, 0] < line_start).any() or (inner[:, -1] >= line_end).any():
        return None
    return line_start, line_end, inner


def _bounds(line_start: np.ndarray, line_end: np.ndarray, commas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = np.column_stack((line_start, commas + 1))
    ends = np.column_stack((commas, line_end))
    return starts, ends - starts


def byte_windows(buf: np.ndarray, width: int) -> np.ndarray:
    """Every run of `width` bytes of `buf` as one item (a view, no copy): indexing it with cell starts
    copies whole cells at once, ~3x faster than a (rows, width) gather from a sliding window."""
    return np.ndarray((max(buf.size - width + 1, 0),), dtype=f"V{width}", buffer=buf, strides=(buf.strides[0],))


def small_integers(buf: np.ndarray, starts: np.ndarray, widths: np.ndarray, *, dashes: bool = False,
                   empty: bool = False) -> np.ndarray | None:
    """Cells of 1-3 ASCII digits as floats. `--` (with `dashes`) or an empty cell (with `empty`) is
    no reading: NaN. None if any other cell. Any shape of cells (a (3, rows) block reads 3 columns)."""
    return small_integers_ending(buf, starts + widths, widths, dashes=dashes, empty=empty)


def small_integers_ending(buf: np.ndarray, ends: np.ndarray, widths: np.ndarray, *, dashes: bool = False,
                          empty: bool = False) -> np.ndarray | None:
    """`small_integers` of the cells ending (exclusive) at `ends`: the units, tens and hundreds are the
    bytes just before each end, one 1-D gather each, then uint8 arithmetic (a digit a cell does not
    have is zeroed). Contiguous `ends` and `widths` are twice as fast as strided ones."""
    if widths.size and (widths.min() < (0 if empty else 1) or widths.max() > 3):
        return None
    at = np.empty_like(ends)
    units, tens, hundreds = (np.take(buf, np.subtract(ends, k, out=at), mode="clip") - np.uint8(48) for k in (1, 2, 3))
    missing = (widths == 0) if empty else np.zeros(widths.shape, dtype=bool)
    if dashes:
        missing |= (widths == 2) & (units == 253) & (tens == 253)  # '-' is 45 = 48 - 3, as uint8
    units *= ~missing
    tens *= (widths >= 2) & ~missing
    hundreds *= widths == 3
    if (np.maximum(np.maximum(units, tens), hundreds) > 9).any():
        return None
    values = (hundreds.astype(np.uint16) * 100 + tens * np.uint16(10) + units).astype(np.float64)
    values[missing] = np.nan
    return values


_ISO_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)  # of `YYYY-MM-DDTHH:MM:SS`
_ISO_SEPARATORS = {4: "-", 7: "-", 13: ":", 16: ":"}


def iso_wall_seconds(buf: np.ndarray, starts: np.ndarray, widths: np.ndarray) -> np.ndarray | None:
    """Seconds since the first cell, for `YYYY-MM-DDTHH:MM:SS` (or a space for the T) cells that all end
    alike (the same offset, `Z`, or none): wall-clock differences, as Python's own subtraction of
    those datetimes gives. None if any cell is otherwise, or not a real date and time."""
    width = int(widths[0])
    if width < 19 or (widths != width).any():
        return None
    chars = buf[starts[:, None] + np.arange(width)]
    if (chars[:, 19:] != chars[0, 19:]).any():
        return None
    digits = chars[:, _ISO_DIGITS].astype(np.int64) - 48
    if ((digits < 0) | (digits > 9)).any():
        return None
    if any((chars[:, i] != ord(c)).any() for i, c in _ISO_SEPARATORS.items()):
        return None
    if ((chars[:, 10] != ord("T")) & (chars[:, 10] != ord(" "))).any():
        return None
    hour, minute, second = (digits[:, i] * 10 + digits[:, i + 1] for i in (8, 10, 12))
    if (hour > 23).any() or (minute > 59).any() or (second > 59).any():
        return None
    days, which = np.unique(np.ascontiguousarray(chars[:, :10]).view("S10").ravel(), return_inverse=True)
    ordinals = []
    for day in days.tolist():
        try:  # checks the calendar, once per day
            ordinals.append(date.fromisoformat(day.decode()).toordinal())
        except ValueError:
            return None
    absolute = np.asarray(ordinals, dtype=np.int64)[which.ravel()] * 86400 + hour * 3600 + minute * 60 + second
    return (absolute - absolute[0]).astype(float)


def fixed_grid_slots(seconds: np.ndarray, interval: float, tolerance: float = 0.2) -> np.ndarray | None:
    """`common.grid_slots` on arrays; None where it would raise (the row parser then names the line)."""
    steps = np.diff(seconds)
    if seconds.size and (steps == interval).all():  # no gap at all: the row numbers
        return np.arange(seconds.size) if seconds.size <= MAX_SAMPLES else None
    whole = np.rint(steps / interval)
    if (steps <= 0).any() or (whole < 1).any() or (np.abs(steps - whole * interval) > tolerance * interval).any():
        return None
    slots = np.concatenate(([0], np.cumsum(whole, dtype=np.int64)))
    return slots if slots[-1] < MAX_SAMPLES else None


def spread_array(values: np.ndarray, slots: np.ndarray, size: int) -> np.ndarray:
    """`common.spread` on arrays: values on their grid slots, NaN (no reading) elsewhere. The array goes
    into the record as it is (`schemas.samples`): no list of floats is built."""
    grid = np.full(size, np.nan)
    grid[slots] = values
    return grid


def clean_readings(spo2: np.ndarray, pulse: np.ndarray) -> None:
    """`common.clean_spo2` and `clean_pulse` in place: no-reading codes and impossible values are NaN."""
    spo2[~((spo2 > 0) & (spo2 <= 100))] = np.nan
    pulse[~((pulse > 0) & (pulse <= 250))] = np.nan
