"""Wellue/Viatom oximeters: O2Ring and Checkme CSV exports and the O2Ring binary (synthetic, known values)."""

from __future__ import annotations

import struct
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_testlib import ROW_BREAKS, SYN, as_lists, break_row

from ingest.parsers import ParseError, detect_format, parse_bytes
from schemas import OximetryNight

PID = "ALS-001"
PARIS = ZoneInfo("Europe/Paris")
O2RING_CSV = SYN / "O2Ring_20260308223000.csv"
CHECKME_CSV = SYN / "Checkme_O2_Max_20260309230000.csv"
AMPM_CSV = SYN / "O2Ring_ampm_20260309.csv"
O2RING_BIN = SYN / "O2Ring_20260310223000.bin"
HEADER = "Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder"


def _one(data: bytes, name: str = "night.csv", **kw: object) -> OximetryNight:
    (night,) = parse_bytes(data, name, patient_id=PID, tz="Europe/Paris", **kw)
    assert isinstance(night, OximetryNight)
    return night


def _csv(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def _valid(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def test_o2ring_8h_night_across_midnight() -> None:
    night = _one(O2RING_CSV.read_bytes(), O2RING_CSV.name)
    assert night.interval_s == 4.0  # inferred from the timestamps
    assert night.start == datetime(2026, 3, 8, 22, 30, tzinfo=PARIS)
    assert night.duration_s == 8 * 3600
    assert min(_valid(night.spo2)) == 83  # the synthetic nadir
    assert night.spo2.count(None) == 25  # 10 rows of '--' at 01:50 and 15 at the end (finger off)
    assert night.spo2[3000:3010] == [None] * 10 and night.pulse[-1] is None
    assert 55 <= min(_valid(night.pulse)) and max(_valid(night.pulse)) <= 75
    assert night.motion is not None and len(night.motion) == 7200
    assert night.device_model == "O2Ring" and night.source == "wellue_csv"


def test_checkme_2s() -> None:
    night = _one(CHECKME_CSV.read_bytes(), CHECKME_CSV.name)
    assert night.interval_s == 2.0 and night.duration_s == 2 * 3600
    assert min(_valid(night.spo2)) == 86 and None not in night.spo2
    assert night.device_model == "Checkme O2 Max"


def test_ampm_dialect_quoted_and_unquoted() -> None:
    night = _one(AMPM_CSV.read_bytes(), AMPM_CSV.name)
    assert night.start == datetime(2026, 3, 9, 23, 50, tzinfo=PARIS)
    assert night.interval_s == 4.0 and len(night.spo2) == 450  # crosses midnight (12:xx AM next day)
    unquoted = AMPM_CSV.read_bytes().replace(b'"', b"")
    assert _one(unquoted, AMPM_CSV.name) == night


def test_no_reading_codes_become_none() -> None:
    data = _csv(
        "00:00:00 Mar 09 2026,0,60,0,0,0",
        "00:00:04 Mar 09 2026,127,255,0,0,0",
        "00:00:08 Mar 09 2026,255,61,0,0,0",
        "00:00:12 Mar 09 2026,93,62,0,0,0",
    )
    night = _one(data)
    assert night.spo2 == [None, None, None, 93.0]
    assert night.pulse == [60.0, None, 61.0, 62.0]


def test_missing_rows_become_gaps() -> None:
    night = _one(_csv("00:00:00 Mar 09 2026,95,60,0,0,0", "00:00:04 Mar 09 2026,95,60,0,0,0",
                      "00:00:16 Mar 09 2026,94,60,0,0,0"))  # fmt: skip
    assert night.spo2 == [95, 95, None, None, 94]
    assert night.motion is None  # cannot invent motion for the missing rows


def test_all_invalid_is_an_error() -> None:
    data = _csv("00:00:00 Mar 09 2026,--,--,0,0,0", "00:00:04 Mar 09 2026,0,0,0,0,0")
    with pytest.raises(ParseError, match=r"^night\.csv: no valid SpO2 samples$"):
        _one(data)


def test_timestamps_going_backwards() -> None:
    data = _csv("23:59:56 Mar 08 2026,95,60,0,0,0", "00:00:00 Mar 09 2026,95,60,0,0,0",
                "00:00:04 Mar 09 2026,95,60,0,0,0", "00:00:00 Mar 09 2026,95,60,0,0,0")  # fmt: skip
    with pytest.raises(ParseError, match=r"^night\.csv: line 5: timestamp goes backwards"):
        _one(data)


def test_non_numeric_cell() -> None:
    data = _csv("00:00:00 Mar 09 2026,95,60,0,0,0", "00:00:04 Mar 09 2026,9x5,60,0,0,0")
    with pytest.raises(ParseError, match=r"^night\.csv: line 3: column Oxygen Level: not a number$"):
        _one(data)


def test_wrong_header() -> None:
    with pytest.raises(ParseError, match=r"line 1: wrong header"):
        _one(b"Zeit,Sauerstoff,Puls\n00:00:00 Mar 09 2026,95,60\n", fmt="o2ring_csv")


def test_bad_timestamp() -> None:
    with pytest.raises(ParseError, match=r"line 2: column Time: unrecognised timestamp"):
        _one(_csv("2026-03-09 00:00:00,95,60,0,0,0", "2026-03-09 00:00:04,95,60,0,0,0"))


def test_patient_id_required() -> None:
    with pytest.raises(ParseError, match="patient id required for o2ring_csv"):
        parse_bytes(CHECKME_CSV.read_bytes(), CHECKME_CSV.name)


def test_o2ring_binary() -> None:
    assert detect_format(O2RING_BIN.name, O2RING_BIN.read_bytes()) == "o2ring_bin"
    night = _one(O2RING_BIN.read_bytes(), O2RING_BIN.name)
    assert night.start == datetime(2026, 3, 10, 22, 30, tzinfo=PARIS)
    assert night.interval_s == 4.0 and night.duration_s == 6 * 3600
    assert min(_valid(night.spo2)) == 85
    assert night.spo2[-10:] == [None] * 10 and night.pulse[-10:] == [None] * 10  # 0xFF / 0xFFFF records
    assert night.motion is not None and night.source == "o2ring_bin"


def test_o2ring_binary_errors() -> None:
    raw = O2RING_BIN.read_bytes()
    with pytest.raises(ParseError, match=r"^ring\.bin: byte 27035: truncated record"):
        _one(raw[:-2], "ring.bin", fmt="o2ring_bin")
    with pytest.raises(ParseError, match=r"byte 0: unsupported O2Ring file version 4"):
        _one(struct.pack("<H", 4) + raw[2:], "ring.bin", fmt="o2ring_bin")
    with pytest.raises(ParseError, match="truncated: 12 bytes"):
        _one(raw[:12], "ring.bin", fmt="o2ring_bin")
    invalid_only = raw[:40] + struct.pack("<BHBB", 0xFF, 0xFFFF, 0, 0) * 3
    with pytest.raises(ParseError, match="no valid SpO2 samples"):
        _one(invalid_only, "ring.bin")


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)))
def test_fast_timestamp_path_agrees_with_strptime(moment: datetime) -> None:
    from ingest.parsers.wellue import _fast_standard

    text = moment.replace(microsecond=0).strftime("%H:%M:%S %b %d %Y")
    assert _fast_standard(text) == datetime.strptime(text, "%H:%M:%S %b %d %Y")


