"""The vectorised codec and per-minute aggregates give exactly what the first implementation gave (issue 17):
the same blob content, the same lists, the same errors, on the sample files and on generated edge cases."""

import contextlib
import struct
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.parsers import parse_path
from respmon.core.signals import encode_signal, minute_aggregates, minute_tenths
from schemas import OximetryNight
from schemas.samples import series_array

DATA = Path(__file__).resolve().parents[2] / "data"
SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "samples"


# --- the implementation before issue 17, kept as the reference ------------------------------------

def reference_encode(values: Sequence[float | None] | np.ndarray) -> bytes:
    arr = np.asarray(values, dtype=float)
    valid = ~np.isnan(arr)
    if valid.any() and (arr[valid].min() < 0 or arr[valid].max() > 3276.7):
        raise ValueError("signal value outside 0-3276.7 cannot be encoded")
    tenths = np.where(valid, np.rint(np.nan_to_num(arr) * 10), -1).astype("<i2")
    shuffled = tenths.view(np.uint8).reshape(-1, 2).T.tobytes()
    return struct.pack("<4sI", b"RSG1", len(tenths)) + zlib.compress(shuffled, 6)


def reference_aggregates(values: Sequence[float | None] | np.ndarray, interval_s: float
                         ) -> dict[str, list[int | None]]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"min": [], "mean": [], "max": [], "n": []}
    minute = (np.arange(arr.size) * interval_s // 60).astype(np.int64)
    size = int(minute[-1]) + 1
    valid = ~np.isnan(arr)
    n = np.bincount(minute[valid], minlength=size)
    total = np.bincount(minute[valid], weights=arr[valid], minlength=size)
    lo = np.full(size, np.inf)
    hi = np.full(size, -np.inf)
    np.minimum.at(lo, minute[valid], arr[valid])
    np.maximum.at(hi, minute[valid], arr[valid])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = total / n
    empty = n == 0

    def tenths(x: np.ndarray) -> list[int | None]:
        out: list[int | None] = np.where(empty, 0, np.rint(x * 10)).astype(np.int64).tolist()
        for minute_ in np.flatnonzero(empty).tolist():
            out[minute_] = None
        return out

    return {"min": tenths(lo), "mean": tenths(mean), "max": tenths(hi), "n": n.tolist()}


# --- comparisons ------------------------------------------------------------------------------------

def nights() -> list[OximetryNight]:
    """Every oximetry night the sample files hold (O2Ring CSV and binary, Checkme, generic CSV, FHIR)."""
    found = []
    for folder in (DATA, SAMPLES):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if not path.is_file():
                continue
            with contextlib.suppress(Exception):  # not a file of a parser: nothing to compare
                found += [r for r in parse_path(path, patient_id="P-ref") if isinstance(r, OximetryNight)]
    return found


def assert_same(values: Sequence[float | None] | np.ndarray, interval_s: float) -> None:
    assert minute_aggregates(values, interval_s) == reference_aggregates(values, interval_s)
    try:
        expected = reference_encode(values)
    except ValueError as error:
        with pytest.raises(ValueError, match=str(error)):
            encode_signal(values)
    else:  # the same header and the same bytes under zlib (whose level changed: `signals.LEVEL`)
        blob = encode_signal(values)
        assert blob[:8] == expected[:8] and zlib.decompress(blob[8:]) == zlib.decompress(expected[8:])


def test_sample_nights_encode_and_aggregate_as_before() -> None:
    found = nights()
    assert len(found) >= 5
    for night in found:
        for series in (night.spo2, night.pulse, *(() if night.motion is None else (night.motion,))):
            assert_same(series_array(series), night.interval_s)


@pytest.mark.parametrize("interval_s", [1.0, 2.0, 4.0, 4, 0.5, 1.5, 7.0, 13.0, 59.0, 60.0, 61.0, 150.0, 1 / 3])
@pytest.mark.parametrize("size", [0, 1, 59, 60, 61, 119, 7_200, 7_201])
def test_edge_lengths_gaps_and_intervals(interval_s: float, size: int) -> None:
    rng = np.random.default_rng(size)
    values = np.round(rng.uniform(80, 100, size), 1)
    values[rng.random(size) < 0.2] = np.nan
    if size > 200:
        values[100:200] = np.nan  # whole minutes without a reading
    assert_same(values, interval_s)
    assert_same(np.full(size, np.nan), interval_s)  # all missing
    assert_same([None] * size, interval_s)
    assert_same(values.tolist(), interval_s)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # an infinite minute, as before
def test_out_of_range_values_are_refused_as_before() -> None:
    for bad in ([95.0, -0.1], [3276.8], [np.inf, 90.0], [None, -np.inf], [3276.7, 0.0, -0.0]):
        assert_same(bad, 4.0)


def test_arrays_keep_zero_where_a_minute_is_empty() -> None:
    agg = minute_tenths([None, 95.0, None, None], 30.0)
    assert agg.empty.tolist() == [False, True] and agg.min.tolist() == [950, 0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 3276.7).map(lambda v: round(v, 1))), max_size=500),
       st.sampled_from([1.0, 2.0, 3.0, 4.0, 0.5, 2.5, 8.0, 30.0, 60.0]))
def test_any_series_matches_the_reference(values: list[float | None], interval_s: float) -> None:
    assert_same(values, interval_s)
