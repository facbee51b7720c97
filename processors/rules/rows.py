"""The rows a patient history keeps per record kind, and the kinds an expression reads them as.

Each ``*Row`` is the one declaration of its rows: :class:`processors.rules.history.PatientHistory` builds
every row from its field list (in this order), and the expression language's field types
(``processors.rules.expr.kinds.KINDS``) are its annotations (a number, yes/no or text; None = missing).
Fields of :class:`Row` and fields marked :data:`Internal` are kept but are not expression fields.
A row field that the history does not compute is the record's metric of that name, else the record's
attribute of that name (``processors/rules/README.md``, "Adding a record kind").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, TypeVar, get_origin, get_type_hints

from schemas.bloodgas import GasSample
from schemas.kinds import ALSFRS, BLOOD_GAS, CAPNOGRAPHY, NIV, OXIMETRY, RECORD_KINDS, SPIROMETRY, Kind
from schemas.spirometry import Posture

__all__ = ["STORE_ROWS", "VIEWS", "AlsfrsRow", "GasRow", "Internal", "NivRow", "OxiRow", "Row", "SpiroRow", "Store",
           "TcRow", "View", "series_fields"]

T = TypeVar("T")
_INTERNAL = "internal"
Internal = Annotated[T, _INTERNAL]
"""A row field the history keeps for itself, not readable as ``kind.field`` in an expression."""


class Row(TypedDict):
    """What every row holds before its values (none of it is an expression field)."""

    t: float
    """Event time, epoch seconds (UTC)."""
    k: str
    """Join key: the night date of a night, the session's UTC time otherwise."""
    d: str
    """Date shown in evidence."""
    src: str
    ok: bool
    """A valid night, a usable session: what ``valid_only=True`` keeps."""


class SpiroRow(Row):
    """spirometry / respiratory-muscle sessions, sitting and supine (valid = usable grade)"""

    posture: Internal[Posture]
    fvc_l: float | None
    fvc_pct_pred: float | None
    fvc_pct_pred_source: str | None
    svc_l: float | None
    svc_pct_pred: float | None
    fev1_l: float | None
    vc_l: float | None
    vc_pct_pred: float | None
    mip_cmh2o: float | None
    mep_cmh2o: float | None
    snip_cmh2o: float | None
    pcf_unassisted_lpm: float | None
    pcf_assisted_lpm: float | None
    grade: str
    usable: bool
    pct_pred_not_computable: bool
    supine_drop_pct: float | None


class OxiRow(Row):
    """overnight oximetry nights (valid = valid recording time >= 4 h)"""

    valid: bool
    invalid_reason: str | None
    on_o2: bool
    o2_lpm: float | None
    """Supplemental oxygen flow, L/min (None = not recorded); on_o2 says whether it was on."""
    under_niv: bool
    recording_min: float
    vrt_min: float
    mean_spo2: float | None
    min_spo2: float | None
    t90_pct: float | None
    t90_min: float
    t88_pct: float | None
    t88_min: float
    longest_le88_min: float
    odi3: float | None
    odi4: float | None
    mean_pulse: float | None
    # what the oximeter itself reported for the night (OximetryNight.device_summary; None when it reported
    # nothing, and on rows written before they were kept): evidence beside ours, never a rule's condition
    device_mean_spo2: float | None
    device_min_spo2: float | None
    device_drops3: int | None
    device_drops4: int | None
    device_t90_s: int | None


class NivRow(Row):
    """NIV device nights (noon to noon)"""

    usage_hours: float
    leak_p95_lpm: float | None
    leak_kind: str
    ahi: float | None
    resp_rate: float | None
    tidal_volume_ml: float | None
    minute_vent_lpm: float | None
    spo2_mean: float | None
    spo2_t90_pct: float | None
    pct_spont_triggered: float | None
    o2_lpm: float | None
    """Oxygen bled into the circuit, L/min (None = not recorded)."""
    pressure_p50_cmh2o: float | None
    pressure_p95_cmh2o: float | None
    ipap_p50_cmh2o: float | None
    ipap_p95_cmh2o: float | None
    epap_p50_cmh2o: float | None
    epap_p95_cmh2o: float | None
    spo2_min: float | None
    basis: Internal[str]
    """day_summary or sessions: which part of the night wins where both have a value (schemas.niv.merged)."""


