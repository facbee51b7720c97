"""CO2 inputs (issue 12): the blood gas / spot CO2 CSV, the overnight TcCO2 CSV and the FHIR blood gas codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_testlib import SYN

from ingest.parsers import ParseError, ParserFault, detect_format, parse_bytes, parse_bytes_with_notes
from processors.metrics.capnography import night_metrics
from schemas import BloodGas, CapnographyNight

GAS = (SYN / "blood_gas.csv").read_bytes()
TCCO2 = (SYN / "tcco2_night.csv").read_bytes()
GAS_HEADER = "patient_id,taken_at,sample,pco2,pco2_unit,bicarbonate_mmol_l,ph,po2"
LOINC = "http://loinc.org"
QUICK = settings(max_examples=60, derandomize=True, database=None, deadline=None)


# ------------------------------------------------------------------------------------ blood gas CSV
def test_blood_gas_rows() -> None:
    gases = parse_bytes(GAS, "blood_gas.csv")
    assert all(isinstance(g, BloodGas) for g in gases) and len(gases) == 5
    venous, capillary, arterial, transcutaneous, serum = gases
    assert (venous.sample, venous.pco2_mmhg, venous.bicarbonate_mmol_l, venous.ph) == ("venous", 47.5, 28.1, 7.37)
    assert venous.po2_mmhg is None and venous.source == "blood_gas_csv"
    assert venous.taken_at == datetime(2026, 2, 2, 9, 15, tzinfo=timezone(timedelta(hours=1)))
    assert capillary.sample == "capillary" and capillary.pco2_mmhg == pytest.approx(6.4 * 7.50062, abs=1e-3)
    assert capillary.po2_mmhg == pytest.approx(8.1 * 7.50062, abs=1e-3)  # po2 in the row's unit
    assert arterial.pco2_mmhg == 44.0 and arterial.bicarbonate_mmol_l is None and arterial.po2_mmhg == 82
    assert transcutaneous.sample == "transcutaneous"
    assert serum.pco2_mmhg is None and serum.bicarbonate_mmol_l == 27.4  # a bicarbonate alone screens


@pytest.mark.parametrize(("kpa", "mmhg"), [(6.0, 45.004), (5.99, 44.929), (6.5, 48.754), (1, 7.501)])
def test_kpa_is_stored_in_mmhg(kpa: float, mmhg: float) -> None:
    (gas,) = parse_bytes(f"{GAS_HEADER}\nP1,2026-03-01T09:00:00Z,arterial,{kpa},KPA,,,\n".encode(), "g.csv")
    assert gas.pco2_mmhg == mmhg  # 6.0 kPa is at the 45 mmHg threshold, 5.99 below it


def test_blood_gas_minimal_columns_naive_time_and_source() -> None:
    data = b"patient_id,taken_at,sample,pco2,pco2_unit,source\nP1,2026-03-01T09:00:00,end_tidal,44,mmHg,capno-1\n"
    (gas,) = parse_bytes(data, "g.csv", tz="Europe/Paris")
    assert gas.sample == "end_tidal" and gas.source == "capno-1" and gas.taken_at.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("P1,2026-03-01T09:00:00Z,arterial,abc,mmHg,,,", r"^g\.csv: line 2: column pco2: not a number$"),
        ("P1,2026-03-01T09:00:00Z,arterial,45,psi,,,", r"^g\.csv: line 2: column pco2_unit: must be mmHg or kPa$"),
        ("P1,2026-03-01T09:00:00Z,arterial,45,,,,", r"^g\.csv: line 2: column pco2_unit: must be mmHg or kPa$"),
        ("P1,2026-03-01T09:00:00Z,arterial,,,,7.4,", r"^g\.csv: line 2: column pco2: empty \(a row needs pco2 or"),
        ("P1,2026-03-01T09:00:00Z,arterial,45,kPa,,,", r"^g\.csv: line 2: column pco2: Input should be less than"),
        ("P1,2026-03-01T09:00:00Z,blood,45,mmHg,,,", r"^g\.csv: line 2: column sample: Input should be 'arterial'"),
        ("P1,2026-03-01T09:00:00Z,arterial,45,mmHg,27,9.1,", r"^g\.csv: line 2: column ph: Input should be less than"),
        ("P1,2026-03-01T09:00:00Z,arterial,45,mmHg,200,,", r"^g\.csv: line 2: column bicarbonate_mmol_l: Input should"),
        ("P1,2026-03-01T09:00:00Z,arterial,45,mmHg,27,7.4,nan", r"^g\.csv: line 2: column po2: not a finite number$"),
        ("P1,yesterday,arterial,45,mmHg,,,", r"^g\.csv: line 2: column taken_at: not an ISO 8601 date-time$"),
        ("P1,2026-03-01T09:00:00Z,arterial,45", r"^g\.csv: line 2: expected 8 columns, found 4$"),
    ],
)
def test_blood_gas_errors_name_file_line_and_column(row: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as err:
        parse_bytes(f"{GAS_HEADER}\n{row}\n".encode(), "g.csv")
    assert "\n" not in str(err.value)


def test_blood_gas_error_on_a_later_line_names_it() -> None:
    data = f"{GAS_HEADER}\nP1,2026-03-01T08:00:00Z,arterial,40,mmHg,,,\n\nP1,2026-03-01T09:00:00Z,x,40,mmHg,,,\n"
    with pytest.raises(ParseError, match=r"^g\.csv: line 4: column sample: "):
        parse_bytes(data.encode(), "g.csv")


def test_blood_gas_header_errors() -> None:
    with pytest.raises(ParseError, match=r"^g\.csv: line 1: wrong header: required column 'pco2_unit' missing$"):
        parse_bytes(b"patient_id,taken_at,sample,pco2\nP1,2026-03-01T09:00:00Z,arterial,45\n", "g.csv")
    with pytest.raises(ParseError, match=r"line 1: wrong header: unknown column 'paco2'"):
        parse_bytes(f"{GAS_HEADER},paco2\n".encode(), "g.csv", fmt="blood_gas_csv")


def test_blood_gas_patient_must_match_the_upload() -> None:
    with pytest.raises(ParseError, match=r"line 2: patient id in file does not match"):
        parse_bytes(GAS, "g.csv", patient_id="SOMEONE-ELSE")


# ------------------------------------------------------------------------------------ TcCO2 CSV
def test_tcco2_night_file() -> None:
    (night,) = parse_bytes(TCCO2, "tcco2_night.csv", patient_id="ALS-004")
    assert isinstance(night, CapnographyNight) and night.source == "tcco2_csv"
    assert night.start == datetime(2026, 3, 12, 23, tzinfo=timezone(timedelta(hours=1)))
    assert night.interval_s == 30 and len(night.tcpco2) == 720  # the 4 missing rows are a gap on the grid
    assert night.tcpco2[500:504] == [None] * 4 and night.tcpco2[600:602] == [None, None]
    assert night.spo2 is not None and night.spo2[250] is None and night.spo2[0] == 94
    m = night_metrics(night)  # the file's known values (tests/data/make_samples.py)
    assert (m.valid_min, m.baseline_tcpco2, m.max_tcpco2, m.max_rise_mmhg) == (357.0, 42.0, 58.0, 16.0)
    assert (m.gt55_min, m.longest_gt55_min, m.gt50_min, m.rise10_min, m.longest_rise10_min) == (14, 14, 34, 34, 34)
    assert m.night_date.isoformat() == "2026-03-12" and m.valid


def test_tcco2_without_spo2_and_pulse_columns() -> None:
    rows = "".join(f"2026-03-01T22:{m:02d}:00Z,{40 + m % 2}\n" for m in range(10))
    (night,) = parse_bytes(f"timestamp,tcpco2_mmhg\n{rows}".encode(), "t.csv", patient_id="P1")
    assert night.spo2 is None and night.pulse is None and night.interval_s == 60 and night.tcpco2[1] == 41


def _tc(rows: list[str], header: str = "timestamp,tcpco2_mmhg,spo2,pulse") -> bytes:
    return (header + "\n" + "\n".join(rows) + "\n").encode()


GOOD = [f"2026-03-01T22:00:{s:02d}Z,45,95,70" for s in range(0, 40, 10)]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([*GOOD[:2], "2026-03-01T22:00:20Z,x,95,70"], r"^t\.csv: line 4: column tcpco2_mmhg: not a number$"),
        ([*GOOD[:2], "2026-03-01T22:00:20Z,-3,95,70"], r"^t\.csv: line 4: column tcpco2_mmhg: out of range"),
        ([*GOOD[:2], "2026-03-01T22:00:20Z,999,95,70"], r"^t\.csv: line 4: column tcpco2_mmhg: out of range"),
        ([*GOOD[:2], "2026-03-01T22:00:20Z,45,95,fast"], r"^t\.csv: line 4: column pulse: not a number$"),
        ([*GOOD[:2], "22:00:20,45,95,70"], r"^t\.csv: line 4: column timestamp: not an ISO 8601 date-time$"),
        ([*GOOD[:3], GOOD[1]], r"^t\.csv: line 5: timestamp goes backwards or repeats$"),
        ([*GOOD[:2], "2026-03-01T22:00:25Z,45,95,70"], r"^t\.csv: line 4: irregular sample spacing"),
        ([*GOOD[:2], "2026-03-01T22:00:20Z,45"], r"^t\.csv: line 4: expected 4 columns, found 2$"),
        (["1899-12-31T23:59:50Z,45,95,70", "1899-12-31T23:59:55Z,45,95,70"],
         r"^t\.csv: line 2: column timestamp: date/time must be in the years 1900-2099"),
        ([GOOD[0]], r"^t\.csv: need at least two samples"),
        ([r.replace(",45,", ",6,") for r in GOOD], r"^t\.csv: no valid tcpco2_mmhg samples \(10-150 mmHg expected\)$"),
    ],
)
def test_tcco2_errors_name_file_line_and_column(rows: list[str], message: str) -> None:
    with pytest.raises(ParseError, match=message) as err:
        parse_bytes(_tc(rows), "t.csv", patient_id="P1", fmt="tcco2_csv")
    assert "\n" not in str(err.value)


def test_tcco2_needs_the_patient_and_its_header() -> None:
    with pytest.raises(ParseError, match=r"^t\.csv: patient id required for tcco2_csv$"):
        parse_bytes(_tc(GOOD), "t.csv")
    with pytest.raises(ParseError, match=r"line 1: wrong header: unknown column 'etco2'"):
        parse_bytes(_tc(GOOD, "timestamp,tcpco2_mmhg,etco2,pulse"), "t.csv", patient_id="P1")


def test_formats_are_detected_by_header() -> None:
    assert detect_format("x.txt", GAS) == "blood_gas_csv"
    assert detect_format("x.txt", TCCO2) == "tcco2_csv"
    assert detect_format("x.txt", b"timestamp,tcpco2_mmhg\n") == "tcco2_csv"
    assert detect_format("x.txt", b"patient_id,taken_at,fvc_l\n") == "spirometry_csv"  # unchanged


# ------------------------------------------------------------------------------------ FHIR
def _obs(code: str, value: float, unit: str | None, when: str = "2026-03-02T09:00:00Z") -> dict:
    quantity: dict = {"value": value}
    if unit is not None:
        quantity |= {"unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return {"resource": {"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": LOINC, "code": code}]},
                         "subject": {"reference": "Patient/ALS-004"}, "effectiveDateTime": when,
                         "valueQuantity": quantity}}


def _fhir(*entries: dict) -> tuple[list, list[str]]:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": list(entries)}
    return parse_bytes_with_notes(json.dumps(bundle).encode(), "bundle.json")


@pytest.mark.parametrize(("code", "sample"), [
    ("2019-8", "arterial"), ("2020-6", "capillary"), ("2021-4", "venous"), ("33022-5", "transcutaneous"),
    ("19889-5", "end_tidal"), ("11557-6", "venous"),  # pCO2 in blood, sample unnamed: the screen
])
def test_fhir_pco2_codes_name_the_sample(code: str, sample: str) -> None:
    (gas,), notes = _fhir(_obs(code, 47, "mm[Hg]"))
    assert (gas.sample, gas.pco2_mmhg, gas.patient_id, gas.source) == (sample, 47, "ALS-004", "fhir") and not notes


def test_fhir_gas_panel_is_one_record_in_mmhg() -> None:
    (gas,), _ = _fhir(_obs("2019-8", 6.2, "kPa"), _obs("1960-4", 30, "mmol/L"), _obs("2744-1", 7.37, "[pH]"),
                      _obs("2703-7", 9.1, "kPa"))
    assert gas.sample == "arterial" and gas.pco2_mmhg == pytest.approx(46.504, abs=1e-3)
    assert (gas.bicarbonate_mmol_l, gas.ph) == (30, 7.37) and gas.po2_mmhg == pytest.approx(68.256, abs=1e-3)
    assert gas.taken_at == datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_fhir_unnamed_pco2_takes_the_sample_of_its_panel() -> None:
    (gas,), _ = _fhir(_obs("11557-6", 46, "mmHg"), _obs("2744-1", 7.36, None))
    assert gas.sample == "arterial"


@pytest.mark.parametrize(("code", "sample"), [("1963-8", "venous"), ("1959-6", "venous"), ("1961-2", "capillary")])
def test_fhir_bicarbonate_alone_is_a_screen_record(code: str, sample: str) -> None:
    (gas,), _ = _fhir(_obs(code, 28, "mEq/L"))
    assert gas.pco2_mmhg is None and gas.bicarbonate_mmol_l == 28 and gas.sample == sample


def test_fhir_pco2_without_unit_or_with_a_wrong_one_is_refused() -> None:
    with pytest.raises(ParseError, match=r"^bundle\.json: entry 0: pCO2: unit required \(mm\[Hg\], mmHg, kPa\)$"):
        _fhir(_obs("2019-8", 6.2, None))
    with pytest.raises(ParseError, match=r"^bundle\.json: entry 0: pCO2: unit 'psi' not supported$"):
        _fhir(_obs("2019-8", 6.2, "psi"))


def test_fhir_two_pco2_at_one_time_and_ph_alone() -> None:
    with pytest.raises(ParseError, match=r"entry 1: pCO2 given twice for the same subject and time"):
        _fhir(_obs("2019-8", 45, "mmHg"), _obs("2021-4", 48, "mmHg"))
    with pytest.raises(ParseError, match=r"no usable observation in bundle \(observations of .*: blood gas values "
                                         r"without pCO2 or bicarbonate \(skipped\)\)"):
        _fhir(_obs("2744-1", 7.3, "[pH]"))


def test_fhir_implausible_pco2_names_the_field() -> None:
    with pytest.raises(ParseError, match=r"observations of 2026-03-02T09:00:00\+00:00, field pco2_mmhg: Input should "
                                         r"be less than or equal to 200"):
        _fhir(_obs("2019-8", 45, "kPa"))


# ------------------------------------------------------------------------------------ properties
CELLS = st.sampled_from(["", "-", "nan", "inf", "1e999", "-0", "0", "45", "6.0", "kPa", "mmHg", "KPA", "arterial",
                         "venous", "x", "\u00b0", "999", "7.4", "2026-03-01T09:00:00Z", "0001-01-01T00:00:00Z"])


@QUICK
@given(cells=st.lists(CELLS, min_size=8, max_size=8))
def test_any_blood_gas_row_gives_a_record_or_one_line_error(cells: list[str]) -> None:
    data = f"{GAS_HEADER}\n{','.join(cells)}\n".encode()
    try:
        records = parse_bytes(data, "g.csv", fmt="blood_gas_csv")
    except ParserFault as exc:
        raise AssertionError(f"parser bug: {exc}") from exc
    except ParseError as exc:
        assert str(exc).startswith("g.csv: ") and "\n" not in str(exc)
    else:  # an all-empty row is a blank line, skipped as in the other CSV layouts
        assert len(records) == (1 if any(cells) else 0)
        assert all(g.pco2_mmhg is not None or g.bicarbonate_mmol_l is not None for g in records)


@QUICK
@given(values=st.lists(st.one_of(st.just(""), st.floats(-10, 400).map(lambda v: f"{v:.1f}"), CELLS), min_size=2,
                       max_size=30))
def test_any_tcco2_values_give_a_night_or_one_line_error(values: list[str]) -> None:
    rows = [f"2026-03-01T22:{i // 60:02d}:{i % 60:02d}Z,{v}" for i, v in enumerate(values)]
    try:
        records = parse_bytes(_tc(rows, "timestamp,tcpco2_mmhg"), "t.csv", patient_id="P1")
    except ParserFault as exc:
        raise AssertionError(f"parser bug: {exc}") from exc
    except ParseError as exc:
        assert str(exc).startswith("t.csv: ") and "\n" not in str(exc)
    else:
        (night,) = records
        assert len(night.tcpco2) == len(values)
        night_metrics(night)  # whatever the readings, the metrics compute
