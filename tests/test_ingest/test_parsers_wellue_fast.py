"""The vectorised Wellue readers against their references: the O2Ring binary against the per-record
struct loop it replaced, the CSV fast path (as `parse_csv` calls it, on the upload's own bytes)
against the row reader, and the shared column helpers against the implementations they replaced."""

from __future__ import annotations

import codecs
import struct
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_testlib import SYN, as_lists
from test_parsers_wellue import HEADER, PID, o2ring_files

from ingest.parsers import ParseError, parse_bytes
from ingest.parsers.columns import (
    first_interval,
    fixed_grid_slots,
    plain_cells,
    small_integers,
    small_integers_ending,
)
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
)
from ingest.parsers.wellue import (
    BIN_HEADER,
    BIN_INTERVAL_S,
    BIN_RECORD,
    BIN_RECORD_DTYPE,
    MAX_DAYS,
    _read_rows,
    _read_standard,
    device_summary,
    parse_bin,
    parse_csv,
)
from schemas import OximetryNight

O2RING_CSV = SYN / "O2Ring_20260308223000.csv"
O2RING_BIN = SYN / "O2Ring_20260310223000.bin"


# ---------------------------------------------------------------- O2Ring binary


def _parse_bin_reference(data: bytes, ctx: Context) -> list[OximetryNight]:
    """`parse_bin` as it was: one struct call and two Python cleaners per record."""
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
    spo2: list[float | None] = []
    pulse: list[float | None] = []
    motion: list[int] = []
    for raw_spo2, raw_pulse, raw_motion, _flag in struct.iter_unpack("<BHBB", data[BIN_HEADER:]):
        invalid = raw_spo2 == 0xFF and raw_pulse == 0xFFFF
        spo2.append(None if invalid else clean_spo2(raw_spo2))
        pulse.append(None if invalid else clean_pulse(raw_pulse))
        motion.append(raw_motion)
    require_valid_spo2(spo2, ctx)
    values = {"patient_id": patient_id, "start": start, "interval_s": BIN_INTERVAL_S, "spo2": spo2, "pulse": pulse,
              "motion": motion, "source": "o2ring_bin", "device_model": "O2Ring",
              "device_summary": device_summary(data, ctx)}
    return [build(OximetryNight, values, ctx, None)]


def _outcome(parser: Any, data: bytes) -> tuple[Any, ...]:
    """A parser's records (as JSON-ready dicts, series as lists) and notes, or its error text."""
    ctx = Context("ring.bin", PID)
    try:
        records = parser(data, ctx)
    except ParseError as exc:
        return ("error", str(exc))
    return ("ok", [r.model_dump(mode="json") for r in records], records, ctx.notes.text)


def _assert_same_bin(data: bytes) -> None:
    new, old = _outcome(parse_bin, data), _outcome(_parse_bin_reference, data)
    assert new[:2] == old[:2]
    if new[0] == "ok":
        assert new[2] == old[2] and new[3] == old[3]
        for night in new[2]:
            assert night.motion is not None and night.motion.integral


def test_record_layout_is_five_packed_bytes() -> None:
    assert BIN_RECORD_DTYPE.itemsize == BIN_RECORD


def test_binary_sample_night_is_unchanged() -> None:
    _assert_same_bin(O2RING_BIN.read_bytes())


RECORD = st.tuples(st.sampled_from([0, 1, 50, 89, 99, 100, 101, 127, 254, 255]) | st.integers(0, 255),
                   st.sampled_from([0, 1, 60, 250, 251, 255, 511, 0xFFFE, 0xFFFF]) | st.integers(0, 0xFFFF),
                   st.integers(0, 255), st.integers(0, 255))


@settings(max_examples=300, deadline=None)
@given(st.lists(RECORD, min_size=0, max_size=60), st.integers(0, 4), st.sampled_from([0, 3, 4]),
       st.sampled_from([(94, 87), (0, 0), (80, 95), (101, 90)]))
def test_binary_agrees_with_the_record_loop(records: list[tuple[int, int, int, int]], cut: int, version: int,
                                            summary: tuple[int, int]) -> None:
    """Invalid records (0xFF, 0xFFFF), no-reading codes, every motion and flag byte, truncated bodies, other
    versions, implausible summaries: same records, notes and errors as the loop."""
    head = bytearray(struct.pack("<HHBBBBB", version or 3, 2026, 3, 10, 22, 30, 0).ljust(BIN_HEADER, b"\0"))
    head[17], head[18] = summary
    if version:
        struct.pack_into("<H", head, 0, version)
    data = bytes(head) + b"".join(struct.pack("<BHBB", *r) for r in records)
    _assert_same_bin(data[: len(data) - cut] if cut and records else data)


