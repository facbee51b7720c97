"""Shared base for canonical records: strict, immutable, no unknown fields."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

PatientId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
"""Pseudonymous patient identifier (never a name): letters, digits and . _ : - only."""


class Record(BaseModel):
    """Base of every canonical record: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold NUL: a record carrying one would fail its insert on every retry
        and stall its partition in the worker, so it is refused here (ingest answers 422)."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value
