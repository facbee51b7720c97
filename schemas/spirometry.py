"""One home or clinic lung-function session (spirometry and respiratory muscle tests)."""

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from schemas.base import Instant, Number, PatientId, Record

Posture = Literal["sitting", "supine"]
Grade = Literal["A", "B", "C", "D", "E", "F", "U"]


class SpirometrySession(Record):
    """A session's best values. Ranges are physiological limits: anything outside is a device or entry error.

    MIP is stored as a magnitude in cmH2O (devices write -45 or 45 for the same effort);
    "MIP weaker than -60" is therefore `mip_cmh2o < 60`.
    """

    kind: Literal["spirometry"] = "spirometry"
    schema_version: Literal[1] = 1
    patient_id: PatientId
    taken_at: Instant
    source: str = Field(default="device", min_length=1, max_length=64)
    posture: Posture = "sitting"
    fvc_l: Number | None = Field(default=None, gt=0, le=10, description="forced vital capacity, litres")
    fvc_pct_pred: Number | None = Field(default=None, gt=0, le=200, description="FVC % predicted as reported")
    fev1_l: Number | None = Field(default=None, gt=0, le=10)
    svc_l: Number | None = Field(default=None, gt=0, le=10, description="slow vital capacity, litres")
    mip_cmh2o: Number | None = Field(default=None, ge=0, le=250, description="|maximal inspiratory pressure|")
    mep_cmh2o: Number | None = Field(default=None, ge=0, le=350)
    snip_cmh2o: Number | None = Field(default=None, ge=0, le=250, description="sniff nasal inspiratory pressure")
    pcf_lpm: Number | None = Field(default=None, ge=0, le=1200, description="peak cough flow, L/min")
    pcf_assisted: bool = False
    grade: Grade | None = Field(default=None, description="ATS/ERS 2019 session grade; None = unknown")
    sex: Literal["male", "female"] | None = None
    age_years: Number | None = Field(default=None, ge=3, le=95)
    height_cm: Number | None = Field(default=None, ge=100, le=250)

    @field_validator("mip_cmh2o", mode="before")
    @classmethod
    def _mip_magnitude(cls, value: object) -> object:
        """Accept MIP written as a negative pressure or as its magnitude; store the magnitude."""
        if isinstance(value, (int, float)) and value < 0:
            return -value
        return value

    @property
    def day(self) -> datetime:
        return self.taken_at
