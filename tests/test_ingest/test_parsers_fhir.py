"""FHIR R4 Bundles of Observations (LOINC, SNOMED and the local urn:respmon:code system)."""

from __future__ import annotations

import copy
import json
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
