"""Read queries the team needs: a patient's timeline, the cohort's latest values, oximetry signals.

Synchronous (psycopg.Connection), for the CLI, dashboards and scripts. Every query bounds the
time column, so PostgreSQL prunes monthly partitions (or TimescaleDB chunks).

Conventions: `date` of a record is its UTC calendar day (nights: their `night_date`); `at` is a
timezone-aware instant used for ordering (a NIV night, which the device reports as a noon-to-noon
day, is placed at 12:00 UTC of its `night_date`).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row, tuple_row

from respmon.core.signals import decode_signal
from schemas.kinds import RECORD_KINDS, Kind, kind_named

KINDS = tuple(k.name for k in RECORD_KINDS)
"""The record kinds a timeline lists (``record.kind``), each read by its query below."""

_TIMELINE_SQL: dict[str, str] = {
    "spirometry": """
        SELECT taken_at AS at, (taken_at AT TIME ZONE 'UTC')::date AS date, source, upload_id::text,
               fvc_l, fvc_pct_pred, fev1_l, svc_l, mip_cmh2o, mep_cmh2o, snip_cmh2o, pcf_lpm, pcf_assisted,
               posture, grade
          FROM spirometry_sessions
         WHERE patient_id = %(p)s AND taken_at >= %(lo)s AND taken_at < %(hi)s""",
    "oximetry_night": """
        SELECT n.start_at AS at, n.night_date AS date, n.source, n.upload_id::text,
               n.valid, n.invalid_reason, n.recording_min, n.vrt_min, n.mean_spo2, n.min_spo2, n.t90_pct,
               n.t88_pct, n.longest_le88_min, n.odi3, n.odi4, n.mean_pulse, n.on_niv,
               EXISTS (SELECT 1 FROM oximetry_signals s WHERE s.patient_id = n.patient_id
                          AND s.start_at = n.start_at AND s.source = n.source) AS has_signal
          FROM oximetry_nights n
         WHERE n.patient_id = %(p)s AND n.night_date BETWEEN %(start)s AND %(end)s
           AND n.start_at >= %(lo_night)s AND n.start_at < %(hi_night)s""",
    "niv_night": """
        SELECT (night_date + time '12:00') AT TIME ZONE 'UTC' AS at, night_date AS date, source, upload_id::text,
               usage_hours, leak_p95_lpm, leak_kind, ahi, resp_rate, tidal_volume_ml, minute_vent_lpm, spo2_mean,
               spo2_t90_pct, pct_spont_triggered
          FROM niv_nights
         WHERE patient_id = %(p)s AND night_date BETWEEN %(start)s AND %(end)s""",
    "alsfrs_r": """
        SELECT taken_at AS at, (taken_at AT TIME ZONE 'UTC')::date AS date, source, upload_id::text,
               total, items[10] + items[11] + items[12] AS respiratory_subscore, items
          FROM alsfrs_r
         WHERE patient_id = %(p)s AND taken_at >= %(lo)s AND taken_at < %(hi)s""",
}
_COMMON = ("at", "date", "source", "upload_id")


def timeline_sql(kind: Kind) -> str:
    """A kind's timeline query: its own above, else :func:`table_timeline_sql`."""
    return _TIMELINE_SQL.get(kind.name) or table_timeline_sql(kind)


def table_timeline_sql(kind: Kind) -> str:
    """Every column of a kind's table, dated as the kind is: an instant by its UTC day; a day (a therapy
    night) by that day, placed at its noon UTC. A new kind is listed without a query of its own."""
    tc = kind.time_column
    if kind.by_day:
        dated = f"({tc} + time '12:00') AT TIME ZONE 'UTC' AS at, {tc} AS date"
        within = f"{tc} BETWEEN %(start)s AND %(end)s"
    else:
        dated = f"{tc} AS at, ({tc} AT TIME ZONE 'UTC')::date AS date"
        within = f"{tc} >= %(lo)s AND {tc} < %(hi)s"
    return (f"SELECT *, {dated}, upload_id::text AS upload_id FROM {kind.table}"  # later names win in a dict row
            f" WHERE patient_id = %(p)s AND {within}")


