"""Reads behind the FHIR API (`respmon/fhir`): patients, devices, observations and alerts of a member's teams.

Every stored value and nightly metric is one Observation row here (``respmon.fhir.codes.OBSERVATIONS``):
each record kind's table is read once and unpivoted (``CROSS JOIN LATERAL (VALUES ...)``), so a search over
several codes costs one scan per kind. Each query takes the member's scope condition (``alerts.access.scope``);
the caller records the look in ``access_log``.
"""

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.access import scope
from respmon.fhir.codes import BY_CODE, OBSERVATIONS, ObsDef, defs_for_field
from schemas.kinds import ALSFRS, BLOOD_GAS, CAPNOGRAPHY, NIV, OXIMETRY, SPIROMETRY, Kind

MAX_EVIDENCE_PER_INPUT = 14
"""Dated values one rule input contributes to an alert's evidence at most (the newest: e-mails show as many)."""

_EXPR = {"respiratory": "(t.items[10] + t.items[11] + t.items[12])"}
"""Values that are not one column."""

_EXTRA: dict[str, str] = {
    SPIROMETRY.name: "jsonb_build_object('posture', t.posture, 'grade', t.grade, 'pcf_assisted', t.pcf_assisted)",
    OXIMETRY.name: "jsonb_build_object('on_niv', t.on_niv)",
    NIV.name: "jsonb_build_object('leak_kind', t.leak_kind)",
    ALSFRS.name: "'{}'::jsonb",
    BLOOD_GAS.name: "jsonb_build_object('sample', t.sample)",
    CAPNOGRAPHY.name: "'{}'::jsonb",
}


def _span(kind: Kind) -> tuple[str, str]:
    """SQL for when a record's observation starts and ends: an instant, a recorded night, a therapy day."""
    if kind.by_day:
        start = f"(t.{kind.time_column} + time '12:00') AT TIME ZONE 'UTC'"
        return start, f"{start} + interval '1 day'"
    if kind.lasts:
        lasting = "make_interval(secs => coalesce(t.recording_min, 0) * 60)"
        return f"t.{kind.time_column}", f"t.{kind.time_column} + {lasting}"
    return f"t.{kind.time_column}", f"t.{kind.time_column}"


def _branch(kind: Kind, defs: Sequence[ObsDef]) -> str:
    """One kind's rows, one per (record, value): patient_id, source, start_at, end_at, code, value, extra and
    the night's date (nights)."""
    values = ", ".join(f"('{d.code}', {_sample(d)}, ({_EXPR.get(d.column, 't.' + d.column)})::float8)" for d in defs)
    start, end = _span(kind)
    valid = " AND t.valid" if kind in (OXIMETRY, CAPNOGRAPHY) else ""  # an invalid night's metrics are not exported
    sampled = " AND (v.sample IS NULL OR v.sample = t.sample)" if kind is BLOOD_GAS else ""
    night = "t.night_date" if kind in (OXIMETRY, NIV, CAPNOGRAPHY) else "NULL::date"
    return (f"SELECT t.patient_id, t.source, {start} AS start_at, {end} AS end_at, v.code, v.value,"
            f" {_EXTRA[kind.name]} AS extra, {night} AS night FROM {kind.table} t"
            f" CROSS JOIN LATERAL (VALUES {values}) AS v(code, sample, value)"
            f" WHERE v.value IS NOT NULL{valid}{sampled}")


def _sample(d: ObsDef) -> str:
    return f"'{d.sample}'::text" if d.sample else "NULL::text"


@dataclass(frozen=True)
class DateBound:
    """One `date` search condition: a FHIR prefix and the range [lo, hi) its value's precision covers."""

    prefix: str
    lo: datetime
    hi: datetime

    def sql(self) -> tuple[str, tuple[datetime, ...]]:
        """The condition on an observation's [start_at, end_at] (FHIR's range semantics for each prefix)."""
        if self.prefix == "eq":
            return "(start_at >= %s AND end_at < %s)", (self.lo, self.hi)
        if self.prefix == "gt":
            return "end_at >= %s", (self.hi,)
        if self.prefix == "ge":
            return "end_at >= %s", (self.lo,)
        if self.prefix == "lt":
            return "start_at < %s", (self.lo,)
        return "start_at < %s", (self.hi,)  # le


@dataclass(frozen=True)
class ObservationSearch:
    patients: tuple[str, ...] | None = None
    """Patient ids (None: all the member's patients)."""
    codes: tuple[str, ...] | None = None
    """respmon codes (None: every code)."""
    dates: tuple[DateBound, ...] = ()


