"""Per-patient state the rules engine evaluates: compact metric rows plus the open findings.

A :class:`PatientHistory` is plain data (``to_dict`` / ``from_dict`` round-trip through JSON), so
the stream processor can keep one per patient in a changelog-backed faust table and a restarted
worker resumes where it stopped. Metrics come from :mod:`processors.metrics`; this module only
keeps their values, keyed by each record's natural key so a re-sent record replaces its row.

Row layout: one declaration per kind in :mod:`processors.rules.rows` (``t`` event time, epoch s UTC;
``k`` join key, the night date for nights, the session timestamp for sessions; ``d`` display date;
``src`` source; ``ok`` valid night / usable session; then the fields expressions read). The stores, the
field that dates a record and its event time come from :mod:`schemas.kinds`.
"""

from __future__ import annotations

import copy
import json
from bisect import insort
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from operator import itemgetter
from typing import Any

import orjson

from processors.metrics.kinds import METRICS
from processors.rules.rows import STORE_ROWS, VIEWS
from schemas import CareStateChange, Envelope
from schemas.envelope import AnyRecord
from schemas.kinds import DEVICE_SUMMARY_COLUMNS, OXIMETRY, RECORD_KINDS, SPIROMETRY, Kind, kind_of
from schemas.niv import merged

__all__ = ["HISTORY_VERSION", "KEEP_DAYS", "KEEP_MAX_PER_KIND", "STORES", "PatientHistory", "Record", "event_time",
           "future_field", "record_kind"]

HISTORY_VERSION = 1
KEEP_DAYS = 400
"""Days of rows kept per store when the rule set declares no `history.keep_days`."""
KEEP_MAX_PER_KIND = 1000
"""Rows kept per store at most when the rule set declares no `history.keep_max_per_kind`: a device that
sends thousands of sessions must not make every event of its patient cost a full scan of them."""
DAY_S = 86400.0
CARE_STATES_KEPT = 20
"""Care-state changes a history keeps at most (the newest): older ones decide only long-past times."""
NIV_DAY_END = time(12, 0)
"""A therapy day (a NIV night) runs noon to noon (ResMed); its night ends at noon UTC of the next day."""

Record = AnyRecord
STORES = tuple(k.store for k in RECORD_KINDS)
"""The history stores, one per record kind (``schemas.kinds``): spiro, oxi, niv, alsfrs, gas, tcco2."""
_STORE_OF_VIEW = {name: view.store for name, view in VIEWS.items()}


def record_kind(record: Record) -> str:
    """History store of a record: spiro, oxi, niv, alsfrs, gas or tcco2."""
    return kind_of(record).store


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


def event_time(record: Record | Envelope) -> datetime:
    """When a record's observation ended (what the engine evaluates "as of"), from the field that dates
    its kind (``schemas.kinds``).

    Sessions and questionnaires: ``taken_at``. Oximetry: start + recording length. NIV nights:
    noon UTC of the day after ``night_date`` (noon-to-noon therapy day).
    """
    if isinstance(record, Envelope):
        record = record.record
    kind = kind_of(record)
    at: date = getattr(record, kind.dated_by)
    if isinstance(at, datetime):
        return _utc(at if kind.lasts is None else at + timedelta(seconds=getattr(record, kind.lasts)))
    return datetime.combine(at + timedelta(days=1), NIV_DAY_END, tzinfo=UTC)


def future_field(record: Record | Envelope, latest: datetime) -> str | None:
    """The envelope field (``record.taken_at``...) that dates a record after ``latest``, or None.

    A record from the future would be the "latest" of its kind until that date and move the
    evaluation time forward (``tick`` never goes back): it could resolve an open alert and mask
    every real session after it. The stream refuses such records before they reach a history.
    """
    if isinstance(record, Envelope):
        record = record.record
    if event_time(record) <= latest:
        return None
    return f"record.{kind_of(record).dated_by}"