def test_binary_header_errors_are_unchanged() -> None:
    raw = O2RING_BIN.read_bytes()
    for data in (raw[:12], raw[:40], struct.pack("<HH", 3, 2026) + bytes([2, 30]) + raw[6:],
                 raw[:40] + struct.pack("<BHBB", 0xFF, 0xFFFF, 0, 0) * 3):
        _assert_same_bin(data)


# ---------------------------------------------------------------- O2Ring CSV, as parse_csv reads it


def _reference_csv(data: bytes, ctx: Context) -> OximetryNight:
    """The row reader alone: what `parse_csv` must give for any file."""
    values = _read_rows(decode_text(data, ctx), ctx)
    values |= {"patient_id": PID, "source": "wellue_csv", "device_model": None}
    return build(OximetryNight, values, ctx, None)


def _assert_same_csv(data: bytes) -> None:
    ctx, ref_ctx = Context("night.csv", PID), Context("night.csv", PID)
    try:
        reference: Any = _reference_csv(data, ref_ctx)
    except ParseError as exc:
        reference = str(exc)
    try:
        (night,) = parse_csv(data, ctx)
    except ParseError as exc:
        assert str(exc) == reference
        return
    assert night == reference
    assert night.model_dump(mode="json") == reference.model_dump(mode="json")
    assert ctx.notes.text == ref_ctx.notes.text


@settings(max_examples=300, deadline=None)
@given(o2ring_files(), st.booleans())
def test_parse_csv_on_the_uploaded_bytes_agrees_with_the_row_reader(text: str, bom: bool) -> None:
    """`parse_csv` reads the upload's bytes in place (less a BOM): records and errors as the row reader."""
    _assert_same_csv((codecs.BOM_UTF8 if bom else b"") + text.encode())


def test_o2ring_sample_night_goes_the_fast_way_from_its_bytes() -> None:
    data = O2RING_CSV.read_bytes()
    for raw in (data, codecs.BOM_UTF8 + data):
        ctx = Context(O2RING_CSV.name, PID)
        text = decode_text(raw, ctx)
        fast = _read_standard(text, ctx, memoryview(raw)[len(raw) - len(data):])
        assert fast is not None and as_lists(fast) == _read_rows(text, ctx)
        _assert_same_csv(raw)
    (night,) = parse_bytes(data, O2RING_CSV.name, patient_id=PID)
    assert isinstance(night, OximetryNight)
    assert night.motion is not None and night.motion.integral and len(night.motion) == 7200


def _rows(start: datetime, count: int, step_s: int) -> list[str]:
    return [f"{start + timedelta(seconds=i * step_s):%H:%M:%S %b %d %Y},95,60,{i % 4},0,0" for i in range(count)]


@pytest.mark.parametrize(("start", "count", "step_s"), [
    (datetime(2026, 12, 31, 23, 59, 40), 20, 4),  # across a year end
    (datetime(2028, 2, 28, 23, 59, 50), 30, 1),  # into a leap day
    (datetime(2026, 3, 8, 22, 0), 40_000, 4),  # 44 h: two date changes, past the cached time form
    (datetime(2026, 3, 1, 0, 0), 2 * MAX_DAYS, 60),  # no gap in 32 minutes
])
def test_dates_and_long_nights(start: datetime, count: int, step_s: int) -> None:
    text = "\n".join([HEADER, *_rows(start, count, step_s)]) + "\n"
    ctx = Context("night.csv", PID)
    fast = _read_standard(text, ctx)
    assert fast is not None and as_lists(fast) == _read_rows(text, ctx)
    _assert_same_csv(text.encode())


def test_many_dates_leave_the_file_to_the_row_reader() -> None:
    """More date changes than the fast reader checks one by one: the row reader decides (here: refuses)."""
    day = datetime(2026, 3, 1, 23, 59, 58)
    rows = [row for d in range(MAX_DAYS + 1) for row in _rows(day + timedelta(days=d), 2, 4)]
    text = "\n".join([HEADER, *rows]) + "\n"
    assert _read_standard(text, Context("night.csv", PID)) is None
    with pytest.raises(ParseError, match=r"^night\.csv: line 22: recording longer than"):  # days apart at 4 s
        parse_bytes(text.encode(), "night.csv", fmt="o2ring_csv", patient_id=PID)
    _assert_same_csv(text.encode())


@pytest.mark.parametrize("cell", ["24:00:00 Mar 09 2026", "29:59:59 Mar 09 2026", "23:60:00 Mar 09 2026",
                                  "23:59:60 Mar 09 2026", "30:00:00 Mar 09 2026", "23:59:59 Mar 09 0000",
                                  "23:59:59 Mar 32 2026", "23:59:59 Xyz 09 2026", "23:59:59\tMar 09 2026"])