def _union(codes: Iterable[str] | None) -> str:
    wanted = [d for d in OBSERVATIONS if codes is None or d.code in set(codes)]
    by_kind: dict[str, list[ObsDef]] = {}
    for d in wanted:
        by_kind.setdefault(d.kind.name, []).append(d)
    kinds = {d.kind.name: d.kind for d in wanted}
    if not by_kind:
        return ("SELECT NULL::text AS patient_id, NULL::text AS source, NULL::timestamptz AS start_at,"
                " NULL::timestamptz AS end_at, NULL::text AS code, NULL::float8 AS value, NULL::jsonb AS extra,"
                " NULL::date AS night WHERE false")
    return " UNION ALL ".join(_branch(kinds[name], defs) for name, defs in by_kind.items())


def _page(conn: psycopg.Connection[Any], base: str, args: list[Any], order: str, offset: int,
          limit: int) -> tuple[int, list[dict[str, Any]]]:
    """A search's total and one page of its rows (`limit` 0: the total only, as `_summary=count`)."""
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(f"SELECT count(*) AS n FROM ({base}) q".encode(), args).fetchone()
    total = int(row["n"]) if row else 0
    if limit == 0 or offset >= total:
        return total, []
    return total, cur.execute(f"{base} ORDER BY {order} LIMIT %s OFFSET %s".encode(),
                              [*args, limit, offset]).fetchall()


def _scoped(member_id: str, **any_of: Sequence[Any] | None) -> tuple[str, list[Any]]:
    """The member's patients (`alerts.access.scope`) and, for each column given values, one of them."""
    seen, seen_args = scope(member_id)
    where, args = [seen], list[Any](seen_args)
    for column, values in any_of.items():
        if values is not None:
            where.append(f"{column} = ANY(%s)")
            args.append(list(values))
    return " AND ".join(where), args


def _where(member_id: str, search: ObservationSearch) -> tuple[str, list[Any]]:
    where, args = _scoped(member_id, patient_id=search.patients)
    for bound in search.dates:
        cond, cond_args = bound.sql()
        where += f" AND {cond}"
        args.extend(cond_args)
    return where, args


