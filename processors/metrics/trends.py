"""Trend statistics over a patient's own history: robust FVC slope, projected threshold crossing,
rolling median, k-of-last-n counts and deviation from a personal baseline.

A month is 30.4 days everywhere in this module (slope per month and projection alike).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

__all__ = [
    "DAYS_PER_MONTH",
    "Deviation",
    "SlopeResult",
    "baseline_deviation",
    "count_last",
    "deviation_bounds",
    "deviation_of",
    "fvc_slope",
    "projected_crossing",
    "rolling_median",
]

DAYS_PER_MONTH = 30.4


@dataclass(frozen=True, slots=True)
class SlopeResult:
    """Theil-Sen fit. ``slope_per_month``/``intercept_now`` are None unless ``estimable``.

    ``intercept_now`` is the fitted value at the last session (``last_date``).
    """

    slope_per_month: float | None
    intercept_now: float | None
    n: int
    span_days: float
    estimable: bool
    reason: str | None
    last_date: date | None = None


@dataclass(frozen=True, slots=True)
class Deviation:
    """Recent median against the median of the baseline window just before it."""

    baseline_median: float | None
    recent_median: float | None
    pct_change: float | None
    n_baseline: int
    n_recent: int


def _as_date(d: date) -> date:
    return d.date() if isinstance(d, datetime) else d


def _finite(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _median(values: list[float]) -> float:
    """``float(np.median(values))`` of a short list of floats, the same value without numpy's overhead (the
    rules take three a NIV night): the middle value, or the mean of the two middle ones, computed as numpy
    does ((a + b) / 2)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    middle = ordered[mid - 1 + len(ordered) % 2:mid + 1]
    if 0.0 in middle:  # which of 0.0 and -0.0 ends in the middle is numpy's partition's choice
        return float(np.median(values))
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def fvc_slope(
    points: Sequence[tuple[datetime, float]],
    window_days: int = 180,
    min_sessions: int = 3,
    min_span_days: int = 60,
) -> SlopeResult:
    """Theil-Sen slope (median of pairwise slopes) of the points in the last ``window_days``.

    The window ends at the latest point and includes points with ``t >= t_last - window_days``.
    Pairs taken at the same instant are skipped. Intercept = median(y - slope*x) (Sen), so the
    fit is robust to a minority of bad sessions (breakdown ~29 %). Not estimable when fewer than
    ``min_sessions`` points or a span shorter than ``min_span_days`` remain. None values are
    ignored.
    """
    pts = sorted((t, float(v)) for t, v in points if _finite(v))
    if not pts:
        return SlopeResult(None, None, 0, 0.0, False, "no sessions")
    t_last = pts[-1][0]
    pts = [(t, v) for t, v in pts if t >= t_last - timedelta(days=window_days)]
    x = np.array([(t - t_last).total_seconds() / 86400.0 for t, _ in pts])
    y = np.array([v for _, v in pts])
    n = len(pts)
    span = float(x[-1] - x[0])
    last_date = _as_date(t_last)
    if n < min_sessions:
        reason = f"{n} session(s) in the last {window_days} d; at least {min_sessions} needed"
        return SlopeResult(None, None, n, span, False, reason, last_date)
    if span < min_span_days:
        reason = f"sessions span {span:.0f} d; at least {min_span_days} d needed"
        return SlopeResult(None, None, n, span, False, reason, last_date)
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    keep = dx > 0
    slope_day = float(np.median((y[j] - y[i])[keep] / dx[keep]))
    intercept = float(np.median(y - slope_day * x))  # x = 0 at the last session
    return SlopeResult(slope_day * DAYS_PER_MONTH, intercept, n, span, True, None, last_date)


