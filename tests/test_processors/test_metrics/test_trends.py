"""Trend statistics with hand-computed expectations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from processors.metrics.trends import (
    SlopeResult,
    baseline_deviation,
    count_last,
    fvc_slope,
    projected_crossing,
    rolling_median,
)

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def series(slope_per_month: float, start: float, days: list[float]) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(days=d), start + slope_per_month * d / 30.4) for d in days]


def test_theil_sen_slope_survives_one_bad_session() -> None:
    # 7 monthly sessions on a line of -2.7 %pred/month from 80 %; session 6 is a bad effort
    # (35 points low) at day 150. 15 of the 21 pairwise slopes are exactly -2.7, 5 are far
    # below and 1 far above, so the median (11th) is -2.7.
    pts = series(-2.7, 80.0, [0, 30, 60, 90, 120, 150, 180])
    pts[5] = (pts[5][0], pts[5][1] - 35.0)
    r = fvc_slope(pts)
    assert r.estimable and r.reason is None
    assert r.n == 7 and r.span_days == pytest.approx(180)
    assert r.slope_per_month == pytest.approx(-2.7, abs=1e-9)
    # fitted value at the last session: 80 - 2.7 * 180 / 30.4 = 64.0132
    assert r.intercept_now == pytest.approx(80 - 2.7 * 180 / 30.4, abs=1e-9)
    assert r.last_date == date(2026, 6, 30)
    # ordinary least squares would be pulled far off by the same session
    x = np.array([(t - T0).days for t, _ in pts]) / 30.4
    ols = np.polyfit(x, [v for _, v in pts], 1)[0]
    assert abs(ols - -2.7) > 0.5


def test_slope_window_and_order() -> None:
    # a session 200 d before the last one is outside the 180 d window and ignored
    pts = series(-3.0, 70.0, [0, 60, 120]) + [(T0 - timedelta(days=80), 10.0)]
    r = fvc_slope(list(reversed(pts)))
    assert r.n == 3 and r.slope_per_month == pytest.approx(-3.0)
    assert fvc_slope(pts, window_days=365).n == 4


def test_slope_not_estimable() -> None:
    r = fvc_slope(series(-3.0, 70.0, [0, 90]))
    assert not r.estimable and r.slope_per_month is None and r.intercept_now is None
    assert "2 session" in r.reason and r.n == 2
    r = fvc_slope(series(-3.0, 70.0, [0, 20, 45]))
    assert not r.estimable and "45 d" in r.reason and r.span_days == pytest.approx(45)
    assert fvc_slope([]).reason == "no sessions"
    assert fvc_slope(series(-3.0, 70.0, [0, 20, 45]), min_span_days=40).estimable


def test_projected_crossing_by_hand() -> None:
    # fit 62 % at 2026-01-01, slope -3 %/month: (62 - 50) / 3 * 30.4 = 121.6 d -> floor 121 d
    # -> 2026-05-02
    s = SlopeResult(-3.0, 62.0, 5, 150.0, True, None, date(2026, 1, 1))
    assert projected_crossing(s, 50.0, date(2026, 1, 1)) == date(2026, 5, 2)
    assert projected_crossing(s) == date(2026, 5, 2)  # as_of defaults to the last session
    # threshold 30 %: 32 / 3 * 30.4 = 324.27 d -> 2026-11-21
    assert projected_crossing(s, threshold=30.0) == date(2026, 11, 21)
    # already below: the date it crossed, in the past: (48 - 50)/3*30.4 = -20.27 -> -21 d
    below = SlopeResult(-3.0, 48.0, 5, 150.0, True, None, date(2026, 1, 1))
    assert projected_crossing(below) == date(2025, 12, 11)


def test_projected_crossing_none() -> None:
    assert projected_crossing(SlopeResult(0.0, 62.0, 5, 150.0, True, None, date(2026, 1, 1))) is None
    assert projected_crossing(SlopeResult(1.2, 62.0, 5, 150.0, True, None, date(2026, 1, 1))) is None
    assert projected_crossing(SlopeResult(None, None, 2, 10.0, False, "few", None), as_of=date(2026, 1, 1)) is None


def test_projected_crossing_beyond_the_calendar_is_clamped_to_its_ends() -> None:
    # -1e-4 %/month from 62 %: 3.6 million days ahead, after 9999-12-31; -1e-5 from 48 %: before year 1
    assert projected_crossing(SlopeResult(-1e-4, 62.0, 5, 150.0, True, None, date(2026, 1, 1))) == date.max
    assert projected_crossing(SlopeResult(-1e-5, 48.0, 5, 150.0, True, None, date(2026, 1, 1))) == date.min
    assert projected_crossing(SlopeResult(-1e-300, 62.0, 5, 150.0, True, None, date(2026, 1, 1))) == date.max


def test_projection_from_a_fit() -> None:
    # line from 80 % at -2.7 %/month; last session day 180: fit 64.0132; (64.0132 - 50) / 2.7
    # * 30.4 = 157.76 d -> 157 d after 2026-06-30 = 2026-12-04
    r = fvc_slope(series(-2.7, 80.0, [0, 45, 90, 135, 180]))
    assert projected_crossing(r) == date(2026, 12, 4)


def test_rolling_median() -> None:
    vals = [None, 1.0, 5.0, None, 3.0, 10.0]
    assert rolling_median(vals, 3) == 5.0  # 10, 3, 5
    assert rolling_median(vals, 2) == 6.5  # 10, 3
    assert rolling_median(vals, 10) == 4.0  # 1, 5, 3, 10
    assert rolling_median([None, float("nan")], 3) is None
    assert rolling_median([], 3) is None
    with pytest.raises(ValueError):
        rolling_median(vals, 0)


def test_count_last() -> None:
    flags = [True, True, None, True, False, True]
    assert count_last(flags, 3) == 2  # True, False, True
    assert count_last(flags, 4) == 2  # None occupies a slot, never counts
    assert count_last(flags, 10) == 4
    assert count_last([], 3) == 0


def test_baseline_deviation_windows() -> None:
    # as_of 2026-01-31, recent 7 d = Jan 25..31, baseline 90 d = 2025-10-27..2026-01-24
    as_of = date(2026, 1, 31)
    hist = [(as_of - timedelta(days=k), 15.0) for k in range(7, 97)]  # Jan 24 back to Oct 27
    hist += [(as_of - timedelta(days=k), 18.0) for k in range(7)]  # Jan 25..31
    hist += [(date(2025, 10, 26), 100.0), (date(2026, 2, 1), 100.0)]  # outside both windows
    d = baseline_deviation(hist, recent_days=7, as_of=as_of)
    assert (d.n_baseline, d.n_recent) == (90, 7)
    assert d.baseline_median == 15.0 and d.recent_median == 18.0
    assert d.pct_change == pytest.approx(20.0)  # (18 - 15) / 15


def test_baseline_deviation_defaults_and_gaps() -> None:
    hist = [(date(2026, 1, 10), 10.0), (date(2026, 1, 20), 12.0), (date(2026, 1, 30), 9.0)]
    d = baseline_deviation(hist, recent_days=5)  # as_of = Jan 30
    assert (d.recent_median, d.baseline_median, d.n_recent, d.n_baseline) == (9.0, 11.0, 1, 2)
    assert d.pct_change == pytest.approx(-100 * 2 / 11)
    empty = baseline_deviation(hist, recent_days=5, as_of=date(2026, 6, 1))
    assert empty.recent_median is None and empty.baseline_median is None and empty.pct_change is None
    assert baseline_deviation([], recent_days=7).n_recent == 0
