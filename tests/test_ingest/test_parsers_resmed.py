"""ResMed SD cards: OSCAR-style goldens on real AirSense 10 / AirCurve 10 files, plus clinical spot checks."""

from __future__ import annotations

import shutil
import struct
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from ingest_testlib import AIRCURVE, AIRCURVE_DAY, AIRSENSE, AIRSENSE_DAY, check_golden, dump

from ingest.parsers import ParseError, detect_format, parse_bytes, parse_path, resmed_event_counts
from schemas import NivNight, OximetryNight

PID = "ALS-001"
GOLDEN_FILES = [
    ("airsense10_autoset", AIRSENSE / "STR.edf"),
    ("aircurve10_vauto", AIRCURVE / "STR.edf"),
    ("airsense10_autoset", AIRSENSE_DAY / "20241127_004016_PLD.edf"),
    ("aircurve10_vauto", AIRCURVE_DAY / "20250202_223725_PLD.edf"),
    ("airsense10_autoset", AIRSENSE_DAY / "20241127_004016_SAD.edf"),
    ("aircurve10_vauto", AIRCURVE_DAY / "20250202_223725_SAD.edf"),
]
EVENT_FILES = [
    ("airsense10_autoset", AIRSENSE_DAY / "20241127_004009_EVE.edf"),
    ("airsense10_autoset", AIRSENSE_DAY / "20241127_004009_CSL.edf"),
    ("aircurve10_vauto", AIRCURVE_DAY / "20250202_223717_EVE.edf"),
]


def _night(records: list[NivNight], day: date) -> NivNight:
    (night,) = [r for r in records if r.night_date == day]
    return night


@pytest.fixture(scope="module")
def airsense_str() -> list[NivNight]:
    return parse_path(AIRSENSE / "STR.edf", patient_id=PID)


@pytest.fixture(scope="module")
def aircurve_str() -> list[NivNight]:
    return parse_path(AIRCURVE / "STR.edf", patient_id=PID)


@pytest.mark.parametrize(("card", "path"), GOLDEN_FILES, ids=lambda v: getattr(v, "name", v))
def test_file_matches_golden(card: str, path: Path) -> None:
    check_golden(f"{card}_{path.stem}", dump(parse_path(path, patient_id=PID)))


@pytest.mark.parametrize(("card", "path"), EVENT_FILES, ids=lambda v: getattr(v, "name", v))
def test_event_counts_match_golden(card: str, path: Path) -> None:
    check_golden(f"{card}_{path.stem}", resmed_event_counts(path.read_bytes(), path.name))


def test_str_one_night_per_used_day(airsense_str: list[NivNight], aircurve_str: list[NivNight]) -> None:
    assert len(airsense_str) == 244  # 367 STR days, 244 with therapy (sample README)
    assert len(aircurve_str) == 100
    assert all(n.usage_hours > 0 for n in airsense_str + aircurve_str)
    assert len({n.night_date for n in airsense_str}) == 244


def test_airsense_night_values(airsense_str: list[NivNight]) -> None:
    night = _night(airsense_str, date(2025, 11, 26))  # the 00:40 session of 27 Nov belongs to the night of the 26th
    assert night.usage_hours == pytest.approx(442 / 60, abs=0.001)  # Duration 442 min
    assert night.leak_p95_lpm == pytest.approx(12.0)  # Leak.95 0.20 L/s x 60
    assert night.ahi == pytest.approx(10.8)
    assert night.resp_rate == pytest.approx(16.2)
    assert night.tidal_volume_ml == pytest.approx(440)  # TidVol.50 0.44 L
    assert night.minute_vent_lpm == pytest.approx(7.25)
    assert night.spo2_mean is None  # no oximeter: SpO2.50 is -1
    assert night.pct_spont_triggered is None  # CPAP has no SpontCyc%
    assert night.mask_sessions == 1
    assert night.device_model == "AirSense 10 AutoSet"
    assert night.leak_kind == "unintentional"


