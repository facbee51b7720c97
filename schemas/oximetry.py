"""One overnight pulse-oximetry recording, at whatever fixed rate the oximeter used."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, model_validator

from schemas.base import Count, Instant, Number, PatientId, Record
from schemas.samples import MotionSeries, SampleSeries

Sample = Annotated[StrictFloat, Field(ge=0, le=3276.7)]
"""One sample as a list element (the series themselves are `schemas.samples.Samples` arrays): strict types
refuse booleans and strings, ints stay valid. Device codes (127, 255) stay allowed, the metrics judge them;
the range is what the worker's signal codec can store (0-3276.7), so a record that passes here never
fails its insert."""


class DeviceSummary(BaseModel):
    """What the oximeter itself computed for the night (the O2Ring's file header), kept beside our metrics.

    Device-reported, never in a rule's condition (the oximetry rules show them in their evidence): the
    device's definitions are undocumented and differ from ours (`processors/metrics/DEFINITIONS.md`,
    "Device-reported values"), so they are shown for comparison only. Counts are one byte on the O2Ring:
    255 means "at least 255".
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mean_spo2: Number = Field(ge=1, le=100, description="average SpO2, %")
    min_spo2: Number = Field(ge=1, le=100, description="lowest SpO2, %")
    drops3: Count | None = Field(default=None, ge=0, le=65535, description="drops >= 3 %, count")
    drops4: Count | None = Field(default=None, ge=0, le=65535, description="drops >= 4 %, count")
    t90_s: Count | None = Field(default=None, ge=0, le=864_000, description="seconds below 90 %")

    @model_validator(mode="after")
    def _ordered(self) -> "DeviceSummary":
        if self.min_spo2 > self.mean_spo2:
            raise ValueError("lowest SpO2 above the average")
        if self.drops3 is not None and self.drops4 is not None and self.drops4 > self.drops3:
            raise ValueError("more drops >= 4 % than drops >= 3 %")
        return self


class OximetryNight(Record):
    """Samples at a fixed interval from `start`; `None` marks no reading (finger off, dropout). The series
    are numpy arrays (`schemas.samples.Samples`, NaN = None) that still read as lists.

    Values are kept as recorded (0, 127 or 255 codes are turned into None by the parsers);
    artefact removal and validity belong to the metrics, so the raw night can be re-scored.
    `supplemental_o2` / `o2_lpm`: recorded on oxygen (None = not recorded). Such a night still counts:
    CMS tests on the prescribed FiO2, and desaturation despite oxygen is worse news.
    """

    kind: Literal["oximetry_night"] = "oximetry_night"
    schema_version: Literal[1] = 1
    patient_id: PatientId
    start: Instant
    interval_s: Number = Field(gt=0, le=60)
    spo2: SampleSeries
    pulse: SampleSeries
    motion: MotionSeries | None = None
    source: str = Field(default="device", min_length=1, max_length=64)
    device_model: str | None = None
    supplemental_o2: bool | None = None
    o2_lpm: Number | None = Field(default=None, ge=0, le=30, description="supplemental oxygen flow, L/min")
    on_niv: bool | None = Field(default=None, description="recorded under NIV (ResMed SpO2 module)")
    device_summary: DeviceSummary | None = Field(
        default=None, description="the device's own figures for the night (O2Ring header), shown beside ours")

    @model_validator(mode="after")
    def _aligned(self) -> "OximetryNight":
        if len(self.spo2) != len(self.pulse):
            raise ValueError("spo2 and pulse must have the same number of samples")
        if self.motion is not None and len(self.motion) != len(self.spo2):
            raise ValueError("motion must have as many samples as spo2")
        return self

    @property
    def duration_s(self) -> float:
        return len(self.spo2) * self.interval_s

    # The device's figures as flat columns of `oximetry_nights` (schemas.kinds: OXIMETRY.computed).
    @property
    def device_mean_spo2(self) -> float | None:
        return None if self.device_summary is None else self.device_summary.mean_spo2

    @property
    def device_min_spo2(self) -> float | None:
        return None if self.device_summary is None else self.device_summary.min_spo2

    @property
    def device_drops3(self) -> int | None:
        return None if self.device_summary is None else self.device_summary.drops3

    @property
    def device_drops4(self) -> int | None:
        return None if self.device_summary is None else self.device_summary.drops4

    @property
    def device_t90_s(self) -> int | None:
        return None if self.device_summary is None else self.device_summary.t90_s