def search_observations(conn: psycopg.Connection[Any], member_id: str, search: ObservationSearch,
                        offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """(total matches, the page of rows), newest first. `limit` 0 counts only."""
    if search.codes is not None and not search.codes or search.patients is not None and not search.patients:
        return 0, []
    where, args = _where(member_id, search)
    return _page(conn, f"SELECT * FROM ({_union(search.codes)}) u WHERE {where}", args,
                 "start_at DESC, patient_id, code, source, extra::text", offset, limit)


# -- Observation ids: readable, stable, and enough to find the row again ------------------------------------------

_ID = re.compile(r"^([a-z0-9-]+)\.(\d{8}|\d{14})\.([0-9a-f]{12})$")


def _who_hash(patient_id: str, source: str, extra: dict[str, Any] | None) -> str:
    sample = (extra or {}).get("sample") or ""
    return hashlib.sha256(f"{patient_id}\0{source}\0{sample}".encode()).hexdigest()[:12]


def observation_id(row: dict[str, Any]) -> str:
    """`<code>.<UTC stamp>.<12 hex of patient, source, sample>`: a therapy day is stamped by its date, anything
    else by its start to the second. FHIR ids allow [A-Za-z0-9-.]{1,64}: the longest here is 52."""
    d = BY_CODE[row["code"]]
    start: datetime = row["start_at"].astimezone(UTC)
    stamp = start.strftime("%Y%m%d") if d.kind.by_day else start.strftime("%Y%m%d%H%M%S")
    return f"{d.code}.{stamp}.{_who_hash(row['patient_id'], row['source'], row.get('extra'))}"


def read_observation(conn: psycopg.Connection[Any], member_id: str, obs_id: str) -> dict[str, Any] | None:
    """The row an id names, if its patient is in the member's teams (None otherwise, or for a malformed id)."""
    found = _ID.match(obs_id)
    if not found or found.group(1) not in BY_CODE:
        return None
    d = BY_CODE[found.group(1)]
    stamp = found.group(2)
    if d.kind.by_day != (len(stamp) == 8):
        return None
    try:
        if d.kind.by_day:
            day = datetime.strptime(stamp, "%Y%m%d").date()
            lo = datetime.combine(day, time(12), tzinfo=UTC)
        else:
            lo = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    seen, seen_args = scope(member_id)
    rows = conn.cursor(row_factory=dict_row).execute(
        f"SELECT * FROM ({_branch(d.kind, [d])}) u WHERE start_at >= %s AND start_at < %s AND {seen}".encode(),
        [lo, lo + timedelta(seconds=1), *seen_args]).fetchall()
    return next((r for r in rows if _who_hash(r["patient_id"], r["source"], r["extra"]) == found.group(3)), None)


# -- patients, devices, alerts --------------------------------------------------------------------------------------

def search_patients(conn: psycopg.Connection[Any], member_id: str, patients: Sequence[str] | None,
                    offset: int, limit: int) -> tuple[int, list[str]]:
    """Patients of the member's teams (currently assigned), by id."""
    where, args = _scoped(member_id, patient_id=patients)
    total, rows = _page(conn, f"SELECT DISTINCT patient_id FROM patient_teams WHERE ended_at IS NULL AND {where}",
                        args, "patient_id", offset, limit)
    return total, [r["patient_id"] for r in rows]


def search_devices(conn: psycopg.Connection[Any], member_id: str, patients: Sequence[str] | None,
                   device_ids: Sequence[str] | None, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Devices bound to patients of the member's teams (never their token hashes)."""
    where, args = _scoped(member_id, patient_id=patients, device_id=device_ids)
    return _page(conn, "SELECT device_id, patient_id, active, created_at, expires_at, revoked_at FROM devices"
                 f" WHERE {where}", args, "device_id", offset, limit)


ALERT_COLUMNS = ("alert_id, patient_id, rule_id, rule_version, category, severity, status, evidence, action,"
                 " citation, finding_at, opened_at, updated_at, acknowledged_at, resolved_at, resolution, rules")


def search_alerts(conn: psycopg.Connection[Any], member_id: str, patients: Sequence[str] | None,
                  alert_ids: Sequence[int] | None, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Alerts (every status) of the member's patients, newest first."""
    where, args = _scoped(member_id, patient_id=patients, alert_id=alert_ids)
    return _page(conn, f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {where}", args, "alert_id DESC", offset, limit)


def read_alert(conn: psycopg.Connection[Any], alert_id: int) -> dict[str, Any] | None:
    """One alert by id, whoever's patient (the FHIR push: no member's scope)."""
    return conn.cursor(row_factory=dict_row).execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = %s",
                                                     (alert_id,)).fetchone()


# -- what an alert's evidence rests on ------------------------------------------------------------------------------

_FIELD = re.compile(r"\b(spiro|oxi|niv|alsfrs|gas|tcco2)\.([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class EvidenceInput:
    """Values of one kind a rule read: those of the listed `dates` (the evidence's points: a night's date, or
    a record's UTC time), or without dates the newest `last` up to `until`."""

    defs: tuple[ObsDef, ...]
    until: datetime
    dates: tuple[str, ...] = ()
    last: int = 1


def _instant(value: str, default: datetime) -> datetime:
    """An evidence date (ISO text; UTC when it names no zone), or `default` when it cannot be read."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def evidence_inputs(evidence: dict[str, Any], finding_at: datetime, rule_sources: Sequence[str]) -> list[EvidenceInput]:
    """The inputs of one rule's evidence (`inputs`: expression -> {date | points, window}) that name stored
    values, each with the dates of the rows the rule saw (an input that saw none cites nothing). Evidence
    without `inputs` (written by hand, a seeded alert) cites the newest value before the finding of each
    ``store.field`` the rule's expressions (`rule_sources`) read."""
    inputs = evidence.get("inputs")
    if not isinstance(inputs, dict):
        defs = tuple(dict.fromkeys(d for source in rule_sources for d in _defs_in(source)))
        return [EvidenceInput(defs, finding_at)] if defs else []
    out: list[EvidenceInput] = []
    for expression, item in inputs.items():
        defs = _defs_in(expression)
        if not defs or not isinstance(item, dict):
            continue
        points = [p["date"] for p in item.get("points") or [] if isinstance(p, dict) and p.get("date")]
        dates = points or ([item["date"]] if item.get("date") else [])
        if dates:
            out.append(EvidenceInput(defs, finding_at, tuple(str(d) for d in dates[-MAX_EVIDENCE_PER_INPUT:])))
    return out


def _defs_in(expression: str) -> tuple[ObsDef, ...]:
    found: list[ObsDef] = []
    for store, name in _FIELD.findall(expression):
        found.extend(defs_for_field(store, name))
    return tuple(dict.fromkeys(found))


def evidence_rows(conn: psycopg.Connection[Any], patient_id: str, inputs: Sequence[EvidenceInput]
                  ) -> list[dict[str, Any]]:
    """The Observation rows behind the inputs (at most the finding's time), each row once."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    cur = conn.cursor(row_factory=dict_row)
    for item in inputs:
        days = [d for d in item.dates if len(d) == 10]
        instants = [_instant(d, item.until) for d in item.dates if len(d) != 10]
        for d in item.defs:
            cond, args = "patient_id = %s AND start_at <= %s", [patient_id, item.until]
            if item.dates:
                cond += " AND (night = ANY(%s::date[]) OR start_at = ANY(%s::timestamptz[]))"
                args += [days, instants]
            limit = len(item.dates) * 2 if item.dates else item.last  # two sources may share a night
            for row in cur.execute(f"SELECT * FROM ({_branch(d.kind, [d])}) u WHERE {cond}"
                                   " ORDER BY start_at DESC LIMIT %s".encode(), [*args, limit]).fetchall():
                rows.setdefault((row["code"], row["start_at"], row["source"], str(row["extra"])), row)
    return list(rows.values())
