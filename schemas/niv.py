"""One night (ResMed: noon to noon) of home non-invasive ventilation, as the device summarises it."""

from typing import Literal

from pydantic import Field

from schemas.base import Count, Day, Number, PatientId, Record


class NivNight(Record):
    """Device summary of one therapy day. Optional values are absent when the model does not report them.

    `leak_kind` matters for rules: ResMed reports unintentional leak (vent flow subtracted),
    Philips reports total leak, so the 24 L/min threshold applies to the first only. A source that
    does not say is `unknown`, never compared with it (a vented mask's normal total leak is ~40 L/min).
    `o2_lpm`: oxygen bled into the circuit (L/min), None = not recorded; desaturation despite oxygen
    is worse news, not an invalid night.
    """

    kind: Literal["niv_night"] = "niv_night"
    schema_version: Literal[1] = 1
    patient_id: PatientId
    night_date: Day
    usage_hours: Number = Field(ge=0, le=24)
    leak_p50_lpm: Number | None = Field(default=None, ge=0, le=200)
    leak_p95_lpm: Number | None = Field(default=None, ge=0, le=200)
    leak_kind: Literal["unintentional", "total", "unknown"] = "unknown"
    ahi: Number | None = Field(default=None, ge=0, le=200)
    resp_rate: Number | None = Field(default=None, ge=0, le=80, description="breaths/min, median")
    tidal_volume_ml: Number | None = Field(default=None, ge=0, le=3000)
    minute_vent_lpm: Number | None = Field(default=None, ge=0, le=60)
    spo2_mean: Number | None = Field(default=None, ge=50, le=100)
    spo2_t90_pct: Number | None = Field(default=None, ge=0, le=100)
    pct_spont_triggered: Number | None = Field(default=None, ge=0, le=100)
    o2_lpm: Number | None = Field(default=None, ge=0, le=30, description="supplemental oxygen, L/min")
    mask_sessions: Count | None = Field(default=None, ge=0, le=1440)
    source: str = Field(default="device", min_length=1, max_length=64)
    device_model: str | None = None
