"""Our CSV layouts: spirometry, NIV nights and generic `timestamp,spo2,pulse` oximetry."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_testlib import ROW_BREAKS, SYN, as_lists, break_row

from ingest.parsers import ParseError, parse_bytes
from schemas import NivNight, OximetryNight, SpirometrySession

SPIRO = (SYN / "spirometry.csv").read_bytes()
NIV = (SYN / "niv.csv").read_bytes()
OXI = (SYN / "oximetry_generic.csv").read_bytes()
SPIRO_HEADER = "patient_id,taken_at,fvc_l,mip_cmh2o,posture"


def test_spirometry_sessions() -> None:
    sessions = parse_bytes(SPIRO, "spirometry.csv")
    assert all(isinstance(s, SpirometrySession) for s in sessions) and len(sessions) == 4
    first, _, supine, last = sessions
    assert first.fvc_l == 3.20 and first.fvc_pct_pred == 78 and first.grade == "A"
    assert first.mip_cmh2o == 62  # written as -62 cmH2O: stored as magnitude
    assert last.mip_cmh2o == 48  # written as a magnitude
    assert supine.posture == "supine" and supine.fvc_l == 2.40 and supine.fev1_l is None
    assert last.posture == "sitting" and last.sex is None  # empty cells = not measured
    assert first.taken_at == datetime(2026, 1, 5, 10, 15, tzinfo=timezone(timedelta(hours=1)))
    assert [s.fvc_l for s in sessions if s.posture == "sitting"] == [3.20, 2.95, 2.61]  # declining FVC


def test_spirometry_minimal_columns_and_naive_time() -> None:
    (session,) = parse_bytes(b"patient_id,taken_at\nP9,2026-03-01T09:00:00\n", "s.csv", tz="America/New_York")
    assert session.fvc_l is None and session.taken_at.utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("P1,2026-03-01T09:00:00Z,abc,40,sitting", r"^s\.csv: line 2: column fvc_l: not a number$"),
        ("P1,2026-03-01T09:00:00Z,12.5,40,sitting", r"line 2: column fvc_l: Input should be less than or equal to 10"),
        ("P1,yesterday,2.5,40,sitting", r"line 2: column taken_at: not an ISO 8601 date-time"),
        ("P1,2026-03-01T09:00:00Z,2.5,40,lying", r"line 2: column posture: Input should be 'sitting' or 'supine'"),
        ("P1,2026-03-01T09:00:00Z,2.5", r"line 2: expected 5 columns, found 3"),
    ],
)
def test_spirometry_errors_name_line_and_column(row: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_bytes(f"{SPIRO_HEADER}\n{row}\n".encode(), "s.csv")


def test_spirometry_header_errors() -> None:
    with pytest.raises(ParseError, match=r"line 1: wrong header: unknown column 'fvc'"):
        parse_bytes(b"patient_id,taken_at,fvc\nP1,2026-03-01T09:00:00Z,2\n", "s.csv", fmt="spirometry_csv")
    with pytest.raises(ParseError, match=r"line 1: wrong header: required column 'taken_at' missing"):
        parse_bytes(b"patient_id,fvc_l\nP1,2\n", "s.csv", fmt="spirometry_csv")


def test_patient_mismatch_is_refused() -> None:
    with pytest.raises(ParseError, match="line 2: patient id in file does not match"):
        parse_bytes(SPIRO, "spirometry.csv", patient_id="ALS-999")


def test_niv_nights() -> None:
    nights = parse_bytes(NIV, "niv.csv")
    assert all(isinstance(n, NivNight) for n in nights) and len(nights) == 4
    assert nights[2].night_date == date(2026, 3, 3) and nights[2].leak_p95_lpm == 31.0 and nights[2].ahi == 9.5
    assert nights[2].spo2_mean is None
    assert nights[3].usage_hours == 0  # a night without use is data, not an error
    assert nights[0].pct_spont_triggered == 88 and nights[0].tidal_volume_ml == 420


def test_niv_errors() -> None:
    header = NIV.splitlines()[0].decode()
    with pytest.raises(ParseError, match=r"line 2: column usage_hours: Input should be less than or equal to 24"):
        parse_bytes(f"{header}\nP1,2026-03-01,25,,,,,,,,\n".encode(), "n.csv")
    with pytest.raises(ParseError, match=r"line 2: column night_date: not an ISO 8601 date"):
        parse_bytes(f"{header}\nP1,01/03/2026,5,,,,,,,,\n".encode(), "n.csv")
    with pytest.raises(ParseError, match=r"line 2: column ahi: not a number"):
        parse_bytes(f"{header}\nP1,2026-03-01,5,,high,,,,,,\n".encode(), "n.csv")


def test_generic_oximetry() -> None:
    (night,) = parse_bytes(OXI, "oxi.csv", patient_id="ALS-001")
    assert isinstance(night, OximetryNight)
    assert night.interval_s == 1.0 and night.duration_s == 1800
    assert night.start == datetime(2026, 3, 11, 23, 30, tzinfo=timezone(timedelta(hours=1)))  # offset kept
    assert night.spo2[900] is None and min(v for v in night.spo2 if v is not None) == 94


def test_generic_oximetry_any_fixed_rate_and_gaps() -> None:
    rows = [f"2026-03-11T23:30:{s:02d}.500,{95},{60}" for s in (0, 5, 10, 20)]
    (night,) = parse_bytes(("timestamp,spo2,pulse\n" + "\n".join(rows)).encode(), "o.csv", patient_id="P1")
    assert night.interval_s == 5.0 and night.spo2 == [95, 95, 95, None, 95]


def test_generic_oximetry_irregular_spacing() -> None:
    rows = ["2026-03-11T23:30:00Z,95,60", "2026-03-11T23:30:04Z,95,60", "2026-03-11T23:30:08Z,95,60",
            "2026-03-11T23:30:14Z,95,60"]  # fmt: skip
    with pytest.raises(ParseError, match=r"^o\.csv: line 5: irregular sample spacing \(6 s, expected 4 s\)$"):
        parse_bytes(("timestamp,spo2,pulse\n" + "\n".join(rows)).encode(), "o.csv", patient_id="P1")


def test_generic_oximetry_requires_patient() -> None:
    with pytest.raises(ParseError, match="patient id required for oximetry_csv"):
        parse_bytes(OXI, "oxi.csv")


# --------------------------------------------------------------- whole-file reader of the plain oximetry CSV

OXI_CELL = st.one_of(st.integers(0, 300).map(str), st.just(""))
ODD_OXI_CELL = st.sampled_from(["9x", " 95", "95.5", "1e2", "+95", "\"95\"", "1000", "٩٥", "--", "nan"])
ODD_TIME = ["2026-02-30T01:00:00", "2026-13-01T01:00:00", "2026-03-1xT01:00:00", "2026-03-11T24:00:00",
            "2026-03-11T23:60:00", "2026-03-11X23:00:00", "20260311T230000", "2026-03-11T23:00:00.5"]


@st.composite
def plain_oximetry_files(draw: st.DrawFn) -> tuple[str, str]:
    """(zone of naive clocks, file): ISO times with one offset (or none, sometimes across a DST change),
    gaps, empty and out-of-range cells and, sometimes, one odd row."""
    zone = draw(st.sampled_from(["UTC", "Europe/Paris"]))
    start = draw(st.one_of(
        st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31)),
        st.just(datetime(2026, 3, 29, 1, 59, 30)), st.just(datetime(2026, 10, 25, 2, 59, 30)))).replace(microsecond=0)
    suffix = draw(st.sampled_from(["", "Z", "+01:00", "-05:00", "+00:00", ".250+01:00"]))
    sep = draw(st.sampled_from(["T", " "]))
    interval = draw(st.sampled_from([1, 2, 4]))
    moment, rows = start, []
    for _ in range(draw(st.integers(2, 80))):
        rows.append(f"{moment.strftime(f'%Y-%m-%d{sep}%H:%M:%S')}{suffix},{draw(OXI_CELL)},{draw(OXI_CELL)}")
        moment += timedelta(seconds=interval * draw(st.sampled_from([1, 1, 1, 2, 5])))
    if draw(st.booleans()):  # one row the fast reader must leave to the row parser
        at = draw(st.integers(0, len(rows) - 1))
        kind = draw(st.sampled_from(["cell", "time", "offset", *ROW_BREAKS]))
        time_cell, rest = rows[at].split(",", 1)
        if kind == "time":
            rows[at] = f"{draw(st.sampled_from(ODD_TIME))}{suffix},{rest}"
        elif kind == "offset":
            rows[at] = f"{time_cell[:19]}{draw(st.sampled_from(['+02:00', 'Z', '', '+0100']))},{rest}"
        elif kind == "cell":
            rows[at] = f"{time_cell},{draw(ODD_OXI_CELL)},{rest.split(',')[1]}"
        else:
            break_row(rows, at, kind)
    return zone, "\n".join(["timestamp,spo2,pulse", *rows]) + draw(st.sampled_from(["\n", ""]))


@settings(max_examples=400, deadline=None)
@given(plain_oximetry_files())
def test_whole_file_oximetry_reader_agrees_with_the_row_parser(case: tuple[str, str]) -> None:
    """The vectorised reader gives exactly what the row-by-row reference gives, or steps aside (None)."""
    from ingest.parsers.common import Context
    from ingest.parsers.generic_csv import _read_oximetry_plain, _read_oximetry_rows

    zone, text = case
    ctx = Context("night.csv", "P", ZoneInfo(zone))
    fast = _read_oximetry_plain(text, ctx)
    try:
        reference = _read_oximetry_rows(text, ctx)
    except ParseError:
        assert fast is None  # errors are always the row parser's, with their line numbers
        return
    if fast is not None:
        assert as_lists(fast) == reference
        assert fast["start"].utcoffset() == reference["start"].utcoffset()


def test_whole_file_oximetry_reader_takes_the_plain_layout() -> None:
    """The test data's night and a generated 8 h 1 Hz night with dropouts really go the fast way."""
    from ingest.parsers.common import Context
    from ingest.parsers.generic_csv import _read_oximetry_plain, _read_oximetry_rows

    start = datetime(2026, 3, 11, 23, 0)
    night = "\n".join(["timestamp,spo2,pulse"] + [
        f"{start + timedelta(seconds=i):%Y-%m-%dT%H:%M:%S}+01:00,{'' if i % 997 == 0 else 90 + i % 9},{60 + i % 30}"
        for i in range(28_800)]) + "\n"
    for text in (OXI.decode(), night):
        ctx = Context("night.csv", "P")
        fast = _read_oximetry_plain(text, ctx)
        assert fast is not None and as_lists(fast) == _read_oximetry_rows(text, ctx)
    assert len(fast["spo2"]) == 28_800 and int(np.isnan(fast["spo2"]).sum()) == 29


