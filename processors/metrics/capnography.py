"""Overnight transcutaneous CO2 (TcCO2) metrics: level, time above 50 and 55 mmHg, rise over baseline.

Written out in ``processors/metrics/DEFINITIONS.md`` (section 5); the numbers below are the pinned
constants. They measure what the AASM adult sleep-hypoventilation criteria read (TcCO2 > 55 mmHg for
>= 10 min; a rise >= 10 mmHg over the awake value to > 50 mmHg for >= 10 min); the rules decide. At home
there is no sleep staging and no awake supine value: the baseline is the first hour's median.
Durations come from ``interval_s``, never sample counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from schemas.capnography import TCPCO2_PLAUSIBLE, CapnographyNight
from schemas.samples import series_array

__all__ = [
    "BASELINE_MIN_VALID_S",
    "BASELINE_WINDOW_S",
    "HIGH_MMHG",
    "RISE_FLOOR_MMHG",
    "RISE_MMHG",
    "RUN_GAP_BRIDGE_S",
    "TCPCO2_RANGE",
    "CapnographyMetrics",
    "night_metrics",
]

TCPCO2_RANGE = TCPCO2_PLAUSIBLE
"""Inclusive plausible TcCO2 (mmHg); anything else (0, device codes, a file in kPa) is not a reading."""
SPO2_RANGE = (50.0, 100.0)
ELEVATED_MMHG = 50.0
HIGH_MMHG = 55.0
RISE_MMHG = 10.0
RISE_FLOOR_MMHG = 50.0
BASELINE_WINDOW_S = 3600.0
"""The baseline is read over the first hour of the recording ..."""
BASELINE_MIN_VALID_S = 1800.0
"""... and exists only when that hour holds at least 30 min of valid samples."""
RUN_GAP_BRIDGE_S = 60.0
"""Invalid gaps up to this long are bridged inside a run: TcCO2 moves over minutes, not seconds."""
MIN_VALID_HOURS = 4.0
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class CapnographyMetrics:
    """One TcCO2 night. Minutes are valid samples x interval; None when undefined (no valid sample, or
    no baseline for the rise values)."""

    night_date: date
    valid: bool
    invalid_reason: str | None
    recording_min: float
    valid_min: float
    mean_tcpco2: float | None
    max_tcpco2: float | None
    baseline_tcpco2: float | None
    max_rise_mmhg: float | None
    gt50_min: float
    gt55_min: float
    longest_gt55_min: float
    rise10_min: float | None
    longest_rise10_min: float | None
    mean_spo2: float | None


def _night_date(night: CapnographyNight) -> date:
    """Evening date of the night (as for oximetry): start shifted back 12 h, in its own UTC offset."""
    return (night.start - timedelta(hours=12)).date()


def _valid(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Within the inclusive range; NaN (None) compares False."""
    return (values >= bounds[0]) & (values <= bounds[1])


def _longest_run_min(hit: np.ndarray, valid: np.ndarray, max_gap: int, dt: float) -> float:
    """Longest run of ``hit`` samples (valid ones): neighbours join when no valid non-hit sample lies
    between them and the invalid gap between them is at most ``max_gap`` samples. Wall-clock length,
    first to last sample inclusive."""
    at = np.flatnonzero(hit)
    if at.size == 0:
        return 0.0
    valid_before = np.concatenate(([0], np.cumsum(valid, dtype=np.int64)))
    valid_between = valid_before[at[1:]] - valid_before[at[:-1] + 1]
    joined = (valid_between == 0) & (at[1:] - at[:-1] - 1 <= max_gap)
    breaks = np.flatnonzero(~joined)
    starts = at[np.concatenate(([0], breaks + 1))]
    ends = at[np.concatenate((breaks, [at.size - 1]))]
    return float((ends - starts + 1).max()) * dt / 60.0


def _baseline(tc: np.ndarray, valid: np.ndarray, dt: float) -> float | None:
    """Median of the valid samples starting in the first hour, when they cover >= 30 min."""
    first = min(tc.size, math.ceil(BASELINE_WINDOW_S / dt - _EPS))
    head = tc[:first][valid[:first]]
    if head.size * dt < BASELINE_MIN_VALID_S - _EPS:
        return None
    return float(np.median(head))


def _mean_spo2(night: CapnographyNight) -> float | None:
    if night.spo2 is None:
        return None
    s = series_array(night.spo2)
    ok = _valid(s, SPO2_RANGE)
    return float(s[ok].mean()) if ok.any() else None


def _reason(n_valid: int, valid_min: float) -> str:
    if n_valid == 0:
        return "no valid samples"
    return f"valid recording time {valid_min:.1f} min is below the {MIN_VALID_HOURS:g} h minimum"


def night_metrics(night: CapnographyNight) -> CapnographyMetrics:
    """Metrics of one TcCO2 night (definitions: ``DEFINITIONS.md`` section 5)."""
    dt = float(night.interval_s)
    tc = series_array(night.tcpco2)  # NaN = no reading
    valid = _valid(tc, TCPCO2_RANGE)
    n_valid = int(np.count_nonzero(valid))
    per_sample = dt / 60.0
    valid_min = n_valid * per_sample
    is_valid = valid_min >= MIN_VALID_HOURS * 60.0 - _EPS
    v = np.where(valid, tc, -np.inf)  # invalid samples never exceed a threshold
    max_gap = math.floor(RUN_GAP_BRIDGE_S / dt + _EPS)
    high = v > HIGH_MMHG + _EPS
    peak = float(tc[valid].max()) if n_valid else None
    baseline = _baseline(tc, valid, dt)
    rise = None if baseline is None else (v >= baseline + RISE_MMHG - _EPS) & (v > RISE_FLOOR_MMHG + _EPS)
    return CapnographyMetrics(
        night_date=_night_date(night),
        valid=bool(is_valid),
        invalid_reason=None if is_valid else _reason(n_valid, valid_min),
        recording_min=tc.size * per_sample,
        valid_min=valid_min,
        mean_tcpco2=float(tc[valid].mean()) if n_valid else None,
        max_tcpco2=peak,
        baseline_tcpco2=baseline,
        max_rise_mmhg=None if peak is None or baseline is None else peak - baseline,
        gt50_min=int(np.count_nonzero(v > ELEVATED_MMHG + _EPS)) * per_sample,
        gt55_min=int(np.count_nonzero(high)) * per_sample,
        longest_gt55_min=_longest_run_min(high, valid, max_gap, dt),
        rise10_min=None if rise is None else int(np.count_nonzero(rise)) * per_sample,
        longest_rise10_min=None if rise is None else _longest_run_min(rise, valid, max_gap, dt),
        mean_spo2=_mean_spo2(night),
    )
