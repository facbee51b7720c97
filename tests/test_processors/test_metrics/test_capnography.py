"""TcCO2 night metrics (processors/metrics/DEFINITIONS.md section 5) on hand-computed small series."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from processors.metrics.capnography import night_metrics
from schemas import CapnographyNight

START = datetime(2026, 3, 1, 22, tzinfo=UTC)


def night(tc: Sequence[float | None], interval_s: float = 60.0, **kw: Any) -> CapnographyNight:
    return CapnographyNight(patient_id="P", start=kw.pop("start", START), interval_s=interval_s, tcpco2=list(tc), **kw)


def test_worked_example() -> None:
    """DEFINITIONS.md: one sample a minute, 60 min at 42, 12 min at 57, 200 min at 42."""
    m = night_metrics(night([42.0] * 60 + [57.0] * 12 + [42.0] * 200))
    assert (m.recording_min, m.valid_min, m.valid, m.invalid_reason) == (272, 272, True, None)
    assert (m.baseline_tcpco2, m.max_tcpco2, m.max_rise_mmhg) == (42, 57, 15)
    assert (m.gt50_min, m.gt55_min, m.longest_gt55_min, m.rise10_min, m.longest_rise10_min) == (12, 12, 12, 12, 12)
    assert m.mean_tcpco2 == pytest.approx((42 * 260 + 57 * 12) / 272)
    assert m.night_date == date(2026, 3, 1) and m.mean_spo2 is None


def test_thresholds_are_strictly_above_and_the_rise_needs_both_parts() -> None:
    """55 is not > 55, 50 not > 50; with baseline 40, 50 rises 10 but is not above 50; 51 is both."""
    m = night_metrics(night([40.0] * 60 + [55.0] * 3 + [50.0] * 4 + [51.0] * 5 + [55.5] * 2))
    assert (m.gt55_min, m.gt50_min) == (2, 3 + 5 + 2)
    assert m.rise10_min == 3 + 5 + 2  # 55, 51, 55.5: >= 50 and > 50; the 50s are not > 50
    m = night_metrics(night([44.0] * 60 + [53.0] * 5 + [54.0] * 4))  # baseline 44: 53 rises 9, 54 rises 10
    assert m.rise10_min == 4 and m.gt50_min == 9


def test_runs_bridge_invalid_gaps_up_to_60_s_and_break_at_a_low_valid_sample() -> None:
    base = [45.0] * 120  # 1 h at 30 s
    bridged = night(base + [57.0] * 10 + [None, 0.0] + [57.0] * 10 + [45.0] * 10, interval_s=30)
    m = night_metrics(bridged)  # a 2-sample (60 s) invalid gap is bridged: 22 samples of wall clock
    assert (m.gt55_min, m.longest_gt55_min) == (10.0, 11.0)
    broken = night(base + [57.0] * 10 + [None] * 3 + [57.0] * 10 + [45.0] * 10, interval_s=30)
    assert night_metrics(broken).longest_gt55_min == 5.0  # 90 s gap: two runs of 10 samples
    dipped = night(base + [57.0] * 10 + [55.0] + [57.0] * 10 + [45.0] * 10, interval_s=30)  # 55: not > 55,
    assert night_metrics(dipped).longest_gt55_min == 5.0  # so the run breaks there,
    assert night_metrics(dipped).longest_rise10_min == 10.5  # but it is a 10 mmHg rise over 45 to > 50


def test_baseline_needs_30_minutes_of_the_first_hour() -> None:
    """First hour = samples starting before 3600 s; 29 valid minutes give no baseline, 30 do."""
    short = night_metrics(night([40.0] * 29 + [None] * 31 + [60.0] * 20))
    assert short.baseline_tcpco2 is None and short.rise10_min is None and short.longest_rise10_min is None
    assert short.max_rise_mmhg is None and short.gt55_min == 20  # the level criteria still work
    enough = night_metrics(night([40.0] * 30 + [None] * 30 + [60.0] * 20))
    assert enough.baseline_tcpco2 == 40 and enough.rise10_min == 20 and enough.max_rise_mmhg == 20


def test_baseline_is_the_median_of_the_first_hour_only() -> None:
    m = night_metrics(night([41.0, 42.0, 43.0, 60.0] * 15 + [70.0] * 60))  # later values do not move it
    assert m.baseline_tcpco2 == 42.5


def test_invalid_readings_are_left_out() -> None:
    m = night_metrics(night([0.0, 5.0, 151.0, None, 45.0, 47.0], interval_s=60))
    assert (m.valid_min, m.recording_min, m.mean_tcpco2, m.max_tcpco2) == (2, 6, 46, 47)
    kpa = night_metrics(night([6.1] * 300))  # a file written in kPa: no reading is plausible
    assert (kpa.valid, kpa.invalid_reason, kpa.mean_tcpco2, kpa.gt55_min) == (False, "no valid samples", None, 0)


def test_validity_needs_4_hours_of_valid_recording() -> None:
    assert night_metrics(night([45.0] * 240)).valid
    short = night_metrics(night([45.0] * 239 + [None] * 30))
    assert not short.valid and short.invalid_reason == "valid recording time 239.0 min is below the 4 h minimum"


def test_minutes_come_from_the_interval_not_the_sample_count() -> None:
    per_minute = night_metrics(night([42.0] * 60 + [58.0] * 15 + [42.0] * 30))
    per_second = night_metrics(night([42.0] * 3600 + [58.0] * 900 + [42.0] * 1800, interval_s=1))
    for field in ("gt55_min", "longest_gt55_min", "rise10_min", "valid_min", "baseline_tcpco2"):
        assert getattr(per_minute, field) == getattr(per_second, field), field


def test_night_date_is_the_evening_and_spo2_is_averaged_when_present() -> None:
    late = datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=1)))
    m = night_metrics(night([45.0] * 3, start=late, spo2=[96.0, 0.0, 92.0], pulse=[70.0, None, 71.0]))
    assert m.night_date == date(2026, 3, 1) and m.mean_spo2 == 94


def test_an_empty_recording_has_no_values() -> None:
    m = night_metrics(night([]))
    assert (m.valid, m.recording_min, m.max_tcpco2, m.baseline_tcpco2, m.longest_gt55_min) == (False, 0, None, None, 0)
