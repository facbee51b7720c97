"""What travels on Kafka: one canonical record plus where it came from."""

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.alsfrs import AlsfrsR
from schemas.bloodgas import BloodGas
from schemas.capnography import CapnographyNight
from schemas.niv import NivNight
from schemas.oximetry import OximetryNight
from schemas.spirometry import SpirometrySession

RecordKind = Literal["spirometry", "oximetry_night", "niv_night", "alsfrs_r", "blood_gas", "capnography_night"]
AnyRecord = SpirometrySession | OximetryNight | NivNight | AlsfrsR | BloodGas | CapnographyNight
"""Written out for the type checker; tests/test_schemas checks both against `schemas.kinds.RECORD_KINDS`."""
CanonicalRecord = Annotated[AnyRecord, Field(discriminator="kind")]


class Envelope(BaseModel):
    """A record with its provenance; `upload_id` links back to the raw archive row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    envelope_version: Literal[1] = 1
    upload_id: str
    device_id: str
    received_at: AwareDatetime
    record: CanonicalRecord

    @property
    def patient_id(self) -> str:
        return self.record.patient_id


class Tick(BaseModel):
    """Asks the worker to re-evaluate one patient at `at` with no new record, for time-based rules
    (no upload for N nights, lung tests overdue). Sent on the measurements topic, keyed by patient,
    so it is ordered with that patient's records and handled where the patient's state lives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tick_at: AwareDatetime
