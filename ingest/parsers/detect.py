"""Which parser a file needs, from its name and first bytes (never from a whole-file parse)."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.parsers import contec, lowenstein, resmed, wellue
from ingest.parsers.alsfrs import looks_like_alsfrs
from ingest.parsers.errors import ParseError, guard
from ingest.parsers.generic_csv import header_of

FORMATS: tuple[str, ...] = (
    "spirometry_json",
    "spirometry_csv",
    "niv_csv",
    "alsfrs_json",
    "fhir_bundle",
    "o2ring_csv",
    "o2ring_bin",
    "oximetry_csv",
    "resmed_str",
    "resmed_pld",
    "resmed_sad",
    "resmed_eve",
    "blood_gas_csv",
    "tcco2_csv",
    "lowenstein_wmedf",
    "contec_spo2",
)


def detect_format(filename: str, data: bytes) -> str:
    """Format name from FORMATS; ParseError when the file is none of them (never another exception)."""
    with guard(filename, "format detection"):
        return _detect(filename, data)


def _detect(filename: str, data: bytes) -> str:
    if resmed.looks_like_edf(data):
        return resmed.sniff_edf(data, filename)
    if wellue.is_o2ring_bin(data):
        return "o2ring_bin"
    if lowenstein.looks_like_wmedf(data) or Path(filename).suffix.lower() == ".wmedf":
        return "lowenstein_wmedf"
    if contec.looks_like_spo2(filename, data):
        return "contec_spo2"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"{", b"["):
        return _json_format(data, filename)
    try:
        first_line = head.decode("utf-8", "strict").split("\n", 1)[0].strip()
    except UnicodeDecodeError:
        first_line = ""
    if {"patient_id", "since", "state"} <= set(header_of(first_line)):  # respmon/carestate.py's CSV
        raise ParseError(filename, "a care state is set by the care team (respmon care-state, team API), "
                         "never uploaded by a device")
    found = _csv_format(first_line) if first_line else None
    if found:
        return found
    suffix = Path(filename).suffix.lower() or "(none)"
    raise ParseError(filename, f"unknown file format (extension {suffix})")


def _csv_format(first_line: str) -> str | None:
    if wellue.is_wellue_header(first_line):
        return "o2ring_csv"
    columns = set(header_of(first_line))
    if {"timestamp", "spo2", "pulse"} <= columns <= {"timestamp", "spo2", "pulse", "o2_lpm"}:
        return "oximetry_csv"
    if {"patient_id", "night_date", "usage_hours"} <= columns:
        return "niv_csv"
    if {"timestamp", "tcpco2_mmhg"} <= columns:
        return "tcco2_csv"
    if {"patient_id", "taken_at", "sample", "pco2"} <= columns:  # before spirometry: it has these two too
        return "blood_gas_csv"
    if {"patient_id", "taken_at"} <= columns:
        return "spirometry_csv"
    return None


def _json_format(data: bytes, filename: str) -> str:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ParseError(filename, "unknown file format (starts like JSON but is not valid JSON)") from None
    first = doc[0] if isinstance(doc, list) and doc else doc
    if not isinstance(first, dict):
        raise ParseError(filename, "unknown file format (JSON is not an object or a list of objects)")
    if first.get("resourceType") == "Bundle":
        return "fhir_bundle"
    if "resourceType" in first:
        raise ParseError(filename, f"unsupported FHIR resource {str(first['resourceType'])[:40]!r} (send a Bundle)")
    if looks_like_alsfrs(first):
        return "alsfrs_json"
    if "taken_at" in first:
        return "spirometry_json"
    raise ParseError(filename, "unknown file format (JSON object of an unknown kind)")
