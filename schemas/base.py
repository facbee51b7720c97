"""Shared base for canonical records: strict, immutable, no unknown fields."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

PatientId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
"""Pseudonymous patient identifier (never a name): letters, digits and . _ : - only."""


class Record(BaseModel):
    """Base of every canonical record: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
