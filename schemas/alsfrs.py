"""ALSFRS-R questionnaire: 12 items scored 0-4 (4 = normal)."""

from typing import Literal

from pydantic import Field, field_validator

from schemas.base import Count, Instant, PatientId, Record


class AlsfrsR(Record):
    """Items in questionnaire order: 1 speech, 2 salivation, 3 swallowing, ..., 10 dyspnoea,
    11 orthopnoea, 12 respiratory insufficiency."""

    kind: Literal["alsfrs_r"] = "alsfrs_r"
    schema_version: Literal[1] = 1
    patient_id: PatientId
    taken_at: Instant
    items: list[Count] = Field(min_length=12, max_length=12)
    source: str = Field(default="clinic", min_length=1, max_length=64)

    @field_validator("items")
    @classmethod
    def _scores_in_range(cls, items: list[int]) -> list[int]:
        for number, score in enumerate(items, start=1):
            if not 0 <= score <= 4:
                raise ValueError(f"item {number} must be scored 0-4")  # no value: messages reach logs and uploaders
        return items

    def item(self, number: int) -> int:
        """Score of item `number` (1-12, as numbered on the form)."""
        return self.items[number - 1]

    @property
    def total(self) -> int:
        return sum(self.items)

    @property
    def bulbar(self) -> int:
        return sum(self.items[0:3])

    @property
    def respiratory(self) -> int:
        return sum(self.items[9:12])
