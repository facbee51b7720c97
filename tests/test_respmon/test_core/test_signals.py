"""The oximetry signal codec and per-minute aggregates (no database)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respmon.core.signals import decode_signal, encode_signal, minute_aggregates


def same(decoded: np.ndarray, values: list[float | None]) -> bool:
    return len(decoded) == len(values) and all(
        (v is None and math.isnan(d)) or (v is not None and abs(d - v) < 1e-9) for d, v in zip(decoded, values))


def test_round_trip_keeps_every_sample_and_gap() -> None:
    values: list[float | None] = [95.0, 94.5, None, 100.0, 0.1, 250.0, None, 88.3] * 1000
    assert same(decode_signal(encode_signal(values)), values)


def test_one_hertz_night_is_small() -> None:
    rng = np.random.default_rng(7)
    night = np.round(95 + rng.normal(0, 0.5, 28_800)).tolist()
    blob = encode_signal(night)
    assert len(blob) < 28_800  # under 1 byte per sample, against 2 as int16 or 8 as float
    assert same(decode_signal(blob), night)


def test_empty_signal() -> None:
    assert len(decode_signal(encode_signal([]))) == 0


def test_out_of_range_and_foreign_bytes_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_signal([95.0, -2.0])
    with pytest.raises(ValueError):
        decode_signal(b"XXXX\x01\x00\x00\x00")


def test_minute_aggregates_follow_the_clock_at_4_s() -> None:
    # 15 samples of 4 s = minute 0; then minute 1 has one gap-only minute's worth of None, etc.
    values: list[float | None] = [90.0] * 14 + [96.0] + [None] * 15 + [88.0, 92.0]
    agg = minute_aggregates(values, 4.0)
    assert agg["n"] == [15, 0, 2]
    assert agg["min"] == [900, None, 880]
    assert agg["max"] == [960, None, 920]
    assert agg["mean"] == [904, None, 900]  # (14*90 + 96) / 15 = 90.4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 300).map(lambda v: round(v, 1))), max_size=400),
       st.sampled_from([1.0, 2.0, 4.0, 0.5]))
def test_minute_aggregates_match_a_plain_reference(values: list[float | None], interval: float) -> None:
    """Vectorised aggregates = per-minute min/mean/max in tenths computed the obvious way."""
    minutes: dict[int, list[float]] = {}
    for i, v in enumerate(values):
        minutes.setdefault(int(i * interval // 60), [])
        if v is not None:
            minutes[int(i * interval // 60)].append(v)
    size = max(minutes) + 1 if minutes else 0
    cells = [minutes.get(m, []) for m in range(size)]
    agg = minute_aggregates(values, interval)
    assert agg["n"] == [len(c) for c in cells]
    assert agg["min"] == [round(min(c) * 10) if c else None for c in cells]
    assert agg["max"] == [round(max(c) * 10) if c else None for c in cells]
    assert agg["mean"] == [round(sum(c) / len(c) * 10) if c else None for c in cells]  # summed in order
