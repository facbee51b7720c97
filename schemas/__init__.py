"""Canonical, versioned records that flow between ingest, processors and alerts.

Every parser produces these models, every Kafka message carries one of them inside an
`Envelope`, and every processor consumes them. Bump `SCHEMA_VERSION` of a model when a field
changes meaning; consumers accept the versions they know.
"""

from schemas.alsfrs import AlsfrsR
from schemas.envelope import Envelope, RecordKind, Tick
from schemas.findings import Finding, Severity
from schemas.niv import NivNight
from schemas.oximetry import OximetryNight
from schemas.spirometry import SpirometrySession

__all__ = [
    "AlsfrsR",
    "Envelope",
    "Finding",
    "NivNight",
    "OximetryNight",
    "RecordKind",
    "Severity",
    "SpirometrySession",
    "Tick",
]
