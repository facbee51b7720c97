"""The `oximetry_signals` row is built as before issue 17 (no database): the per-minute arrays' text from
numpy arrays equals the text the list-based `int_array` made, NULL minutes included."""

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.parsers import parse_path
from processors import store
from processors.metrics import oximetry as oxi_metrics
from respmon.core.signals import CODEC, encode_signal, minute_aggregates, minute_tenths
from schemas import OximetryNight
from schemas.samples import series_array

SYNTHETIC = Path(__file__).resolve().parents[1] / "data" / "synthetic"


def reference_int_array(values: Sequence[int | None]) -> str:
    """`processors.store.int_array` before issue 17."""
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def reference_row(record: OximetryNight, upload_id: str | None) -> dict[str, object]:
    """`processors.store.signal_row` before issue 17."""
    spo2, pulse = oxi_metrics.samples(record)
    s, p = minute_aggregates(spo2, record.interval_s), minute_aggregates(pulse, record.interval_s)
    return {
        "patient_id": record.patient_id, "start_at": record.start, "source": record.source,
        "interval_s": record.interval_s, "n_samples": len(record.spo2), "codec": CODEC,
        "spo2": encode_signal(spo2), "pulse": encode_signal(pulse),
        "motion": None if record.motion is None else encode_signal(series_array(record.motion)),
        "spo2_min_1m": reference_int_array(s["min"]), "spo2_mean_1m": reference_int_array(s["mean"]),
        "spo2_max_1m": reference_int_array(s["max"]), "pulse_mean_1m": reference_int_array(p["mean"]),
        "upload_id": upload_id,
    }


@pytest.mark.parametrize("name", ["O2Ring_20260308223000.csv", "O2Ring_20260310223000.bin",
                                  "Checkme_O2_Max_20260309230000.csv", "O2Ring_ampm_20260309.csv",
                                  "oximetry_generic.csv"])
def test_sample_nights_make_the_same_row(name: str) -> None:
    [night] = [r for r in parse_path(SYNTHETIC / name, patient_id="P-row") if isinstance(r, OximetryNight)]
    row = store.signal_row(night, "u-1")
    assert list(row) == list(reference_row(night, "u-1")) and row == reference_row(night, "u-1")


def test_a_night_with_whole_minutes_missing_makes_the_same_row() -> None:
    spo2: list[float | None] = [95.0] * 100 + [None] * 200 + [91.5] * 7 + [None] * 3
    night = OximetryNight(patient_id="P-gap", start=datetime(2026, 1, 2, 22, tzinfo=UTC), interval_s=4.0,
                          spo2=spo2, pulse=[None if v is None else 61.0 for v in spo2])
    row = store.signal_row(night, None)
    assert row == reference_row(night, None)
    assert "NULL" in str(row["spo2_min_1m"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 300).map(lambda v: round(v, 1))), max_size=300),
       st.sampled_from([1.0, 2.0, 4.0, 0.5, 30.0, 60.0]))
def test_array_text_matches_the_list_text(values: list[float | None], interval_s: float) -> None:
    arrays, lists = minute_tenths(values, interval_s), minute_aggregates(values, interval_s)
    for field in ("min", "mean", "max"):
        assert store.tenths_array(getattr(arrays, field), arrays.empty) == reference_int_array(lists[field])


def test_empty_series_is_an_empty_array() -> None:
    arrays = minute_tenths(np.zeros(0), 4.0)
    assert store.tenths_array(arrays.mean, arrays.empty) == "{}" == reference_int_array([])


def test_array_text_outside_the_signal_range_is_still_exact() -> None:
    values = np.array([-5, 0, 32767, 32768, 100000])
    assert store.tenths_array(values, np.array([False, True, False, False, False])) == "{-5,NULL,32767,32768,100000}"
    assert store.tenths_array(np.array([], dtype=np.int64), np.array([], dtype=bool)) == "{}"
