"""Löwenstein prisma `.wmedf`: the real sample (golden and the values a clinician would check), the 1-byte
sample width that an EDF reader gets wrong, an oximetry night when the SpO2 channel holds readings, and the
one-line errors for broken headers."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from ingest_testlib import DATA, check_golden, dump

from ingest.parsers import ParseError, detect_format, lowenstein, parse_bytes, parse_path
from ingest.parsers.common import Context
from schemas import NivNight, OximetryNight

PID = "ALS-001"
SAMPLE = DATA / "lowenstein" / "signal_real.wmedf"
RAW = SAMPLE.read_bytes()
HEADER = 256 * 19


def _signal_offset(label: str) -> int:
    """Byte offset of a signal's samples inside one record, from the header (widths x samples)."""
    header = lowenstein.read_header(RAW, Context("x"))
    offset = 0
    for signal in header.signals:
        if signal.label == label:
            return offset
        offset += signal.width * signal.per_record
    raise KeyError(label)


def with_oximeter(data: bytes, spo2: np.ndarray, pulse: np.ndarray) -> bytes:
    """The sample with SpO2 and HeartFrequency (1 byte, 1 sample a record each) overwritten."""
    out = bytearray(data)
    for label, values in (("SpO2", spo2), ("HeartFrequency", pulse)):
        at = HEADER + _signal_offset(label)
        out[at : at + 54 * len(values) : 54] = values.astype(np.int8).tobytes()
    return bytes(out)


def test_sample_matches_golden() -> None:
    check_golden("lowenstein_signal_real", dump(parse_path(SAMPLE, patient_id=PID)))


def test_sample_night_values() -> None:
    (night,) = parse_path(SAMPLE, patient_id=PID)  # SpO2 holds only 0: no oximeter, no oximetry night
    assert isinstance(night, NivNight)
    assert night.night_date == date(2026, 5, 14)  # started 23:04:33 that evening
    assert night.usage_hours == pytest.approx(16294 / 3600, abs=0.001)  # 16,294 one-second records
    assert night.leak_kind == "total"  # vented mask: never compared with the unintentional-leak limit
    assert 9 <= night.leak_p50_lpm <= night.leak_p95_lpm <= 100  # TotalLeakage spans 9-100 L/min
    assert night.resp_rate == 14.0 and night.tidal_volume_ml == 355 and night.minute_vent_lpm == 4.8
    assert night.pressure_p50_cmh2o == pytest.approx(7 * 1.0197, abs=0.05)  # set 7 hPa, IPAP = EPAP
    assert night.ipap_p50_cmh2o is None and night.source == "lowenstein_wmedf"


def test_record_size_counts_one_byte_signals() -> None:
    header = lowenstein.read_header(RAW, Context("x"))
    assert header.record_bytes == 54 and header.records == -1
    assert (len(RAW) - HEADER) % header.record_bytes == 0
    assert (len(RAW) - HEADER) % (2 * sum(s.per_record for s in header.signals)) != 0  # what EDF would assume
    assert {s.label: s.dtype for s in header.signals}["MV"] == "u1"
    assert {s.label: s.dtype for s in header.signals}["SpO2"] == "i1"


def test_detected_by_content_and_by_name() -> None:
    assert detect_format("upload.bin", RAW) == "lowenstein_wmedf"
    assert detect_format("signal_001.wmedf", b"garbage") == "lowenstein_wmedf"
    with pytest.raises(ParseError, match=r"^signal_001\.wmedf: .*version field"):
        parse_bytes(b"x" * 300, "signal_001.wmedf", patient_id=PID)


def test_spo2_channel_with_readings_gives_an_oximetry_night() -> None:
    n = 16294
    spo2 = np.full(n, 95)
    spo2[1000:1300] = 86  # five minutes at 86 %
    spo2[-100:] = 0  # oximeter off at the end: no reading
    pulse = np.full(n, 62)
    records = parse_bytes(with_oximeter(RAW, spo2, pulse), "signal_001.wmedf", patient_id=PID)
    (oxi,) = [r for r in records if isinstance(r, OximetryNight)]
    assert oxi.start == datetime(2026, 5, 14, 23, 4, 33, tzinfo=UTC) and oxi.interval_s == 1.0
    assert len(oxi.spo2) == n and oxi.on_niv is True
    assert oxi.spo2[1000] == 86 and oxi.spo2[0] == 95 and oxi.spo2[-1] is None and oxi.pulse[0] == 62
    assert sum(1 for v in oxi.spo2 if v is None) == 100


def test_trailing_partial_record_is_left_out() -> None:
    (night,) = parse_bytes(RAW + b"\x01" * 30, "s.wmedf", patient_id=PID)
    assert night.usage_hours == pytest.approx(16294 / 3600, abs=0.001)


def _field(data: bytes, offset: int, width: int, value: str) -> bytes:
    return data[:offset] + value.encode().ljust(width) + data[offset + width:]


def _signal_field(index: int, field_offset: int, width: int, value: str) -> bytes:
    return _field(RAW, 256 + 18 * field_offset + width * index, width, value)


@pytest.mark.parametrize(("data", "message"), [
    (RAW[:200], r"truncated: 200 bytes"),
    (RAW[:3000], r"truncated: header needs 4864 bytes"),
    (RAW[:HEADER + 20], r"no data records"),
    (_field(RAW, 236, 8, "20000"), r"declares 20000 data records but 16294 whole records follow"),
    (_field(RAW, 244, 8, "0"), r"byte 244: .*data record duration.* out of range"),
    (_field(RAW, 252, 4, "17"), r"byte 184: inconsistent header"),
    (_signal_field(10, 120, 8, "-40000"), r"signal SpO2: digital range wider than 16 bits"),
    (_signal_field(14, 128, 8, "4095"), r"signal MV: sample width 1 byte\(s\) disagrees"),
    (_signal_field(7, 216, 8, "0"), r"signal BreathFrequency: samples per record out of range"),
    (_signal_field(3, 104, 8, "abc"), r"header field 'physical minimum' is not a number"),
    (_field(RAW, 88, 80, "Recording start at Thu, 31.02.2026 23:04:33"), r"not a real date"),
])
def test_broken_header_is_one_line_naming_the_field(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message) as err:
        parse_bytes(data, "signal_001.wmedf", patient_id=PID, fmt="lowenstein_wmedf")
    text = str(err.value)
    assert text.startswith("signal_001.wmedf: ") and "\n" not in text


def test_patient_is_required() -> None:
    with pytest.raises(ParseError, match="patient id required for lowenstein_wmedf"):
        parse_bytes(RAW, "s.wmedf")


def test_respmon_parse_golden(capsys: pytest.CaptureFixture[str]) -> None:
    """`respmon parse FILE --patient P` as a user runs it: the summary line is the golden."""
    from respmon.cli import main

    assert main(["parse", str(SAMPLE), "--patient", PID]) == 0
    lines = [line.replace(str(SAMPLE), Path(SAMPLE).name) for line in capsys.readouterr().out.splitlines()]
    check_golden("respmon_parse_lowenstein", lines)


def test_struct_of_sample_header() -> None:
    """The recording field the detector keys on, as the real file writes it."""
    assert RAW[:8] == b"1       " and b"Recording start at Thu, 14.05.2026 23:04:33" in RAW[88:168]
    assert struct.unpack("<b", RAW[HEADER + _signal_offset("SpO2") : HEADER + _signal_offset("SpO2") + 1]) == (0,)
