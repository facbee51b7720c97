"""What the rules engine concludes about a patient, and what the alert service delivers."""

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

Category = Literal["NIV_START", "NIV_ESCALATE", "TRACH_DISCUSS", "DATA_QUALITY"]
Severity = Literal["info", "warn", "high", "urgent"]
SEVERITY_ORDER: dict[str, int] = {"info": 0, "warn": 1, "high": 2, "urgent": 3}
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
