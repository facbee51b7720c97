"""Contec CMS50 `.SpO2` (SpO2 Assistant) files written from the documented layout: a night at 1 Hz with
its no-reading pairs, and the one-line errors (naming the file and field) for truncated files, wrong
sample counts and impossible dates."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from device_files import contec_spo2

from ingest.parsers import ParseError, detect_format, parse_bytes
from schemas import OximetryNight

PID = "ALS-002"
START = datetime(2024, 10, 13, 23, 22, 52)


def night(n: int = 12015, missing: int = 54) -> list[tuple[int, int]]:
    """The real file's shape (formats.md): 12,015 samples, the last `missing` without a reading."""
    pairs = [(96 - (i // 600) % 3, 58 + i % 7) for i in range(n - missing)]
    return pairs + [(127, 255)] * missing


def test_real_shaped_file_reads_as_one_night() -> None:
    data = contec_spo2(START, night())
    assert len(data) == 25_114  # the real file's length for this header offset and count
    assert detect_format("20241013.SpO2", data) == "contec_spo2"
    assert detect_format("renamed.dat", data) == "contec_spo2"  # by content: date and count fit the length
    (rec,) = parse_bytes(data, "20241013.SpO2", patient_id=PID, tz="Europe/Berlin")
    assert isinstance(rec, OximetryNight)
    assert rec.start.replace(tzinfo=None) == START and rec.start.utcoffset().total_seconds() == 7200
    assert rec.interval_s == 1.0 and len(rec.spo2) == 12_015 and rec.duration_s == 12_015
    assert rec.spo2[0] == 96 and rec.pulse[0] == 58
    assert sum(v is None for v in rec.spo2) == 54 and rec.spo2[-1] is None and rec.pulse[-1] is None  # (127, 255)
    assert rec.source == "contec_spo2" and rec.device_model == "Contec CMS50"


def test_other_header_offset_is_followed() -> None:
    (rec,) = parse_bytes(contec_spo2(START, night(100, 0), offset=300), "a.SpO2", patient_id=PID)
    assert len(rec.spo2) == 100 and rec.start == START.replace(tzinfo=UTC)


GOOD = contec_spo2(START, night(600, 10))
COUNT_AT = 856 + 200 + 24


@pytest.mark.parametrize(("data", "message"), [
    (GOOD[:-1], rf"byte {COUNT_AT}: field 'sample count' says 600 samples \(1200 bytes\) but 1199 bytes .*truncated"),
    (GOOD[:2000], rf"byte {COUNT_AT}: field 'sample count' says 600 .* but 916 bytes .*truncated"),
    (contec_spo2(START, night(600, 10), count=650), r"says 650 samples \(1300 bytes\) but 1200 bytes .*truncated"),
    (contec_spo2(START, night(600, 10), count=500), r"says 500 samples .* \(trailing bytes\)"),
    (contec_spo2(START, night(600, 10), count=0), r"field 'sample count' is 0"),
    (contec_spo2(START, night(600, 10), count=2**32 - 1), r"field 'sample count': recording longer than"),
    (GOOD[:900], r"truncated: header ends at byte 1084, file has 900 bytes \(field 'header offset', byte 0\)"),
    (GOOD[:1], r"truncated: 1 bytes, no header offset"),
    (contec_spo2(START, night(60, 0), fields=[2024, 2, 30, 23, 0, 0]), r"byte 1060: fields 'month' to 'second'"),
    (contec_spo2(START, night(60, 0), fields=[2024, 2**32 - 1, 1, 0, 0, 0]), r"not a real date and time"),
    (contec_spo2(START, night(60, 0), fields=[1970, 1, 1, 0, 0, 0]), r"byte 1056: field 'year'"),
    (contec_spo2(START, [(127, 255)] * 60), r"no valid SpO2 samples"),
])
def test_bad_file_is_one_line_naming_file_and_field(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message) as err:
        parse_bytes(data, "night.SpO2", patient_id=PID)
    assert str(err.value).startswith("night.SpO2: ") and "\n" not in str(err.value)


def test_patient_is_required() -> None:
    with pytest.raises(ParseError, match="patient id required for contec_spo2"):
        parse_bytes(GOOD, "night.SpO2")


def test_respmon_parse_golden(tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """`respmon parse --json` on a generated 10-minute file: the printed record is the golden."""
    from ingest_testlib import check_golden

    from respmon.cli import main

    path = tmp_path / "20241013.SpO2"  # type: ignore[operator]
    path.write_bytes(contec_spo2(START, night(600, 10)[:590:59] + [(127, 255)]))
    assert main(["parse", "--json", str(path), "--patient", PID, "--tz", "Europe/Berlin"]) == 0
    check_golden("respmon_parse_contec", [json.loads(line) for line in capsys.readouterr().out.splitlines()])
