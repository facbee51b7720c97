"""Spirometry JSON (SpirometrySession objects) and the pydantic-to-ParseError translation."""

from __future__ import annotations

import json

import pytest
from ingest_testlib import SYN

from ingest.parsers import ParseError, parse_bytes

SESSIONS = json.loads((SYN / "spirometry.json").read_text())


def _parse(doc: object, **kw: object) -> list:
    return parse_bytes(json.dumps(doc).encode(), "spiro.json", **kw)


def test_list_of_sessions() -> None:
    sitting, supine = _parse(SESSIONS)
    assert sitting.fvc_l == 3.05 and sitting.mip_cmh2o == 70 and sitting.source == "home_spirometer"
    assert supine.posture == "supine" and supine.fvc_l == 2.35
    drop = (sitting.fvc_l - supine.fvc_l) / sitting.fvc_l
    assert drop > 0.2  # >20 % supine drop: the diaphragm-weakness sign clinicians look for


def test_single_object_and_naive_time() -> None:
    (session,) = _parse({"patient_id": "P1", "taken_at": "2026-03-01T09:00:00", "fvc_l": 2.5}, tz="Europe/Paris")
    assert session.taken_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "fvc_l": 25},
         r"^spiro\.json: field fvc_l: Input should be less than or equal to 10$"),
        ({"patient_id": "P1", "fvc_l": 2}, r"field taken_at: Field required"),
        ({"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "fvc": 2},
         r"field fvc: Extra inputs are not permitted"),
        ([SESSIONS[0], {"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "posture": "prone"}],
         r"item 1, field posture"),
        ([], r"empty list"),
        ([1, 2], r"item 0: expected a JSON object"),
    ],
)
def test_validation_errors_name_the_field(doc: object, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        _parse(doc, fmt="spirometry_json")


def test_invalid_json_names_the_line() -> None:
    with pytest.raises(ParseError, match=r"^s\.json: line 2: invalid JSON"):
        parse_bytes(b'{"patient_id": "P1",\n  "taken_at": }', "s.json", fmt="spirometry_json")


@pytest.mark.parametrize("field", ["fvc_l", "mip_cmh2o", "fvc_pct_pred", "age_years"])
@pytest.mark.parametrize("value", [True, False])
def test_boolean_is_not_a_number(field: str, value: bool) -> None:
    doc = {"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", field: value}  # `true` was stored as 1.0
    with pytest.raises(ParseError, match=rf"^spiro\.json: field {field}: Value error, must be a number, not true"):
        _parse(doc)


def test_whole_numbers_stay_numbers() -> None:
    (session,) = _parse({"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "fvc_l": 3, "mip_cmh2o": -45,
                         "fvc_pct_pred": 80})
    assert (session.fvc_l, session.mip_cmh2o, session.fvc_pct_pred) == (3.0, 45.0, 80.0)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_json_numbers_are_refused(literal: str) -> None:
    text = f'{{"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "age_years": {literal}}}'
    with pytest.raises(ParseError, match=r"^s\.json: field age_years: Input should be a finite number$"):
        parse_bytes(text.encode(), "s.json")


def test_number_too_long_for_python_is_a_parse_error() -> None:
    text = '{"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "fvc_l": %s}' % ("9" * 5_000)
    with pytest.raises(ParseError, match=r"^s\.json: invalid JSON \(number too long\)$"):  # was a bare ValueError
        parse_bytes(text.encode(), "s.json", fmt="spirometry_json")


@pytest.mark.parametrize("taken_at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59"])
def test_taken_at_near_year_1_or_9999_is_refused(taken_at: str) -> None:
    with pytest.raises(ParseError, match=r"^spiro\.json: field taken_at: Value error, date/time must be in the years"):
        _parse({"patient_id": "P1", "taken_at": taken_at, "fvc_l": 2.5}, tz="Pacific/Kiritimati")
