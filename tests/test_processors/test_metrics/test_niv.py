"""NIV nightly metrics pass the export's values through unchanged."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from datetime import date

import pytest

from processors.metrics.niv import NivMetrics, night_metrics
from schemas.niv import NivNight


def test_full_resmed_night() -> None:
    night = NivNight(
        patient_id="p-001", night_date=date(2026, 2, 3), usage_hours=7.5, leak_p50_lpm=4.0,
        leak_p95_lpm=26.4, leak_kind="unintentional", ahi=6.2, resp_rate=17.0, tidal_volume_ml=430,
        minute_vent_lpm=7.1, spo2_mean=93.4, spo2_t90_pct=6.5, pct_spont_triggered=72.0,
    )
    m = night_metrics(night)
    assert m == NivMetrics(
        night_date=date(2026, 2, 3), usage_hours=7.5, leak_p95_lpm=26.4, leak_kind="unintentional",
        ahi=6.2, resp_rate=17.0, tidal_volume_ml=430, minute_vent_lpm=7.1, spo2_mean=93.4,
        spo2_t90_pct=6.5, pct_spont_triggered=72.0,
    )
    with pytest.raises(FrozenInstanceError):
        m.ahi = 1.0  # type: ignore[misc]


def test_absent_values_stay_none_and_nothing_is_derived() -> None:
    # Philips-style: total leak, no SpO2 module, rate and Vt but no minute ventilation
    night = NivNight(
        patient_id="p-001", night_date=date(2026, 2, 3), usage_hours=0.0, leak_kind="total",
        resp_rate=18.0, tidal_volume_ml=400,
    )
    m = night_metrics(night)
    assert m.usage_hours == 0.0 and m.leak_kind == "total"
    assert m.minute_vent_lpm is None  # not computed as rate x Vt
    assert all(
        getattr(m, f.name) is None
        for f in fields(m)
        if f.name not in {"night_date", "usage_hours", "leak_kind", "resp_rate", "tidal_volume_ml"}
    )
