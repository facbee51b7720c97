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
    head, _, body = text.partition("\n")
    body = body.removesuffix("\n")
    if head != header or not body or not body.isascii() or '"' in body or "\r" in body:
        return None
    buf = np.frombuffer(body.encode("ascii"), dtype=np.uint8)
    cells = cell_bounds(buf, columns)
    if cells is None or len(cells[0]) > MAX_SAMPLES:
        return None
    return buf, *cells


def gridded(seconds: np.ndarray, spo2: np.ndarray, pulse: np.ndarray, ctx: Context
            ) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The readings on their fixed-rate grid, as the row readers build them: the slots, and the
    `interval_s`, `spo2` and `pulse` values of the record (readings cleaned in place). None where a
    row reader would raise (irregular steps, no valid SpO2)."""
    try:
        interval = infer_interval(seconds[:64].tolist(), ctx, range(2, 66))
    except ParseError:
        return None
    slots = fixed_grid_slots(seconds, interval)
    clean_readings(spo2, pulse)
    if slots is None or np.isnan(spo2).all():
        return None
    size = int(slots[-1]) + 1
    return slots, {"interval_s": interval, "spo2": spread_array(spo2, slots, size),
                   "pulse": spread_array(pulse, slots, size)}


def cell_bounds(buf: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, width) of every cell, shape (rows, columns); None unless every line has `columns` cells."""
    newlines = np.flatnonzero(buf == 10)
    commas = np.flatnonzero(buf == 44)
    rows = newlines.size + 1
    if commas.size != (columns - 1) * rows:
        return None
    line_start = np.concatenate(([0], newlines + 1))
    line_end = np.append(newlines, buf.size)
    inner = commas.reshape(rows, columns - 1)
    # each line's own commas lie inside it; with the total right, every line has exactly columns - 1
    if (inner[:, 0] < line_start).any() or (inner[:, -1] >= line_end).any():
        return None
    starts = np.column_stack((line_start, inner + 1))
    ends = np.column_stack((inner, line_end))
    return starts, ends - starts


def small_integers(buf: np.ndarray, starts: np.ndarray, widths: np.ndarray, *, dashes: bool = False,
                   empty: bool = False) -> np.ndarray | None:
    """Cells of 1-3 ASCII digits as floats. `--` (with `dashes`) or an empty cell (with `empty`) is
    no reading: NaN. None if any other cell. One gather per character position, in int16 (the whole
    night's cells at once; a 2-D gather in int64 was a third of ingest's parse time)."""
    if ((widths < (0 if empty else 1)) | (widths > 3)).any():
        return None
    last = buf.size - 1
    d0, d1, d2 = (buf[np.minimum(starts + k, last)].astype(np.int16) - 48 for k in range(3))
    missing = (widths == 0) if empty else np.zeros(widths.shape, dtype=bool)
    if dashes:
        missing |= (widths == 2) & (d0 == -3) & (d1 == -3)  # '-' is 45 = 48 - 3
    present = ~missing
    for k, digit in enumerate((d0, d1, d2)):
        used = present & (widths > k)
        if ((digit[used] < 0) | (digit[used] > 9)).any():
            return None
    values = np.where(widths == 1, d0, np.where(widths == 2, d0 * 10 + d1, d0 * 100 + d1 * 10 + d2)).astype(float)
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
