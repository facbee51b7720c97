"""Every record kind, declared once: its model, its names in the rules and in PostgreSQL, what dates it.

The history stores and event times (``processors/rules/history.py``), the expression language's kinds
(``processors/rules/rows.py``), the table rows and natural keys (``processors/store.py``) and the read
queries' kinds (``respmon/queries.py``) are derived from :data:`RECORD_KINDS`; tests check that the
static spellings (``RecordKind``, ``CanonicalRecord``, ``respmon.core.timescale.TIMESERIES_TABLES``, the
migrated tables) agree with it. Adding a kind: ``processors/rules/README.md``, "Adding a record kind".
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from schemas.alsfrs import AlsfrsR
from schemas.base import Record
from schemas.bloodgas import BloodGas
from schemas.capnography import CapnographyNight
from schemas.niv import NivNight
from schemas.oximetry import OximetryNight
from schemas.spirometry import SpirometrySession

__all__ = ["ALSFRS", "BLOOD_GAS", "CAPNOGRAPHY", "NIV", "OXIMETRY", "RECORD_KINDS", "SPIROMETRY", "Kind", "kind_named",
           "kind_of"]


_NOT_STORED = frozenset({"kind", "schema_version"})
"""Fields of every record that no table keeps (the table says the kind; the version is the migration's)."""


@dataclass(frozen=True, eq=False)
class Kind:
    """One record kind. Compared by identity: each is declared once, below."""

    model: type[Record]
    store: str
    """Its name in the rules language and the patient history (``spiro.fvc_l``, ``history.keep_days.spiro``)."""
    family: str
    """Rows of one family join on their key in expressions (nights on the night date)."""
    table: str
    key: tuple[str, ...]
    """The table's natural key (its primary key): upserts are idempotent on it."""
    dated_by: str
    """The record field that dates it: its event time, the table's time column, the field a record from
    the future is refused for. A date is a noon-to-noon therapy day, ending at noon UTC of the next day."""
    lasts: str | None = None
    """Attribute holding the record's length in seconds, when its observation ends that long after
    ``dated_by`` (an oximetry night)."""
    columns: Mapping[str, str] = field(default_factory=dict)
    """Record field -> table column, where the names differ."""
    unstored: frozenset[str] = _NOT_STORED
    """Record fields and metric fields the table has no column for; every other one is a column."""
    computed: tuple[str, ...] = ()
    """Attributes of the record (properties) stored as columns too."""
    side_tables: tuple[str, ...] = ()
    """Tables written with the record, in its transaction, on the same natural key (its signals)."""
    merges: bool = False
    """Records of one key are parts of one thing (a NIV night's day summary and its session values):
    a later part is merged into the stored one (``schemas.niv.merged``) instead of replacing it."""

    @property
    def name(self) -> str:
        """``record.kind``: the default of the model's ``kind`` field (the Kafka message discriminator)."""
        return str(self.model.model_fields["kind"].default)

    @property
    def by_day(self) -> bool:
        """Dated by a calendar day (a noon-to-noon therapy night), not by an instant."""
        return self.model.model_fields[self.dated_by].annotation is date

    @property
    def time_column(self) -> str:
        """The table's time (partitioning) column."""
        return self.column(self.dated_by)

    def column(self, name: str) -> str:
        """The column of a record or metric field."""
        return self.columns.get(name, name)


SPIROMETRY = Kind(
    SpirometrySession, store="spiro", family="session", table="spirometry_sessions",
    key=("patient_id", "taken_at", "source"), dated_by="taken_at",
    unstored=_NOT_STORED | {"sex", "age_years", "height_cm", "usable", "fvc_z", "svc_pct_pred", "svc_pct_pred_source"},
)
DEVICE_SUMMARY_COLUMNS = ("device_mean_spo2", "device_min_spo2", "device_drops3", "device_drops4", "device_t90_s")
"""`OximetryNight.device_summary` as columns of `oximetry_nights` (properties of the record)."""
OXIMETRY = Kind(
    OximetryNight, store="oxi", family="night", table="oximetry_nights",
    key=("patient_id", "start_at", "source"), dated_by="start", lasts="duration_s", columns={"start": "start_at"},
    unstored=_NOT_STORED | {"spo2", "pulse", "motion", "device_model", "supplemental_o2", "odi3_events",
                            "odi4_events", "o2_lpm", "device_summary"},  # oxygen: no column yet (issue 12)
    computed=DEVICE_SUMMARY_COLUMNS,  # the device's own figures, flat (migration 0012)
    side_tables=("oximetry_signals",),
)
NIV = Kind(
    NivNight, store="niv", family="night", table="niv_nights",
    key=("patient_id", "night_date", "source"), dated_by="night_date", merges=True,
    unstored=_NOT_STORED | {"leak_p50_lpm", "mask_sessions", "device_model", "o2_lpm"},  # o2: as oximetry
)
ALSFRS = Kind(
    AlsfrsR, store="alsfrs", family="form", table="alsfrs_r",
    key=("patient_id", "taken_at", "source"), dated_by="taken_at", computed=("total",),
)
BLOOD_GAS = Kind(  # the sample is in the key: an arterial and a venous gas drawn together are two rows
    BloodGas, store="gas", family="gas", table="blood_gases",
    key=("patient_id", "taken_at", "sample", "source"), dated_by="taken_at",
)
CAPNOGRAPHY = Kind(
    CapnographyNight, store="tcco2", family="night", table="capnography_nights",
    key=("patient_id", "start_at", "source"), dated_by="start", lasts="duration_s", columns={"start": "start_at"},
    unstored=_NOT_STORED | {"tcpco2", "spo2", "pulse", "device_model"},  # samples: the raw upload keeps them
)

RECORD_KINDS: tuple[Kind, ...] = (SPIROMETRY, OXIMETRY, NIV, ALSFRS, BLOOD_GAS, CAPNOGRAPHY)
"""Every kind, in the order stores, tables and timelines list them (nights are written before their signals)."""

_BY_MODEL: dict[type, Kind] = {k.model: k for k in RECORD_KINDS}
_BY_NAME: dict[str, Kind] = {k.name: k for k in RECORD_KINDS}


def kind_of(record: Any) -> Kind:
    """The kind of a canonical record (TypeError for anything else)."""
    kind = _BY_MODEL.get(type(record))
    if kind is None:
        kind = next((k for k in RECORD_KINDS if isinstance(record, k.model)), None)
        if kind is None:
            raise TypeError(f"not a canonical record: {type(record).__name__}")
    return kind


def kind_named(name: str) -> Kind:
    """The kind whose records carry ``kind == name`` (KeyError for an unknown name)."""
    return _BY_NAME[name]