def test_airsense_high_leak_night(airsense_str: list[NivNight]) -> None:
    night = _night(airsense_str, date(2025, 11, 22))
    assert night.leak_p95_lpm == pytest.approx(22.8)  # 0.38 L/s: just under the 24 L/min seal threshold
    assert night.ahi == pytest.approx(15.3)


def test_aircurve_bilevel_night(aircurve_str: list[NivNight]) -> None:
    night = _night(aircurve_str, date(2024, 11, 5))
    assert night.usage_hours == pytest.approx(574 / 60, abs=0.001)
    assert night.leak_p50_lpm == pytest.approx(6.0)
    assert night.leak_p95_lpm == pytest.approx(8.4)
    assert night.pct_spont_triggered == pytest.approx(92.5)
    assert night.mask_sessions == 8  # 8 MaskOn slots used, MaskEvents 16
    assert night.device_model == "AirCurve 10 VAuto"


def test_eve_counts_agree_with_str_ahi(airsense_str: list[NivNight]) -> None:
    counts = resmed_event_counts((AIRSENSE_DAY / "20241127_004009_EVE.edf").read_bytes(), "EVE.edf")
    assert counts == {"Obstructive Apnea": 12, "Central Apnea": 59, "Hypopnea": 9, "Apnea": 0}
    night = _night(airsense_str, date(2025, 11, 26))
    assert sum(counts.values()) / night.usage_hours == pytest.approx(night.ahi, abs=0.2)


def test_aircurve_eve_counts() -> None:
    counts = resmed_event_counts((AIRCURVE_DAY / "20250202_223717_EVE.edf").read_bytes(), "EVE.edf")
    assert counts["Central Apnea"] == 10 and counts["Hypopnea"] == 2 and counts["Obstructive Apnea"] == 0


def test_pld_session_summary_agrees_with_str(airsense_str: list[NivNight]) -> None:
    (session,) = parse_path(AIRSENSE_DAY / "20241127_004016_PLD.edf", patient_id=PID)
    night = _night(airsense_str, date(2025, 11, 26))
    assert session.night_date == night.night_date
    assert session.usage_hours == pytest.approx(7.35)  # 441 one-minute records
    assert session.leak_p95_lpm == pytest.approx(night.leak_p95_lpm, abs=2.0)
    assert session.resp_rate == pytest.approx(night.resp_rate, abs=0.5)
    assert session.tidal_volume_ml == pytest.approx(night.tidal_volume_ml, abs=20)
    assert session.source == night.source == "resmed_str"  # the same night's row: the session completes it
    assert session.basis == "sessions" and session.ahi is None


def test_sad_without_oximeter_gives_no_record() -> None:
    for path in (AIRSENSE_DAY / "20241127_004016_SAD.edf", AIRCURVE_DAY / "20250202_223725_SAD.edf"):
        assert parse_bytes(path.read_bytes(), path.name, patient_id=PID) == []


def _sad_with_readings() -> bytes:
    """The real SAD with the first 2 minutes replaced by readings (header 1024 B, records of 60+60+1 samples)."""
    data = bytearray((AIRSENSE_DAY / "20241127_004016_SAD.edf").read_bytes())
    for record in range(2):
        base = 1024 + record * 242
        pulse = [62 + i % 3 for i in range(60)]
        spo2 = [94 - (i == 30) * 6 for i in range(60)]
        if record == 1:
            spo2[10:15] = [-1] * 5  # finger out
        struct.pack_into("<60h60h", data, base, *pulse, *spo2)
    return bytes(data)


def test_sad_with_oximeter_gives_oximetry_on_niv() -> None:
    (night,) = parse_bytes(_sad_with_readings(), "20241127_004016_SAD.edf", patient_id=PID, tz="Europe/Paris")
    assert isinstance(night, OximetryNight)
    assert night.on_niv is True and night.interval_s == 1.0
    assert night.start == datetime(2025, 11, 27, 0, 40, 17, tzinfo=timezone(timedelta(hours=1)))
    assert len(night.spo2) == 441 * 60
    assert night.spo2[0] == 94 and night.spo2[30] == 88 and night.pulse[0] == 62
    assert night.spo2[70:75] == [None] * 5
    assert night.spo2[120:] == [None] * (len(night.spo2) - 120)  # the rest of the night: -1 -> None


