"""Canonical, versioned records that flow between ingest, processors and alerts.

Every parser produces these models, every Kafka message carries one of them inside an
`Envelope`, and every processor consumes them. Bump `SCHEMA_VERSION` of a model when a field
changes meaning; consumers accept the versions they know. Each record kind is declared once, in
`schemas.kinds` (its names in the rules and in PostgreSQL, its key, what dates it).
"""

from schemas.alsfrs import AlsfrsR
from schemas.bloodgas import BloodGas
from schemas.capnography import CapnographyNight
from schemas.carestate import CareStateChange
from schemas.envelope import Envelope, RecordKind, Tick
from schemas.findings import Finding, Severity
from schemas.niv import NivNight
from schemas.oximetry import OximetryNight
from schemas.spirometry import SpirometrySession
from schemas.wire import WireError, decode_envelope, encode_envelope

__all__ = [
    "AlsfrsR",
    "BloodGas",
    "CapnographyNight",
    "CareStateChange",
    "Envelope",
    "Finding",
    "NivNight",
    "OximetryNight",
    "RecordKind",
    "Severity",
    "SpirometrySession",
    "Tick",
    "WireError",
    "decode_envelope",
    "encode_envelope",
]