def _utc_midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    """Days `start` to `end`, both included (UTC calendar days), and the instants that bound them: what every
    read of a patient's series over a period takes (timeline, charts, report)."""

    start: date
    end: date

    @property
    def lo(self) -> datetime:
        return _utc_midnight(self.start)

    @property
    def hi(self) -> datetime:
        """The first instant after the period."""
        return _utc_midnight(self.end + timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def params(self, patient_id: str) -> dict[str, Any]:
        """The query parameters: `p`, `start`/`end` (days), `lo`/`hi` (instants) and `lo_night`/`hi_night`."""
        # a night dated D starts between D 00:00 and D+1 12:00 in any time zone (margins for pruning)
        return {"p": patient_id, "start": self.start, "end": self.end, "lo": self.lo, "hi": self.hi,
                "lo_night": self.lo - timedelta(days=1), "hi_night": self.hi + timedelta(days=1)}


def patient_timeline(conn: psycopg.Connection, patient_id: str, start: date, end: date,
                     kinds: tuple[str, ...] = KINDS) -> list[dict[str, Any]]:
    """Every spirometry session, oximetry night, NIV night and ALSFRS-R form of a patient whose date
    is within [start, end] (inclusive), ordered by time (then kind, source).

    Each item: `{"kind", "at", "date", "source", "upload_id", "metrics": {...}}`; `metrics` holds the
    kind's stored values (e.g. oximetry: valid, t90_pct, odi3, longest_le88_min, ..., has_signal)."""
    params = Period(start, end).params(patient_id)
    items: list[dict[str, Any]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        for kind in kinds:
            spec = kind_named(kind)
            skip = {*_COMMON, "patient_id", spec.time_column, "stored_at"}  # other key columns are values
            for row in cur.execute(timeline_sql(spec).encode(), params).fetchall():
                metrics = {k: v for k, v in row.items() if k not in skip}
                items.append({"kind": kind, **{k: row[k] for k in _COMMON}, "metrics": metrics})
    order = {k: i for i, k in enumerate(KINDS)}
    items.sort(key=lambda it: (it["at"], order[it["kind"]], it["source"]))
    return items


_COHORT_SQL = """
WITH p AS (SELECT patient_id, ord FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS u(patient_id, ord))
SELECT p.patient_id,
       s.taken_at AS fvc_taken_at, s.fvc_pct_pred, s.fvc_l,
       o.night_date AS oximetry_night_date, o.start_at AS oximetry_start_at, o.t90_pct, o.odi3,
       o.longest_le88_min,
       n.night_date AS niv_night_date, n.usage_hours AS niv_usage_hours, n.leak_p95_lpm AS niv_leak_p95_lpm,
       n.ahi AS niv_ahi,
       u.last_upload_at,
       a.open_alerts
  FROM p
  LEFT JOIN LATERAL (
        SELECT taken_at, fvc_pct_pred, fvc_l FROM spirometry_sessions
         WHERE patient_id = p.patient_id AND (fvc_l IS NOT NULL OR fvc_pct_pred IS NOT NULL)
         ORDER BY taken_at DESC LIMIT 1) s ON true
  LEFT JOIN LATERAL (
        SELECT night_date, start_at, t90_pct, odi3, longest_le88_min FROM oximetry_nights
         WHERE patient_id = p.patient_id AND valid
         ORDER BY start_at DESC LIMIT 1) o ON true
  LEFT JOIN LATERAL (
        SELECT night_date, usage_hours, leak_p95_lpm, ahi FROM niv_nights
         WHERE patient_id = p.patient_id
         ORDER BY night_date DESC LIMIT 1) n ON true
  LEFT JOIN LATERAL (
        SELECT max(r.received_at) AS last_upload_at FROM raw_uploads r JOIN devices d USING (device_id)
         WHERE d.patient_id = p.patient_id) u ON true
  LEFT JOIN LATERAL (
        SELECT count(*)::int AS open_alerts FROM alerts
         WHERE patient_id = p.patient_id AND status <> 'resolved') a ON true
 ORDER BY p.ord
"""

_ALL_PATIENTS_SQL = " UNION ".join(
    ["SELECT patient_id FROM devices", *(f"SELECT patient_id FROM {k.table}" for k in RECORD_KINDS)]) + " ORDER BY 1"


def cohort_latest(conn: psycopg.Connection, patient_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Latest values per patient, one dict each (in the order given, or by patient id for all known
    patients): last FVC (`fvc_taken_at`, `fvc_pct_pred`, `fvc_l`), last *valid* oximetry night
    (`oximetry_night_date`, `t90_pct`, `odi3`, `longest_le88_min`), last NIV night
    (`niv_night_date`, `niv_usage_hours`, `niv_leak_p95_lpm`, `niv_ahi`), `last_upload_at` (any
    upload from the patient's devices) and `open_alerts` (open or acknowledged). Missing values are
    None; a patient with no data at all still gets a row."""
    if patient_ids is None:
        patient_ids = [r[0] for r in conn.cursor(row_factory=tuple_row).execute(_ALL_PATIENTS_SQL).fetchall()]
    if not patient_ids:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_COHORT_SQL, {"ids": patient_ids}).fetchall()


def oximetry_signal(conn: psycopg.Connection, patient_id: str, start_at: datetime,
                    source: str | None = None) -> dict[str, Any] | None:
    """One night's raw samples: `{"start_at", "source", "interval_s", "spo2", "pulse", "motion"}` with
    float numpy arrays (NaN = no reading; motion None if not recorded). None if not stored."""
    row = conn.cursor(row_factory=tuple_row).execute(  # whatever rows the caller's connection makes
        "SELECT start_at, source, interval_s, codec, spo2, pulse, motion FROM oximetry_signals"
        " WHERE patient_id = %s AND start_at = %s AND (%s::text IS NULL OR source = %s)"
        " ORDER BY source LIMIT 1", (patient_id, start_at, source, source)).fetchone()
    if row is None:
        return None
    start, src, interval_s, codec, spo2, pulse, motion = row
    if codec != "respmon-sig/1":
        raise ValueError(f"unknown signal codec {codec!r}")
    return {"start_at": start, "source": src, "interval_s": interval_s, "spo2": decode_signal(spo2),
            "pulse": decode_signal(pulse), "motion": None if motion is None else decode_signal(motion)}


def oximetry_minutes(conn: psycopg.Connection, patient_id: str, start: date, end: date) -> list[dict[str, Any]]:
    """Per-minute SpO2 min/mean/max and pulse mean of every stored night starting in [start, end]
    (UTC days), for charts: one dict per night with `start_at`, `source` and float numpy arrays
    (NaN = no valid sample in that minute), minute i covering [start_at + i min, + 1 min)."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        "SELECT start_at, source, spo2_min_1m, spo2_mean_1m, spo2_max_1m, pulse_mean_1m FROM oximetry_signals"
        " WHERE patient_id = %s AND start_at >= %s AND start_at < %s ORDER BY start_at, source",
        (patient_id, _utc_midnight(start), _utc_midnight(end + timedelta(days=1)))).fetchall()

    def arr(tenths: list[int | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v / 10 for v in tenths], dtype=float)

    return [{"start_at": r[0], "source": r[1], "spo2_min": arr(r[2]), "spo2_mean": arr(r[3]),
             "spo2_max": arr(r[4]), "pulse_mean": arr(r[5])} for r in rows]