def test_fast_timestamp_path_leaves_odd_text_to_strptime() -> None:
    from ingest.parsers.wellue import _fast_standard

    for odd in ("00:21:19 Foo 09 2026", "00:21:19 Feb 30 2026", "0a:21:19 Mar 09 2026", "00:21:19 Mar 09 2026 "):
        assert _fast_standard(odd) is None


# --------------------------------------------------------------- whole-file reader of the O2Ring dialect

CELL = st.one_of(st.integers(0, 300).map(str), st.just("--"))
ODD_DATE = ["Foo 09 2026", "Feb 30 2026", "Mar 0x 2026", "Mar  9 2026", "mar 09 2026", "Mar 09 2026 ",
            "Mar 09-2026", "Mar 09 2O26"]
ODD_CELL = st.sampled_from(["9x", "", " 95", "95.5", "1e2", "+95", "\"95\"", "1000", "٩٥"])


@st.composite
def o2ring_files(draw: st.DrawFn) -> str:
    """O2Ring-dialect text with gaps, no-reading cells, out-of-range codes and, sometimes, one odd row."""
    start = draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31))).replace(microsecond=0)
    if draw(st.booleans()):  # across midnight (and sometimes a month or year end)
        start = start.replace(hour=23, minute=59)
    interval = draw(st.sampled_from([1, 2, 4]))
    moment, rows = start, []
    for _ in range(draw(st.integers(2, 80))):
        cells = [draw(CELL), draw(CELL), draw(CELL)]
        rows.append(f"{moment:%H:%M:%S %b %d %Y},{cells[0]},{cells[1]},{cells[2]},0,0")
        moment += timedelta(seconds=interval * draw(st.sampled_from([1, 1, 1, 2, 5])))
    if draw(st.booleans()):  # one row the fast reader must leave to the row parser
        at = draw(st.integers(0, len(rows) - 1))
        kind = draw(st.sampled_from(["cell", "date", *ROW_BREAKS]))
        if kind == "date":  # the date part is read once per day by the fast reader: break it on one row
            rows[at] = rows[at][:9] + draw(st.sampled_from(ODD_DATE)) + rows[at][20:]
        elif kind == "cell":
            rows[at] = rows[at].replace(",", f",{draw(ODD_CELL)},", 1).replace(",,", ",", 1)
        else:
            break_row(rows, at, kind)
    return "\n".join([HEADER, *rows]) + draw(st.sampled_from(["\n", ""]))