def test_impossible_times_are_the_row_readers(cell: str) -> None:
    rows = _rows(datetime(2026, 3, 9, 23, 59, 0), 3, 4)
    rows[1] = cell + rows[1][20:]
    text = "\n".join([HEADER, *rows]) + "\n"
    assert _read_standard(text, Context("night.csv", PID)) is None
    _assert_same_csv(text.encode())


# ---------------------------------------------------------------- shared column helpers


def _small_integers_reference(buf: np.ndarray, starts: np.ndarray, widths: np.ndarray, *, dashes: bool = False,
                              empty: bool = False) -> np.ndarray | None:
    """`columns.small_integers` as it was."""
    if ((widths < (0 if empty else 1)) | (widths > 3)).any():
        return None
    last = buf.size - 1
    d0, d1, d2 = (buf[np.minimum(starts + k, last)].astype(np.int16) - 48 for k in range(3))
    missing = (widths == 0) if empty else np.zeros(widths.shape, dtype=bool)
    if dashes:
        missing |= (widths == 2) & (d0 == -3) & (d1 == -3)
    present = ~missing
    for k, digit in enumerate((d0, d1, d2)):
        used = present & (widths > k)
        if ((digit[used] < 0) | (digit[used] > 9)).any():
            return None
    values = np.where(widths == 1, d0, np.where(widths == 2, d0 * 10 + d1, d0 * 100 + d1 * 10 + d2)).astype(float)
    values[missing] = np.nan
    return values


NUMBER_CELL = st.one_of(st.integers(0, 999).map(str), st.sampled_from(["--", "", "-", "-1", "9-", "1000", "0x",
                                                                      " 9", "/0", ":9", "99a", "---", "07"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(NUMBER_CELL, NUMBER_CELL), min_size=1, max_size=30), st.booleans(), st.booleans())
def test_small_integers_agree_with_the_previous_implementation(rows: list[tuple[str, str]], dashes: bool,
                                                               empty: bool) -> None:
    """Both numeric cells of `t,a,b` lines, every mix of widths, digits, dashes and junk (the first
    line's second cell can be at the very start of the buffer's tail: the clipped gathers)."""
    text = "t,a,b\n" + "\n".join(f"{i},{a},{b}" for i, (a, b) in enumerate(rows))
    cells = plain_cells(text, "t,a,b", columns=3)
    assert cells is not None
    buf, starts, widths = cells
    for k in (1, 2):
        new = small_integers(buf, starts[:, k], widths[:, k], dashes=dashes, empty=empty)
        old = _small_integers_reference(buf, starts[:, k], widths[:, k], dashes=dashes, empty=empty)
        assert (new is None) == (old is None)
        if new is not None and old is not None:
            assert new.dtype == old.dtype and np.array_equal(new, old, equal_nan=True)
    block = small_integers_ending(buf, (starts + widths)[:, 1:].T.copy(), widths[:, 1:].T.copy(), dashes=dashes,
                                  empty=empty)
    columns = [small_integers(buf, starts[:, k], widths[:, k], dashes=dashes, empty=empty) for k in (1, 2)]
    if block is None:
        assert any(c is None for c in columns)
    else:
        assert all(c is not None and np.array_equal(b, c, equal_nan=True) for b, c in zip(block, columns, strict=True))


def _grid_outcome(seconds: list[float]) -> tuple[Any, ...]:
    ctx = Context("x.csv", PID)
    lines = list(range(2, len(seconds) + 2))
    try:
        interval = infer_interval(seconds[:64], ctx, lines)
    except ParseError:
        return ("error",)
    try:
        slots = grid_slots(seconds, interval, ctx, lines)
    except ParseError:
        return (interval, None)
    return (interval, slots)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([1, 1, 1, 1, 2, 3, 0, -1, 0.5, 4.2, 61, 0.0004, 1.0004]), min_size=0, max_size=90),
       st.sampled_from([1, 2, 4, 0.5, 61, 1 / 3]), st.integers(0, 2))
def test_interval_and_grid_agree_with_the_row_readers(multiples: list[float], step: float, base: int) -> None:
    """`first_interval` and `fixed_grid_slots` against `infer_interval` and `grid_slots`: equal steps
    (the fast paths), gaps, repeats, steps back, odd and tiny steps, too long an interval."""
    seconds = np.concatenate(([float(base)], base + np.cumsum(np.asarray(multiples, dtype=float) * step)))
    reference = _grid_outcome(seconds.tolist())
    ctx = Context("x.csv", PID)
    try:
        interval = first_interval(seconds, ctx)
    except ParseError:
        assert reference == ("error",)
        return
    assert reference[0] == interval
    slots = fixed_grid_slots(seconds, interval)
    assert (slots is None) == (reference[1] is None)
    if slots is not None:
        assert slots.dtype == np.int64 and slots.tolist() == reference[1]
