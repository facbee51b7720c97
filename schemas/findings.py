"""What the rules engine concludes about a patient, and what the alert service delivers."""

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict

Category = Literal["NIV_START", "NIV_ESCALATE", "TRACH_DISCUSS", "DATA_QUALITY"]
CATEGORIES: tuple[Category, ...] = get_args(Category)
Severity = Literal["info", "warn", "high", "urgent"]
"""Mildest first."""
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
SEVERITY_ORDER: dict[str, int] = {s: rank for rank, s in enumerate(SEVERITIES)}
"""Rank of each severity (higher is worse): the rules file, routing and alerts all compare by it."""
FindingState = Literal["open", "resolved"]


class Finding(BaseModel):
    """One rule's verdict on one patient at one time, with the evidence behind it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    finding_version: Literal[1] = 1
    patient_id: str
    rule_id: str
    rule_version: str
    category: Category
    severity: Severity
    state: FindingState = "open"
    at: AwareDatetime
    evidence: dict[str, Any]
    action: str
    citation: str
    upload_id: str | None = None
    received_at: datetime | None = None