def test_card_folder(tmp_path: Path) -> None:
    records = parse_path(AIRSENSE, patient_id=PID)
    assert len(records) == 244  # STR nights; SAD without oximeter adds nothing; the PLD night merges into STR's
    assert {r.source for r in records} == {"resmed_str"}
    card = tmp_path / "card"
    shutil.copytree(AIRCURVE, card)
    (card / "STR.edf").unlink()
    (session,) = parse_path(card, patient_id=PID)  # without STR, the PLD session stands in for the night
    assert session.basis == "sessions" and session.night_date == date(2025, 2, 2)
    assert session.device_model == "AirCurve 10 VAuto"


def test_detect_by_name_and_labels() -> None:
    eve = (AIRSENSE_DAY / "20241127_004009_EVE.edf").read_bytes()
    assert detect_format("20241127_004009_CSL.edf", eve) == "resmed_eve"
    assert detect_format("upload.edf", (AIRCURVE / "STR.edf").read_bytes()) == "resmed_str"
    assert detect_format("upload.edf", (AIRCURVE_DAY / "20250202_223725_SAD.edf").read_bytes()) == "resmed_sad"
    assert detect_format("upload.edf", (AIRCURVE_DAY / "20250202_223725_PLD.edf").read_bytes()) == "resmed_pld"
    assert detect_format("upload.edf", eve) == "resmed_eve"


def test_degree_sign_is_patched_not_fatal() -> None:
    raw = (AIRSENSE / "STR.edf").read_bytes()
    assert "\u00b0C".encode() in raw[: 256 * 82]  # the real header carries raw UTF-8
    assert parse_bytes(raw, "STR.edf", patient_id=PID)


def test_truncated_edf_is_a_clear_error() -> None:
    raw = (AIRSENSE / "STR.edf").read_bytes()
    with pytest.raises(ParseError, match=r"^STR\.edf: truncated EDF: header declares 367 data records") as err:
        parse_bytes(raw[:-100], "STR.edf", patient_id=PID)
    assert err.value.file == "STR.edf"
    with pytest.raises(ParseError, match="truncated EDF: 100 bytes"):
        parse_bytes(raw[:100], "STR.edf", patient_id=PID, fmt="resmed_str")
    with pytest.raises(ParseError, match="truncated EDF: header needs 20992 bytes"):
        parse_bytes(raw[:5000], "STR.edf", patient_id=PID)


def test_missing_signal_is_named() -> None:
    raw = bytearray((AIRSENSE / "STR.edf").read_bytes())
    labels = raw[256 : 256 + 16 * 81]
    index = labels.find(b"Duration        ")
    raw[256 + index : 256 + index + 16] = b"Durations       "
    with pytest.raises(ParseError, match=r"^STR\.edf: signal Duration: required signal missing$"):
        parse_bytes(bytes(raw), "STR.edf", patient_id=PID)


def test_session_with_no_records_yields_nothing() -> None:
    raw = bytearray((AIRCURVE_DAY / "20250202_223725_PLD.edf").read_bytes())
    header_bytes = int(raw[184:192])
    raw[236:244] = b"-1      "  # seen on real cards: -1 records, none present
    assert parse_bytes(bytes(raw[:header_bytes]), "x_PLD.edf", patient_id=PID) == []


def test_patient_id_required() -> None:
    with pytest.raises(ParseError, match="patient id required for resmed_str"):
        parse_bytes((AIRCURVE / "STR.edf").read_bytes(), "STR.edf")


