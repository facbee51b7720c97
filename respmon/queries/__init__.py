"""Every read of patient data the team, the web view, dashboards and scripts make, in one place.

`records`: a patient's timeline, the cohort's latest values, oximetry signals (the CLI and scripts).
`inbox`, `charts`, `report`: what the web view's pages show. No route or template holds SQL; the caller
scopes each read to the member's care teams (`alerts.access`) and records it in `access_log`.
"""

from respmon.queries.records import (
    KINDS,
    cohort_latest,
    oximetry_minutes,
    oximetry_signal,
    patient_timeline,
    table_timeline_sql,
    timeline_sql,
)

__all__ = ["KINDS", "cohort_latest", "oximetry_minutes", "oximetry_signal", "patient_timeline",
           "table_timeline_sql", "timeline_sql"]
