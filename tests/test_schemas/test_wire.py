"""The Kafka message of an envelope: binary (msgpack, v2) round trips exactly, and the previous release's
JSON envelopes are still read, to the same envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgpack
import numpy as np
import pytest
from pydantic import ValidationError

from ingest.parsers import PatientMismatch, parse_path
from schemas import CareStateChange, Envelope, OximetryNight, WireError, decode_envelope, encode_envelope
from tests.scenarios import all_scenarios

DATA = Path(__file__).parents[1] / "data" / "synthetic"
AT = datetime(2026, 3, 9, 7, tzinfo=UTC)


def _envelope(record: object) -> Envelope:
    return Envelope(upload_id="00000000-0000-4000-8000-000000000001", device_id="dev-1", received_at=AT,
                    record=record)  # type: ignore[arg-type]


def _records() -> list[object]:
    """Every kind the scenarios build, and the real device files' records."""
    records: list[object] = [r for s in all_scenarios() for r in s.records if not isinstance(r, CareStateChange)]
    for name in ("O2Ring_20260308223000.csv", "O2Ring_20260310223000.bin", "Checkme_O2_Max_20260309230000.csv",
                 "oximetry_generic.csv", "tcco2_night.csv", "niv.csv", "spirometry.csv", "blood_gas.csv",
                 "alsfrs.json", "fhir_bundle.json"):
        try:
            records += parse_path(DATA / name, patient_id="ALS-001")
        except PatientMismatch:  # a file that names its own patient
            records += parse_path(DATA / name)
    return records


RECORDS = _records()


def test_every_kind_is_covered() -> None:
    assert {type(r).__name__ for r in RECORDS} >= {"OximetryNight", "CapnographyNight", "NivNight",
                                                   "SpirometrySession", "AlsfrsR", "BloodGas"}


@pytest.mark.parametrize("index", range(len(RECORDS)))
def test_binary_envelope_round_trips_exactly(index: int) -> None:
    env = _envelope(RECORDS[index])
    back = decode_envelope(encode_envelope(env))
    assert back == env
    assert back.model_dump_json() == env.model_dump_json()  # what the worker stores and prints is the same


@pytest.mark.parametrize("index", range(len(RECORDS)))
def test_a_json_envelope_of_the_previous_release_reads_the_same(index: int) -> None:
    env = _envelope(RECORDS[index])
    old = env.model_dump_json().encode()  # how ingest published until now
    assert decode_envelope(old) == decode_envelope(encode_envelope(env)) == env


def test_values_that_are_not_whole_tenths_travel_exactly() -> None:
    spo2 = np.array([95.25, np.nan, 93.123456789, 0.0, 3276.7])
    night = OximetryNight(patient_id="P", start=AT, interval_s=1, spo2=spo2, pulse=np.full(5, 60.0))
    back = decode_envelope(encode_envelope(_envelope(night))).record
    assert isinstance(back, OximetryNight)
    assert np.array_equal(back.spo2.array, spo2, equal_nan=True)


def test_an_oximetry_night_is_less_than_half_its_json() -> None:
    night = next(r for r in RECORDS if isinstance(r, OximetryNight) and len(r.spo2) >= 7000)
    env = _envelope(night)
    assert len(encode_envelope(env)) * 2 < len(env.model_dump_json())  # 2 bytes a sample against ~5


def test_a_series_out_of_range_is_refused_by_the_schema_like_in_json() -> None:
    env = _envelope(next(r for r in RECORDS if isinstance(r, OximetryNight)))
    message = msgpack.unpackb(encode_envelope(env))
    tenths = np.frombuffer(message["record"]["spo2"]["b"], dtype="<i2").copy()
    tenths[3] = -7  # not the no-reading code: a negative saturation
    message["record"]["spo2"]["b"] = tenths.tobytes()
    with pytest.raises(ValidationError) as err:
        decode_envelope(msgpack.packb(message))
    assert err.value.errors()[0]["loc"][:3] == ("record", "oximetry_night", "spo2")


@pytest.mark.parametrize("raw", [
    msgpack.packb({"v": 3, "upload_id": "u"}),  # a version this release does not know
    msgpack.packb([1, 2, 3]),
    b"\xc1garbage",
])
def test_bytes_that_are_no_known_envelope_are_refused(raw: bytes) -> None:
    with pytest.raises(WireError):
        decode_envelope(raw)


def test_a_corrupt_series_is_refused() -> None:
    env = _envelope(next(r for r in RECORDS if isinstance(r, OximetryNight)))
    message = msgpack.unpackb(encode_envelope(env))
    message["record"]["pulse"]["b"] = message["record"]["pulse"]["b"][:-1]
    with pytest.raises(WireError):
        decode_envelope(msgpack.packb(message))


def test_the_version_is_in_the_message() -> None:
    message = msgpack.unpackb(encode_envelope(_envelope(RECORDS[0])))
    assert message["v"] == 2 and json.loads(json.dumps(message["received_at"])) == AT.isoformat()