class AlsfrsRow(Row):
    """ALSFRS-R questionnaires; alsfrs.item(n) is item n (1-12)"""

    items: Internal[list[int]]
    total: int
    bulbar: int
    respiratory: int


class GasRow(Row):
    """spot CO2: blood gases (arterial, capillary, venous), transcutaneous and end-tidal readings (mmHg)"""

    sample: GasSample
    pco2_mmhg: float | None
    bicarbonate_mmol_l: float | None
    ph: float | None
    po2_mmhg: float | None


class TcRow(Row):
    """overnight transcutaneous CO2 nights (valid = valid recording time >= 4 h)"""

    valid: bool
    invalid_reason: str | None
    recording_min: float
    valid_min: float
    mean_tcpco2: float | None
    max_tcpco2: float | None
    baseline_tcpco2: float | None
    max_rise_mmhg: float | None
    gt50_min: float
    gt55_min: float
    longest_gt55_min: float
    rise10_min: float | None
    longest_rise10_min: float | None
    mean_spo2: float | None


@dataclass(frozen=True)
class Store:
    """How a patient history keeps one kind's rows: their declaration and the key a re-sent record
    replaces its row on."""

    kind: Kind
    row: type
    key: tuple[str, ...] = ("k", "src")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.row.__annotations__)


_STORES = (
    Store(SPIROMETRY, SpiroRow, key=("k", "posture", "src")),
    Store(OXIMETRY, OxiRow),
    Store(NIV, NivRow),
    Store(ALSFRS, AlsfrsRow),
    Store(BLOOD_GAS, GasRow, key=("k", "sample", "src")),
    Store(CAPNOGRAPHY, TcRow),
)
STORE_ROWS: dict[str, Store] = {s.kind.store: s for s in sorted(_STORES, key=lambda s: RECORD_KINDS.index(s.kind))}
"""History store name (``schemas.kinds.Kind.store``) -> its rows, in ``RECORD_KINDS`` order."""


def series_fields(row: type) -> dict[str, Any]:
    """The expression fields of a row declaration and their annotations."""
    hints = get_type_hints(row, include_extras=True)
    return {name: hint for name, hint in hints.items()
            if name not in Row.__annotations__
            and not (get_origin(hint) is Annotated and _INTERNAL in hint.__metadata__)}


@dataclass(frozen=True)
class View:
    """What a kind name in an expression (``spiro``, ``supine``, ``oxi``...) reads: a store's rows, or
    those of one posture only."""

    name: str
    store: str
    family: str
    """Series of one family join on their row key (nights on the night date)."""
    fields: Mapping[str, Any]
    """Expression field -> its annotation in the row declaration."""
    posture: Posture | None = None
    doc: str = ""

    @classmethod
    def of(cls, store: Store, *, name: str | None = None, family: str | None = None,
           posture: Posture | None = None, only: tuple[str, ...] | None = None, doc: str | None = None) -> View:
        fields = series_fields(store.row)
        if only is not None:
            fields = {f: fields[f] for f in only}
        return cls(name or store.kind.store, store.kind.store, family or store.kind.family, fields, posture,
                   doc or (store.row.__doc__ or "").strip())


SUPINE_FIELDS = ("fvc_l", "fvc_pct_pred", "svc_l", "vc_l", "grade", "usable")
"""What a supine session shows: only its own volumes (its drop is on the sitting row)."""

_SESSIONS = STORE_ROWS[SPIROMETRY.store]
VIEWS: dict[str, View] = {v.name: v for v in (
    View.of(_SESSIONS, posture="sitting",
            doc="sitting spirometry / respiratory-muscle sessions (valid = usable grade)"),
    # a family of its own: a supine series cannot be matched row by row with a sitting one (other times)
    View.of(_SESSIONS, name="supine", family="supine", posture="supine", only=SUPINE_FIELDS,
            doc="supine spirometry sessions"),
    *(View.of(s) for s in STORE_ROWS.values() if s is not _SESSIONS),
)}
"""Expression kind name -> what it reads; supine sessions are kept with the others (store ``spiro``)."""
