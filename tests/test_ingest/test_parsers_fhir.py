"""FHIR R4 Bundles of Observations (LOINC, SNOMED and the local urn:respmon:code system)."""

from __future__ import annotations

import copy
import json
import logging
from datetime import date

import pytest
from ingest_testlib import SYN

from ingest.parsers import ParseError, parse_bytes, parse_bytes_with_notes
from schemas import NivNight, OximetryNight, SpirometrySession

BUNDLE = json.loads((SYN / "fhir_bundle.json").read_text())


def _parse(bundle: dict, **kw: object) -> tuple[list, list[str]]:
    return parse_bytes_with_notes(json.dumps(bundle).encode(), "bundle.json", **kw)


def test_bundle_to_records() -> None:
    records, notes = _parse(BUNDLE)
    sitting, supine = [r for r in records if isinstance(r, SpirometrySession)]
    assert sitting.patient_id == "ALS-003" and sitting.posture == "sitting"
    assert sitting.fvc_l == 2.85 and sitting.fvc_pct_pred == 69
    assert sitting.fev1_l == 2.4  # sent as 2400 mL
    assert sitting.mip_cmh2o == 52  # SNOMED 27913002, -52 cm[H2O] -> magnitude
    assert (sitting.snip_cmh2o, sitting.mep_cmh2o, sitting.pcf_lpm) == (55, 75, 270)
    assert supine.posture == "supine" and supine.fvc_l == 2.2
    (oxi,) = [r for r in records if isinstance(r, OximetryNight)]
    assert oxi.interval_s == 1.0 and len(oxi.spo2) == 62 and min(v for v in oxi.spo2 if v) == 92
    assert oxi.spo2[-2:] == [None, None] and oxi.pulse[-1] == 65
    (niv,) = [r for r in records if isinstance(r, NivNight)]
    assert niv.night_date == date(2026, 3, 3) and niv.ahi == 6.5 and niv.usage_hours == 7.5
    assert notes == ["entry 13: code http://loinc.org|29463-7 not supported (skipped)"]  # body weight reported


def test_parse_bytes_returns_the_same_records() -> None:
    assert parse_bytes(json.dumps(BUNDLE).encode(), "b.json") == _parse(BUNDLE)[0]


def test_no_usable_observation_is_an_error() -> None:
    bundle = copy.deepcopy(BUNDLE)
    bundle["entry"] = [bundle["entry"][0], bundle["entry"][-1]]
    with pytest.raises(ParseError, match=r"^bundle\.json: no usable observation in bundle \(entry 1: code http://loinc\.org\|29463-7"):
        _parse(bundle)


def test_wrong_unit_is_refused() -> None:
    bundle = copy.deepcopy(BUNDLE)
    bundle["entry"][1]["resource"]["valueQuantity"].update(unit="ft3", code="ft3")
    with pytest.raises(ParseError, match=r"entry 1: FVC: unit 'ft3' not supported"):
        _parse(bundle)


def test_invalid_resource_names_the_field() -> None:
    bundle = copy.deepcopy(BUNDLE)
    del bundle["entry"][1]["resource"]["code"]
    with pytest.raises(ParseError, match=r"field entry\.1\.resource\.code: Field required"):
        _parse(bundle)


def test_patient_from_reference_or_argument() -> None:
    bundle = copy.deepcopy(BUNDLE)
    for entry in bundle["entry"][1:]:
        entry["resource"].pop("subject")
    with pytest.raises(ParseError, match="patient_id missing"):
        _parse(bundle)
    records, _ = _parse(bundle, patient_id="ALS-003")
    assert {r.patient_id for r in records} == {"ALS-003"}
    with pytest.raises(ParseError, match="does not match"):
        _parse(BUNDLE, patient_id="ALS-004")


def test_spot_spo2_is_reported_not_used() -> None:
    bundle = copy.deepcopy(BUNDLE)
    spo2 = bundle["entry"][9]["resource"]
    spo2.pop("valueSampledData")
    spo2["valueQuantity"] = {"value": 91, "unit": "%"}
    bundle["entry"].pop(10)  # its sampled pulse
    records, notes = _parse(bundle)
    assert not any(isinstance(r, OximetryNight) for r in records)
    assert "entry 9: spot SpO2 is not an overnight recording (skipped)" in notes


