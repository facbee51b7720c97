"""Format detection, the public API surface, and parsing folders of exports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ingest_testlib import AIRCURVE, SYN

from ingest import parsers
from ingest.parsers import FORMATS, ParseError, detect_format, parse_bytes, parse_path

EXPECTED = {
    "O2Ring_20260308223000.csv": "o2ring_csv",
    "Checkme_O2_Max_20260309230000.csv": "o2ring_csv",
    "O2Ring_ampm_20260309.csv": "o2ring_csv",
    "O2Ring_20260310223000.bin": "o2ring_bin",
    "oximetry_generic.csv": "oximetry_csv",
    "spirometry.csv": "spirometry_csv",
    "niv.csv": "niv_csv",
    "spirometry.json": "spirometry_json",
    "alsfrs.json": "alsfrs_json",
    "alsfrs_flat.json": "alsfrs_json",
    "fhir_bundle.json": "fhir_bundle",
    "blood_gas.csv": "blood_gas_csv",
    "tcco2_night.csv": "tcco2_csv",
}


@pytest.mark.parametrize(("name", "fmt"), sorted(EXPECTED.items()))
def test_detect(name: str, fmt: str) -> None:
    assert detect_format(name, (SYN / name).read_bytes()) == fmt
    assert fmt in FORMATS


def test_formats_are_the_public_list() -> None:
    assert FORMATS == ("spirometry_json", "spirometry_csv", "niv_csv", "alsfrs_json", "fhir_bundle",
                       "o2ring_csv", "o2ring_bin", "oximetry_csv", "resmed_str", "resmed_pld", "resmed_sad",
                       "resmed_eve", "blood_gas_csv", "tcco2_csv", "lowenstein_wmedf", "contec_spo2")
    assert set(parsers.__all__) >= {"ParseError", "FORMATS", "detect_format", "parse_bytes", "parse_path"}


@pytest.mark.parametrize("data", [b"", b"hello world\n", b"\x00\x01\x02", b'{"foo": 1}', b"[1]", b"{not json"])
def test_unknown_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError, match=r"^mystery\.dat: "):
        detect_format("mystery.dat", data)


def test_parse_error_format() -> None:
    assert str(ParseError("a.csv", "bad", "line 3")) == "a.csv: line 3: bad"
    assert str(ParseError("a.csv", "bad")) == "a.csv: bad"
    assert isinstance(ParseError("a", "b"), ValueError)


def test_unknown_format_and_zone() -> None:
    with pytest.raises(ParseError, match="unknown format 'pdf'"):
        parse_bytes(b"x", "x.pdf", fmt="pdf")
    with pytest.raises(ParseError, match="unknown time zone 'Mars/Olympus'"):
        parse_bytes(b"x", "x.csv", tz="Mars/Olympus")


def test_folder_of_exports(tmp_path: Path) -> None:
    for name in ("O2Ring_20260310223000.bin", "O2Ring_ampm_20260309.csv", "oximetry_generic.csv"):
        shutil.copy(SYN / name, tmp_path / name)
    shutil.copytree(AIRCURVE, tmp_path / "sdcard")
    (tmp_path / "notes.txt").write_text("ignored")
    records = parse_path(tmp_path, patient_id="ALS-001")
    kinds = [r.kind for r in records]
    assert kinds.count("oximetry_night") == 3 and kinds.count("niv_night") == 100


def test_folder_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.csv").write_bytes(b"timestamp,spo2,pulse\n2026-01-01T00:00:00Z,9x,60\n")
    with pytest.raises(ParseError, match=r"broken\.csv: line 2: column spo2: not a number"):
        parse_path(tmp_path, patient_id="ALS-001")


def test_missing_path() -> None:
    with pytest.raises(ParseError, match="no such file or folder"):
        parse_path("/nonexistent/respmon/upload")