def test_brp_is_refused_clearly() -> None:
    with pytest.raises(ParseError, match="BRP"):
        detect_format("20241127_004016_BRP.edf", (AIRCURVE_DAY / "20250202_223725_PLD.edf").read_bytes())


def test_header_patch_is_ascii_and_length_preserving() -> None:
    from ingest.parsers.common import Context
    from ingest.parsers.resmed import patch_header, read_header

    raw = (AIRSENSE / "STR.edf").read_bytes()
    header = read_header(raw, Context("STR.edf"))
    patched = patch_header(raw, header, header.num_records)
    assert len(patched) == len(raw)
    head = patched[: header.header_bytes]
    assert head.isascii() and b"degC    " in head
    assert patched[header.header_bytes :] == raw[header.header_bytes :]  # samples untouched


def _edf_field(data: bytes, offset: int, width: int, value: str) -> bytes:
    """`data` with the ASCII header field at `offset` rewritten as EDF writes it (left-aligned, space-padded)."""
    raw = bytearray(data)
    raw[offset : offset + width] = value.encode("ascii").ljust(width)
    return bytes(raw)


def _samples_offset(data: bytes, signal: int) -> int:
    """Offset of signal `signal`'s 'samples per record' field (after 216 bytes per signal of other fields)."""
    return 256 + int(data[252:256]) * 216 + 8 * signal


PLD = (AIRCURVE_DAY / "20250202_223725_PLD.edf").read_bytes()
STR_AIRCURVE = (AIRCURVE / "STR.edf").read_bytes()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("x_SAD.edf", _edf_field(_sad_with_readings(), 244, 8, "1e-9"),  # was accepted: a night of 26 us
         (r"^x_SAD\.edf: byte 244: EDF header fields 'data record duration' and 'samples per record' give signal 1 "
          r"a sampling rate above 1000 Hz$")),
        ("x_SAD.edf", _edf_field(_sad_with_readings(), 244, 8, "0.001"),
         r"byte 244: .*'data record duration' .* above 1000 Hz"),
        ("x_PLD.edf", _edf_field(PLD, 244, 8, "0"),
         r"^x_PLD\.edf: byte 244: EDF header field 'data record duration' is 0 but the file has signals"),
        ("STR.edf", _edf_field(STR_AIRCURVE, 244, 8, "172800"),
         r"^STR\.edf: byte 244: EDF header field 'data record duration' out of range \(0-86400 s\)$"),
        ("x_PLD.edf", _edf_field(PLD, _samples_offset(PLD, 1), 8, "99999999"),
         (rf"^x_PLD\.edf: byte {_samples_offset(PLD, 1)}: EDF header field 'samples per record' out of range "
          r"\(signal 2\)$")),
        ("x_PLD.edf", _edf_field(PLD, 236, 8, "9999999"),
         (r"^x_PLD\.edf: truncated EDF: header declares 9999999 data records \(\d+ bytes\) but only 74290 bytes "
          r"of data follow \(field 'number of data records', byte 236\)$")),
        ("x_PLD.edf", _edf_field(PLD, 236, 8, "-5"),
         r"^x_PLD\.edf: byte 236: EDF header field 'number of data records' is negative$"),
    ],
    ids=["duration-1e-9", "duration-1ms", "duration-0", "duration-2-days", "samples-per-record", "records", "negative"],
)
def test_implausible_edf_header_is_refused_naming_the_field(name: str, data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_bytes(data, name, patient_id=PID)
    with pytest.raises(ParseError, match=message.replace(name.replace(".", r"\."), "upload\\.edf")):
        parse_bytes(data, "upload.edf", patient_id=PID)  # detected by its labels: the header is checked first


def test_annotation_files_keep_their_zero_record_duration() -> None:
    eve = AIRSENSE_DAY / "20241127_004009_EVE.edf"
    assert eve.read_bytes()[244:252].strip() == b"0.00"  # EDF+ allows 0 for a file of annotations only
    assert resmed_event_counts(eve.read_bytes(), eve.name)["Central Apnea"] == 59
