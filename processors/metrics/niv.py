"""Nightly NIV metrics, taken as the ventilator export provides them.

Nothing is derived or re-scored: device algorithms (AHI scoring, leak) differ between vendors,
so values pass through unchanged and ``leak_kind`` travels with the leak value ("unintentional"
for ResMed, "total" for Philips, "unknown" when the source does not say; the 24 L/min rule applies
to unintentional leak only). A value the export does not provide stays ``None``; minute ventilation
is *not* computed from rate x tidal volume, because devices report medians of each, whose product is
not the median minute ventilation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from schemas.niv import NivNight

__all__ = ["NivMetrics", "night_metrics"]


@dataclass(frozen=True, slots=True)
class NivMetrics:
    """One therapy day (ResMed: noon to noon), dated as the device dates it."""

    night_date: date
    usage_hours: float
    leak_p95_lpm: float | None
    leak_kind: Literal["unintentional", "total", "unknown"]
    ahi: float | None
    resp_rate: float | None
    tidal_volume_ml: float | None
    minute_vent_lpm: float | None
    spo2_mean: float | None
    spo2_t90_pct: float | None
    pct_spont_triggered: float | None
    pressure_p50_cmh2o: float | None = None
    """Pressure percentiles over the night's session files: CPAP/APAP `pressure_*`, bilevel IPAP/EPAP."""
    pressure_p95_cmh2o: float | None = None
    ipap_p50_cmh2o: float | None = None
    ipap_p95_cmh2o: float | None = None
    epap_p50_cmh2o: float | None = None
    epap_p95_cmh2o: float | None = None
    spo2_min: float | None = None


def night_metrics(night: NivNight) -> NivMetrics:
    """Metrics of one NIV night; absent device values stay ``None``."""
    return NivMetrics(
        night_date=night.night_date,
        usage_hours=float(night.usage_hours),
        leak_p95_lpm=night.leak_p95_lpm,
        leak_kind=night.leak_kind,
        ahi=night.ahi,
        resp_rate=night.resp_rate,
        tidal_volume_ml=night.tidal_volume_ml,
        minute_vent_lpm=night.minute_vent_lpm,
        spo2_mean=night.spo2_mean,
        spo2_t90_pct=night.spo2_t90_pct,
        pct_spont_triggered=night.pct_spont_triggered,
        pressure_p50_cmh2o=night.pressure_p50_cmh2o,
        pressure_p95_cmh2o=night.pressure_p95_cmh2o,
        ipap_p50_cmh2o=night.ipap_p50_cmh2o,
        ipap_p95_cmh2o=night.ipap_p95_cmh2o,
        epap_p50_cmh2o=night.epap_p50_cmh2o,
        epap_p95_cmh2o=night.epap_p95_cmh2o,
        spo2_min=night.spo2_min,
    )
