"""A spot CO2 measurement: a blood gas, or a transcutaneous or end-tidal reading taken awake.

Hypercapnia is the NIV indication with the strongest evidence (clinical-thresholds.md, corrections);
the sample says how a pCO2 compares with the arterial value the guidelines quote (venous runs a few
mmHg higher, so the rules screen it on its own threshold).
"""

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import Instant, Number, PatientId, Record

GasSample = Literal["arterial", "capillary", "venous", "transcutaneous", "end_tidal"]
GAS_SAMPLES: tuple[GasSample, ...] = ("arterial", "capillary", "venous", "transcutaneous", "end_tidal")


class BloodGas(Record):
    """Pressures in mmHg (parsers convert kPa: 1 kPa = 7.50062 mmHg). A serum bicarbonate drawn alone
    is a record too (no pCO2): it is a screen for hypoventilation."""

    kind: Literal["blood_gas"] = "blood_gas"
    schema_version: Literal[1] = 1
    patient_id: PatientId
    taken_at: Instant
    sample: GasSample
    pco2_mmhg: Number | None = Field(default=None, ge=5, le=200)
    bicarbonate_mmol_l: Number | None = Field(default=None, ge=1, le=80)
    ph: Number | None = Field(default=None, ge=6.5, le=8.0)
    po2_mmhg: Number | None = Field(default=None, ge=0, le=800)
    source: str = Field(default="clinic", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _has_a_co2_value(self) -> "BloodGas":
        if self.pco2_mmhg is None and self.bicarbonate_mmol_l is None:
            raise ValueError("needs pco2_mmhg or bicarbonate_mmol_l")
        return self
