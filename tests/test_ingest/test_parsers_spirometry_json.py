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
        ({"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "fvc_l": 25}, r"^spiro\.json: field fvc_l: Input should be less than or equal to 10$"),
        ({"patient_id": "P1", "fvc_l": 2}, r"field taken_at: Field required"),
        ({"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "fvc": 2}, r"field fvc: Extra inputs are not permitted"),
        ([SESSIONS[0], {"patient_id": "P1", "taken_at": "2026-03-01T09:00:00Z", "posture": "prone"}], r"item 1, field posture"),
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