def _dated(entry: int, field: str, value: object) -> dict:
    bundle = copy.deepcopy(BUNDLE)
    resource = bundle["entry"][entry]["resource"]
    resource.pop("effectiveDateTime")
    resource[field] = value
    return bundle


@pytest.mark.parametrize(
    ("entry", "field", "value", "where"),
    [
        (12, "effectiveDateTime", "0001-01-01T00:00:00Z", "effectiveDateTime"),  # the NIV night shift overflowed
        (1, "effectiveDateTime", "0001-01-01T00:00:00+14:00", "effectiveDateTime"),
        (12, "effectiveDateTime", "9999-12-31T23:59:59-12:00", "effectiveDateTime"),  # year 10000 in UTC
        (1, "effectiveInstant", "9999-12-31T23:59:59.999-12:00", "effectiveInstant"),
        (12, "effectivePeriod", {"start": "0001-01-01"}, r"effectivePeriod\.start"),
        (1, "effectiveDateTime", "1899-12-31", "effectiveDateTime"),
    ],
)
def test_observation_dated_near_year_1_or_9999_is_a_parse_error(entry: int, field: str, value: object,
                                                                  where: str) -> None:
    with pytest.raises(ParseError, match=rf"^bundle\.json: entry {entry}: {where} out of range \(years 1900-2099\)$"):
        _parse(_dated(entry, field, value))


def test_quantity_beyond_float_range_is_a_parse_error() -> None:
    bundle = copy.deepcopy(BUNDLE)
    bundle["entry"][4]["resource"]["valueQuantity"].update(value="9e999999", unit="kPa", code="kPa")
    with pytest.raises(ParseError, match=r"^bundle\.json: entry 4: MIP: value out of range$"):  # was decimal.Overflow
        _parse(bundle)


def _unsupported(code: str, index: int) -> dict:
    return {"resource": {"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                         "subject": {"reference": "Patient/ALS-003"}, "effectiveDateTime": f"2026-03-0{1 + index % 9}",
                         "valueQuantity": {"value": 71.5, "unit": "kg"}}}


def _skip_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("ingest.parsers")]


def test_many_unsupported_codes_log_one_line(caplog: pytest.LogCaptureFixture) -> None:
    bundle = copy.deepcopy(BUNDLE)
    bundle["entry"] += [_unsupported(f"X-{i}", i) for i in range(2_000)]
    with caplog.at_level(logging.INFO):
        _records, notes = _parse(bundle)
    (line,) = _skip_lines(caplog)  # was one line per skipped entry: 2,001 here
    assert line.getMessage() == "unsupported observations skipped"
    assert line.count == 2_001 == len(notes) and line.reasons == {"code not supported": 2_001}
    assert line.codes == ["http://loinc.org|29463-7", "http://loinc.org|X-0", "http://loinc.org|X-1",
                          "http://loinc.org|X-2", "http://loinc.org|X-3"]


def test_device_code_text_is_escaped_and_truncated(caplog: pytest.LogCaptureFixture) -> None:
    planted = "29463-7\nlevel=error patient_id=ALS-999 fvc_l=1.1 " + "A" * 5_000
    bundle = copy.deepcopy(BUNDLE)
    bundle["entry"][13]["resource"]["code"]["coding"][0]["code"] = planted
    with caplog.at_level(logging.INFO):
        _records, notes = _parse(bundle)
    (line,) = _skip_lines(caplog)
    (code,) = [c.split("|", 1)[1] for c in line.codes]
    assert code.startswith("29463-7\\nlevel=error patient") and code.endswith("...") and len(code) <= 32
    assert notes == [f"entry 13: code http://loinc.org|{code} not supported (skipped)"]
    logged = line.getMessage() + repr(vars(line))
    assert "\n" not in line.getMessage() and "ALS-999" not in logged and "1.1" not in logged and "71.5" not in logged


def test_unsupported_code_quoted_in_an_error_is_escaped() -> None:
    bundle = copy.deepcopy(BUNDLE)
    bundle["entry"] = [bundle["entry"][0], bundle["entry"][-1]]
    bundle["entry"][1]["resource"]["code"]["coding"][0]["code"] = "x\u2028" + "B" * 500
    with pytest.raises(ParseError) as err:
        _parse(bundle)
    message = str(err.value)
    assert message.startswith("bundle.json: no usable observation in bundle (entry 1: code http://loinc.org|x\\u2028B")
    assert message.endswith("B... not supported (skipped))") and len(message) < 160