def _json_value(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


_PAIRED = frozenset({"supine_drop_pct"})
"""Row fields set from another row (a sitting session's drop to the same day's supine one), not the record."""


_SHOWN_ONLY = frozenset(DEVICE_SUMMARY_COLUMNS)
"""Row fields only evidence shows (the oximeter's own figures, rules 0.2.1): a row written before they were
kept lacks them, and the same record delivered again after the upgrade is still a replay (a new evaluation
would count toward a rule's ``resolve_after``)."""


def _same_row(stored: Mapping[str, Any], built: Mapping[str, Any]) -> bool:
    """The stored row is what this record builds: the record was seen before."""
    return all(stored.get(f) == v for f, v in built.items()
               if f not in _PAIRED and (f in stored or f not in _SHOWN_ONLY))


def _present(*values: Any) -> list[float]:
    return [v for v in values if v is not None]


# ---------------------------------------------------------------- rows (processors/rules/rows.py)
def _row_keys(kind: Kind, rec: Any, m: Any) -> dict[str, Any]:
    """What every row starts with: event time; join key = the metrics' ``night_date`` where they have one
    (nights of every kind join on it), else the dating field (a day, or the UTC time); source; and
    ``ok`` = the metrics' ``valid`` where they have one."""
    at = getattr(m, "night_date", None) or getattr(rec, kind.dated_by)
    key = (_utc(at) if isinstance(at, datetime) else at).isoformat()
    return {"t": event_time(rec).timestamp(), "k": key, "d": key, "src": rec.source,
            "ok": bool(getattr(m, "valid", True))}


def _spiro_values(rec: Any, m: Any) -> dict[str, Any]:
    """Sessions: usable grade, the larger of FVC and SVC, cough flow split by assistance."""
    vc_l = _present(m.fvc_l, m.svc_l)
    vc_pct = _present(m.fvc_pct_pred, m.svc_pct_pred)
    assisted = bool(m.pcf_assisted)
    demographics_missing = rec.sex is None or rec.age_years is None or rec.height_cm is None
    return {
        "ok": bool(m.usable), "usable": bool(m.usable), "grade": m.grade or "unknown",
        "vc_l": max(vc_l) if vc_l else None, "vc_pct_pred": max(vc_pct) if vc_pct else None,
        "pcf_unassisted_lpm": None if assisted else m.pcf_lpm, "pcf_assisted_lpm": m.pcf_lpm if assisted else None,
        "pct_pred_not_computable": bool(vc_l) and not vc_pct and demographics_missing,
        "supine_drop_pct": None,  # set by _pair_supine
    }


def _oxi_values(rec: Any, m: Any) -> dict[str, Any]:
    """The oxygen and NIV flags are the record's (a missing one is no)."""
    return {"valid": bool(m.valid), "on_o2": rec.supplemental_o2 is True, "under_niv": rec.on_niv is True}


_VALUES: dict[Kind, Callable[[Any, Any], dict[str, Any]]] = {SPIROMETRY: _spiro_values, OXIMETRY: _oxi_values}
"""Row values a kind computes; every other field of its row is the metric, else the record attribute, of
that name."""


class _RowBuilder:
    """Builds one store's rows from its declaration, with the field lists worked out once."""

    def __init__(self, kind: Kind):
        self.kind = kind
        self.metrics = METRICS.get(kind)
        self.fields = STORE_ROWS[kind.store].fields
        self.from_metrics = frozenset(self.metrics.fields if self.metrics else ()) & set(self.fields)
        self.values = _VALUES.get(kind)
        self.key = itemgetter(*STORE_ROWS[kind.store].key)

    def __call__(self, rec: Any) -> dict[str, Any]:
        m = self.metrics.of(rec) if self.metrics else None
        row = _row_keys(self.kind, rec, m)
        if self.values is not None:
            row.update(self.values(rec, m))
        from_metrics = self.from_metrics
        built = {f: _json_value(row[f] if f in row else getattr(m if f in from_metrics else rec, f))
                 for f in self.fields}
        # the event time stays exact: rounded (to 0.1 ms) it could fall after the record's own evaluation
        # time, and a session taken at 06:08:52.123456 raised nothing until the patient's next record
        built["t"] = row["t"]
        return built


_ROWS = {k.store: _RowBuilder(k) for k in RECORD_KINDS}


class PatientHistory:
    """One patient's metric rows (each store pruned to its ``keep_days`` before the newest event of any
    kind, and to its newest ``keep_max`` rows) and open findings. The rule set declares both
    (``history.keep_days`` and ``history.keep_max_per_kind`` in its file) and
    :func:`processors.rules.evaluator.step` applies them; an int keeps every store that long."""

    def __init__(self, patient_id: str, keep_days: int | Mapping[str, int] = KEEP_DAYS,
                 keep_max: int = KEEP_MAX_PER_KIND):
        self.patient_id = patient_id
        self.keep_days = keep_days  # the setter takes an int or a mapping
        self.keep_max = keep_max
        self._rows: dict[str, list[dict[str, Any]]] = {s: [] for s in STORES}
        self.first_event_ts: dict[str, float] = {}
        self.last_event_ts: dict[str, float] = {}
        self.open: dict[str, dict[str, Any]] = {}
        """rule id -> {severity, category, opened_at, changed_at, rule_version} (ISO times)."""
        self.evaluated_at: str | None = None
        self.care_states: list[dict[str, Any]] = []
        """The team's care-state changes that still decide a time, in the order set: {id, state, since, from
        (epoch s of 00:00 UTC of since), set_by}; the last one starting at or before a time holds then."""
        self._views: dict[str, list[dict[str, Any]]] = {}

    @property
    def keep_days(self) -> dict[str, int]:
        return dict(self._keep)

    @keep_days.setter
    def keep_days(self, value: int | Mapping[str, int]) -> None:
        self._keep = {s: int(value) for s in STORES} if isinstance(value, int) else {s: int(value[s]) for s in STORES}

    # ---------------------------------------------------------------- adding records
    def add(self, record: Record | Envelope) -> bool:
        """Compute the record's metrics and store (or replace) its row. Returns True if stored; False for
        a record already held exactly (a replay: the history, and so every rule's state, is unchanged) or
        one older than its store keeps.

        Rows older than their store's ``keep_days`` before the newest event are dropped, as is a
        record that is itself that old; beyond ``keep_max`` rows of a store, the oldest are dropped.
        """
        if isinstance(record, Envelope):
            record = record.record
        if record.patient_id != self.patient_id:
            raise ValueError(f"record of patient {record.patient_id} added to history of {self.patient_id}")
        kind = kind_of(record)
        store = kind.store
        build = _ROWS[store]
        row = build(record)
        t = row["t"]
        self.first_event_ts[store] = min(self.first_event_ts.get(store, t), t)
        self.last_event_ts[store] = max(self.last_event_ts.get(store, t), t)
        rows = self._rows[store]
        natural, key = build.key(row), build.key
        held = [r for r in rows if key(r) == natural]  # its rows so far (one pass over the store)
        if kind.merges and held:  # another part of the same night: merged into its row (schemas.niv.merged)
            row = merged(held[0], row)
        if any(_same_row(r, row) for r in held):
            return False  # a replay (at-least-once delivery, or the same data sent again): nothing changes
        if held:
            rows[:] = [r for r in rows if key(r) != natural]
        insort(rows, row, key=lambda r: r["t"])
        if kind is SPIROMETRY:
            self._pair_supine(row["k"][:10])
        self._views.clear()
        self.prune()
        return any(r is row for r in self._rows[store])

    def prune(self) -> None:
        """Drop rows older than their store's ``keep_days`` before the newest event of any kind, then
        the oldest rows of a store holding more than ``keep_max``."""
        if not self.last_event_ts:
            return
        newest = max(self.last_event_ts.values())
        for kind, rows in self._rows.items():
            cutoff = newest - self._keep[kind] * DAY_S
            if rows and rows[0]["t"] < cutoff:
                rows[:] = [r for r in rows if r["t"] >= cutoff]
                self._views.clear()
            if len(rows) > self.keep_max:
                del rows[:len(rows) - self.keep_max]  # rows are sorted by event time: the oldest go
                self._views.clear()

    def _pair_supine(self, day: str) -> None:
        """Same-day sitting/supine pair: store the supine drop on the latest sitting row of that day."""
        from processors.metrics import spirometry

        same = [r for r in self._rows[SPIROMETRY.store] if r["k"][:10] == day]
        sitting = [r for r in same if r["posture"] == "sitting"]
        supine = [r for r in same if r["posture"] == "supine"]
        for r in sitting:
            r["supine_drop_pct"] = None
        if not sitting or not supine:
            return
        sit, sup = sitting[-1], supine[-1]
        if sit["fvc_l"] and sup["fvc_l"] is not None:
            sit["supine_drop_pct"] = round(float(spirometry.supine_drop_pct(sit["fvc_l"], sup["fvc_l"])), 4)

    # ---------------------------------------------------------------- what the engine reads
    def rows(self, kind: str) -> list[dict[str, Any]]:
        """Rows of an expression kind (spiro = sitting sessions, supine, oxi, niv, alsfrs), oldest first."""
        view = self._views.get(kind)
        if view is None:
            spec = VIEWS.get(kind)
            view = self._rows[kind] if spec is None else self._rows[spec.store]
            if spec is not None and spec.posture is not None:
                view = [r for r in view if r["posture"] == spec.posture]
            self._views[kind] = view
        return view

    def first_event(self, kind: str | None) -> float | None:
        """Epoch seconds of the first record ever added (of a kind, or of any kind)."""
        if kind is None:
            return min(self.first_event_ts.values()) if self.first_event_ts else None
        return self.first_event_ts.get(_STORE_OF_VIEW.get(kind, kind))

    def last_event(self, kind: str | None = None) -> datetime | None:
        """Event time of the newest record (of a kind, or of any kind): the last upload's data."""
        values = list(self.last_event_ts.values()) if kind is None else _present(self.last_event_ts.get(kind))
        return datetime.fromtimestamp(max(values), tz=UTC) if values else None

    # ---------------------------------------------------------------- care state (schemas.carestate)
    def set_care_state(self, change: CareStateChange) -> bool:
        """Keep a team's change (False for one already kept: a replayed message). A change set later wins
        from its `since` on, so the earlier ones starting then or after it never decide a time again."""
        if any(entry["id"] == change.change_id for entry in self.care_states):
            return False
        starts = change.starts_at.timestamp()
        kept = [entry for entry in self.care_states if entry["from"] < starts]
        kept.append({"id": change.change_id, "state": change.state, "since": change.since.isoformat(),
                     "from": starts, "set_by": change.set_by})
        self.care_states = kept[-CARE_STATES_KEPT:]
        return True

    def care_state_at(self, ts: float) -> dict[str, Any] | None:
        """The change deciding the care state at epoch seconds `ts` (None: never set then)."""
        return next((entry for entry in reversed(self.care_states) if entry["from"] <= ts), None)

    def open_findings(self) -> dict[str, dict[str, Any]]:
        return self.open

    def count(self, kind: str) -> int:
        return len(self._rows[kind])

    # ---------------------------------------------------------------- serialisation
    def _state(self) -> dict[str, Any]:
        return {
            "history_version": HISTORY_VERSION,
            "patient_id": self.patient_id,
            "keep_days": max(self._keep.values()),  # what a worker from before per-kind retention reads
            "keep_days_by_kind": self.keep_days,
            "keep_max_per_kind": self.keep_max,
            "rows": self._rows,
            "first_event": self.first_event_ts,
            "last_event": self.last_event_ts,
            "open": self.open,
            "evaluated_at": self.evaluated_at,
            "care_states": self.care_states,
        }

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._state())

    def to_json(self) -> bytes:
        """The faust table value: compact JSON bytes, which the worker's in-memory table holds as they
        are (2.8x less memory than the decoded dict) and the changelog carries unchanged. A NaN metric
        is written as null (missing), which is how the rules read it."""
        # copied into a bytes object of its own size: orjson writes into a buffer of at least ~8 KiB and
        # shrinks it in place, and thousands of small values held at once left a ~7 KiB hole each
        # (measured: 190 MiB worker peak for 10,000 new patients instead of 134)
        return bytes(memoryview(orjson.dumps(self._state())))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PatientHistory:
        return cls._from_state(copy.deepcopy(dict(data)))

    @classmethod
    def from_json(cls, data: bytes | str) -> PatientHistory:
        """A table value: JSON bytes (also what faust's JSON codec wrote before values were bytes, which
        may hold NaN: orjson refuses it, the standard library reads it)."""
        try:
            state = orjson.loads(data)
        except orjson.JSONDecodeError:
            state = json.loads(data)
        return cls._from_state(state)

    @classmethod
    def _from_state(cls, data: dict[str, Any]) -> PatientHistory:
        """Builds on `data` itself (the caller's own copy): no row is copied again."""
        version = data.get("history_version")
        if version != HISTORY_VERSION:
            raise ValueError(f"unsupported PatientHistory version {version!r} (expected {HISTORY_VERSION})")
        by_kind = data.get("keep_days_by_kind")  # absent from values written before per-kind retention
        keep = {s: by_kind.get(s, KEEP_DAYS) for s in STORES} if by_kind else int(data.get("keep_days", KEEP_DAYS))
        h = cls(data["patient_id"], keep, int(data.get("keep_max_per_kind", KEEP_MAX_PER_KIND)))
        rows = data.get("rows", {})
        for kind in STORES:
            h._rows[kind] = sorted(rows.get(kind, []), key=lambda r: r["t"])
        h.first_event_ts = {k: float(v) for k, v in data.get("first_event", {}).items()}
        h.last_event_ts = {k: float(v) for k, v in data.get("last_event", {}).items()}
        h.open = dict(data.get("open", {}))
        h.evaluated_at = data.get("evaluated_at")
        h.care_states = list(data.get("care_states", []))  # absent from values written before care states
        return h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PatientHistory) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self._rows.items())
        return f"PatientHistory({self.patient_id!r}, {counts}, open={sorted(self.open)})"