@settings(max_examples=400, deadline=None)
@given(o2ring_files())
def test_whole_file_reader_agrees_with_the_row_parser(text: str) -> None:
    """The vectorised reader gives exactly what the row-by-row reference gives, or steps aside (None)."""
    from ingest.parsers.common import Context
    from ingest.parsers.wellue import _read_rows, _read_standard

    ctx = Context("night.csv", PID)
    fast = _read_standard(text, ctx)
    try:
        reference = _read_rows(text, ctx)
    except ParseError:
        assert fast is None  # errors are always the row parser's, with their line numbers
        return
    if fast is not None:
        assert as_lists(fast) == reference


def test_whole_file_reader_takes_the_common_export() -> None:
    """The O2Ring export the devices send really goes the fast way (and means the same)."""
    from ingest.parsers.common import Context
    from ingest.parsers.wellue import _read_rows, _read_standard

    text = O2RING_CSV.read_text()
    ctx = Context(O2RING_CSV.name, PID)
    fast = _read_standard(text, ctx)
    assert fast is not None and as_lists(fast) == _read_rows(text, ctx)


@pytest.mark.parametrize("motion", ["99999", "300"])  # row reader and whole-file reader
def test_corrupt_motion_drops_the_motion_trace_not_the_night(motion: str) -> None:
    night = _one(_csv("22:30:00 Mar 08 2026,94,64,0,0,0", f"22:30:04 Mar 08 2026,95,66,{motion},0,0",
                      "22:30:08 Mar 08 2026,95,66,1,0,0"))
    assert night.motion is None and night.spo2 == [94, 95, 95]  # a motion the store cannot encode was kept


@pytest.mark.parametrize(("year", "tz"), [("0001", "Pacific/Kiritimati"), ("9999", "Etc/GMT+12")])
def test_night_dated_year_1_or_9999_is_a_parse_error(year: str, tz: str) -> None:
    day = "Jan 01" if year == "0001" else "Dec 31"
    rows = [f"23:59:{s:02d} {day} {year},95,60,0,0,0" for s in range(0, 12, 4)]
    with pytest.raises(ParseError, match=r"^night\.csv: field start: Value error, date/time must be in the years"):
        parse_bytes(_csv(*rows), "night.csv", patient_id=PID, tz=tz)
