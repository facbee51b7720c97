"""A patient's care state, set by the care team (never by a device): NIV declined, on invasive ventilation,
at the end of life, or no longer in the service. The rules read it (``care_state()``, and the
``care_states:`` section of the rules file says what each state silences).

A change travels on the measurements topic keyed by patient, like ``Tick``: ordered with the patient's
records and handled by the worker that holds the patient's history.
"""

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.base import Day, PatientId

__all__ = ["CARE_STATES", "NO_STATE", "CareState", "CareStateChange", "CareStateOrNone"]

CareState = Literal["niv_declined", "invasive_ventilation", "end_of_life", "left_service"]
CARE_STATES: tuple[CareState, ...] = get_args(CareState)
NO_STATE = "none"
"""The state that clears a care state (what ``care_state()`` reads when none was set)."""
CareStateOrNone = CareState | Literal["none"]

MemberId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128,
                                            pattern=r"^[A-Za-z0-9._:@-]+$")]
"""Who set it: a team member id, or the operator of ``respmon care-state``."""


class CareStateChange(BaseModel):
    """The team sets `state` (``none`` clears it) for evaluations at or after `since` (00:00 UTC); `since`
    may be in the past, never later than the day after `set_at`. `change_id` makes a replay idempotent.
    `kind` comes first: the worker tells this message from an envelope by its first bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["care_state"] = "care_state"
    change_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=64,
                           pattern=r"^[A-Za-z0-9._:-]+$")
    patient_id: PatientId
    state: CareStateOrNone
    since: Day
    note: str | None = Field(default=None, max_length=2000)
    set_by: MemberId
    set_at: AwareDatetime

    @model_validator(mode="after")
    def _checked(self) -> "CareStateChange":
        if self.note is not None and "\x00" in self.note:
            raise ValueError("note must not contain NUL characters")  # PostgreSQL text cannot hold it
        if self.since > (self.set_at + timedelta(days=1)).date():
            raise ValueError("since must not be later than the day it is set (a state starts when it is known)")
        return self

    @property
    def starts_at(self) -> datetime:
        """When the state starts to apply: 00:00 UTC of `since` (its event time in a replay)."""
        return datetime.combine(self.since, time(0), UTC)