def test_numeric_cells_are_still_read_as_numbers() -> None:
    (session,) = parse_bytes(f"{SPIRO_HEADER}\nP1,2026-03-01T09:00:00Z, 2.5 ,45,sitting\n".encode(), "s.csv")
    assert (session.fvc_l, session.mip_cmh2o) == (2.5, 45)
    (session,) = parse_bytes(f"{SPIRO_HEADER}\nP1,2026-03-01T09:00:00Z,3,-45,sitting\n".encode(), "s.csv")
    assert (session.fvc_l, session.mip_cmh2o) == (3, 45)


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_non_finite_cells_are_refused(cell: str) -> None:
    with pytest.raises(ParseError, match=r"^s\.csv: line 2: column mip_cmh2o: not a finite number$"):
        parse_bytes(f"{SPIRO_HEADER}\nP1,2026-03-01T09:00:00Z,2.5,{cell},sitting\n".encode(), "s.csv")


@pytest.mark.parametrize("taken_at", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                                      "9999-12-31T23:59:59-12:00"])
def test_spirometry_dated_year_1_or_9999_is_refused(taken_at: str) -> None:
    with pytest.raises(ParseError, match=r"^s\.csv: line 2: column taken_at: Value error, date/time must be in"):
        parse_bytes(f"{SPIRO_HEADER}\nP1,{taken_at},2.5,45,sitting\n".encode(), "s.csv")


@pytest.mark.parametrize(("cells", "message"), [
    ("0001-01-01,7", r"line 2: column night_date: Value error, date must be in the years 1900-2099"),
    ("9999-12-31,7", r"line 2: column night_date: Value error, date must be in the years 1900-2099"),
    ("2026-03-01,7,1e12", r"line 2: column mask_sessions: Input should be less than or equal to 1440"),
])
def test_niv_night_out_of_range_is_refused(cells: str, message: str) -> None:
    header = "patient_id,night_date,usage_hours" + (",mask_sessions" if cells.count(",") == 2 else "")
    with pytest.raises(ParseError, match=message):
        parse_bytes(f"{header}\nP1,{cells}\n".encode(), "n.csv")


def test_oximetry_dated_year_9999_is_refused() -> None:
    rows = "".join(f"9999-12-31T23:59:{s:02d}-12:00,95,60\n" for s in range(30))
    with pytest.raises(ParseError, match=r"^o\.csv: field start: Value error, date/time must be in the years"):
        parse_bytes(f"timestamp,spo2,pulse\n{rows}".encode(), "o.csv", patient_id="P1")
