"""Signal codec `respmon-sig/1`: a night's 1 Hz SpO2/pulse/motion as int16 tenths, zlib-compressed,
plus per-minute min/mean/max aggregates. The worker writes it (`processors.store`), the read side
(`respmon.queries`, the web view) decodes it: one definition for both ends."""

import struct
import warnings
import zlib
from collections.abc import Sequence

import numpy as np

CODEC = "respmon-sig/1"
_MAGIC = b"RSG1"
_HEADER = struct.Struct("<4sI")
_NULL = -1  # SpO2, pulse and motion are never negative once parsed


def as_array(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Samples as float64, NaN for None (numpy converts None itself, twice as fast as a comprehension);
    a float64 array is used as it is, not copied (nothing here writes into it)."""
    return np.asarray(values, dtype=float)


def encode_signal(values: Sequence[float | None] | np.ndarray) -> bytes:
    """`respmon-sig/1`: header `RSG1` + sample count (uint32 LE), then zlib of the values in tenths
    as int16 LE (None -> -1), byte-shuffled (all low bytes, then all high bytes).

    Lossless for the one-decimal values the parsers produce (range 0-3276.7). Delta coding was
    tried and dropped: on noisy signals it compresses worse than shuffled raw values."""
    arr = as_array(values)
    valid = ~np.isnan(arr)
    if valid.any() and (arr[valid].min() < 0 or arr[valid].max() > 3276.7):
        raise ValueError("signal value outside 0-3276.7 cannot be encoded")
    tenths = np.where(valid, np.rint(np.nan_to_num(arr) * 10), _NULL).astype("<i2")
    shuffled = tenths.view(np.uint8).reshape(-1, 2).T.tobytes()  # low bytes, then high bytes
    return _HEADER.pack(_MAGIC, len(tenths)) + zlib.compress(shuffled, 6)


def decode_signal(blob: bytes | memoryview) -> np.ndarray:
    """The float64 samples of an `encode_signal` blob, NaN where there was no reading."""
    blob = bytes(blob)
    magic, n = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError("not a respmon-sig/1 signal")
    raw = np.frombuffer(zlib.decompress(blob[_HEADER.size:]), dtype=np.uint8)
    if raw.size != 2 * n:
        raise ValueError("corrupt respmon-sig/1 signal: wrong length")
    tenths = raw.reshape(2, n).T.copy().view("<i2").ravel()
    return np.where(tenths == _NULL, np.nan, tenths / 10.0)


def minute_aggregates(values: Sequence[float | None] | np.ndarray, interval_s: float) -> dict[str, list[int | None]]:
    """Per clock minute from the start: min, mean, max in tenths (None if no valid sample) and count."""
    arr = as_array(values)
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
        """Rounded half to even, as Python's round(); None for a minute without a valid sample."""
        out: list[int | None] = np.where(empty, 0, np.rint(x * 10)).astype(np.int64).tolist()
        for minute_ in np.flatnonzero(empty).tolist():
            out[minute_] = None
        return out

    return {"min": tenths(lo), "mean": tenths(mean), "max": tenths(hi), "n": n.tolist()}
