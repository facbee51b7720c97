"""One overnight transcutaneous CO2 (TcCO2) recording, at whatever fixed rate the monitor used."""

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import Instant, Number, PatientId, Record
from schemas.samples import SampleSeries

TCPCO2_PLAUSIBLE = (10.0, 150.0)
"""Inclusive range of a TcCO2 reading (mmHg) the metrics use; 0, device codes or a file written in kPa
fall outside it."""


class CapnographyNight(Record):
    """TcCO2 in mmHg at a fixed interval from `start`; `None` marks no reading. SpO2 and pulse, when the
    monitor records them, are aligned with it. Values are kept as recorded: validity is the metrics'
    (``processors/metrics/capnography.py``), so a night can be re-scored."""

    kind: Literal["capnography_night"] = "capnography_night"
    schema_version: Literal[1] = 1
    patient_id: PatientId
    start: Instant
    interval_s: Number = Field(gt=0, le=60)
    tcpco2: SampleSeries
    spo2: SampleSeries | None = None
    pulse: SampleSeries | None = None
    source: str = Field(default="device", min_length=1, max_length=64)
    device_model: str | None = None

    @model_validator(mode="after")
    def _aligned(self) -> "CapnographyNight":
        for name in ("spo2", "pulse"):
            other = getattr(self, name)
            if other is not None and len(other) != len(self.tcpco2):
                raise ValueError(f"{name} must have as many samples as tcpco2")
        return self

    @property
    def duration_s(self) -> float:
        return len(self.tcpco2) * self.interval_s