def projected_crossing(slope: SlopeResult, threshold: float = 50.0, as_of: date | None = None) -> date | None:
    """Date the fitted line reaches ``threshold``: ``as_of + floor((fit - threshold)/|slope| * 30.4)`` days.

    ``fit`` is ``slope.intercept_now``, the fitted value at the last session, so ``as_of`` should
    be that session's date (the default, ``slope.last_date``). None when not estimable or the
    slope is >= 0. A fit already below the threshold gives a date in the past (when the line
    crossed). Days are floored (earlier date, the cautious side). Dates beyond the calendar are
    clamped to `date.min` / `date.max`.
    """
    if not slope.estimable or slope.slope_per_month is None or slope.intercept_now is None:
        return None
    if slope.slope_per_month >= 0:
        return None
    anchor = as_of if as_of is not None else slope.last_date
    if anchor is None:
        raise ValueError("as_of is required when the slope carries no last_date")
    days = (slope.intercept_now - threshold) / abs(slope.slope_per_month) * DAYS_PER_MONTH
    start = _as_date(anchor)
    # A nearly flat line crosses after year 9999 (or crossed before year 1): the calendar's ends stand for
    # "far in the future" and "long ago", so a rule comparing the days still decides instead of the
    # patient's whole evaluation failing with an OverflowError (NS-SLOPE with a slope of -1e-4 %/month).
    if days >= (date.max - start).days:
        return date.max
    if days <= (date.min - start).days:
        return date.min
    return start + timedelta(days=math.floor(days))


def rolling_median(values: Sequence[float | None], n: int) -> float | None:
    """Median of the last ``n`` non-None (and non-NaN) values; None when there are none."""
    if n < 1:
        raise ValueError("n must be >= 1")
    picked: list[float] = []
    for v in reversed(values):
        if _finite(v):
            picked.append(float(v))  # type: ignore[arg-type]
            if len(picked) == n:
                break
    return float(np.median(picked)) if picked else None


def count_last(flags: Sequence[bool | None], n: int) -> int:
    """How many of the last ``n`` entries are True ("k of last n").

    Positional: the window is the last ``n`` list entries, and None (unknown) occupies a slot
    but never counts. Pass only the nights that qualify (e.g. valid nights) to count over them.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    return sum(1 for f in flags[-n:] if f is True)


def baseline_deviation(
    history: Sequence[tuple[date, float | None]],
    recent_days: int,
    baseline_days: int = 90,
    as_of: date | None = None,
) -> Deviation:
    """Compare the recent window with the patient's own baseline just before it.

    Windows (dates inclusive of their right end, ``as_of`` defaults to the latest date):
    recent = ``(as_of - recent_days, as_of]``; baseline =
    ``(as_of - recent_days - baseline_days, as_of - recent_days]``. Dates after ``as_of`` and
    None values are ignored. ``pct_change = 100 * (recent - baseline) / baseline``.
    """
    rows = [(_as_date(d), float(v)) for d, v in history if _finite(v)]  # type: ignore[arg-type]
    if as_of is None:
        if not rows:
            return Deviation(None, None, None, 0, 0)
        as_of = max(d for d, _ in rows)
    base_from, recent_from, as_of = deviation_bounds(_as_date(as_of), recent_days, baseline_days)
    recent = [v for d, v in rows if recent_from < d <= as_of]
    base = [v for d, v in rows if base_from < d <= recent_from]
    return deviation_of(base, recent)


def deviation_bounds(as_of: date, recent_days: float, baseline_days: float) -> tuple[date, date, date]:
    """The windows of :func:`baseline_deviation`: baseline ``(first, second]``, recent ``(second, third]``."""
    recent_from = as_of - timedelta(days=recent_days)
    return recent_from - timedelta(days=baseline_days), recent_from, as_of


def deviation_of(base: list[float], recent: list[float]) -> Deviation:
    """:func:`baseline_deviation` of the values already split into its two windows (finite floats)."""
    r_med = _median(recent) if recent else None
    b_med = _median(base) if base else None
    pct = None
    if r_med is not None and b_med is not None and b_med != 0:
        pct = 100.0 * (r_med - b_med) / b_med
    return Deviation(b_med, r_med, pct, len(base), len(recent))
