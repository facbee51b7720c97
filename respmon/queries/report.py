"""What a patient's printable report reads, for one period of days (both ends included).

Every query takes one patient and bounds the time column, so PostgreSQL prunes the monthly partitions. The
caller has checked the member's access and recorded the look (`respmon.web.context.Web.reading`); these
functions only read. Rows are dicts (psycopg's dict_row), in time order.
"""

from datetime import date
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from respmon.queries.records import Period


def _rows(conn: psycopg.Connection[Any], sql: LiteralString, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


# SVC % predicted is not stored: as processors/metrics/spirometry.py does, it applies the session's own
# predicted FVC (fvc_l / fvc_pct_pred) to the measured SVC.
_SPIROMETRY: LiteralString = """
SELECT taken_at, (taken_at AT TIME ZONE 'UTC')::date AS day, posture, source, grade, fvc_pct_pred,
       CASE WHEN svc_l IS NOT NULL AND fvc_l > 0 AND fvc_pct_pred IS NOT NULL
            THEN svc_l / fvc_l * fvc_pct_pred END AS svc_pct_pred
  FROM spirometry_sessions
 WHERE patient_id = %(p)s AND taken_at >= %(lo)s AND taken_at < %(hi)s
   AND (fvc_pct_pred IS NOT NULL OR svc_l IS NOT NULL)
 ORDER BY taken_at, source"""


def spirometry(conn: psycopg.Connection[Any], patient_id: str, period: Period) -> list[dict[str, Any]]:
    """Sessions with a vital capacity: `taken_at`, `day`, `posture`, `grade`, `fvc_pct_pred`, `svc_pct_pred`."""
    return _rows(conn, _SPIROMETRY, period.params(patient_id))


_OXIMETRY: LiteralString = """
SELECT night_date, source, valid, invalid_reason, t90_pct, t88_pct, odi3, min_spo2, on_niv
  FROM oximetry_nights
 WHERE patient_id = %(p)s AND night_date BETWEEN %(start)s AND %(end)s
   AND start_at >= %(lo_night)s AND start_at < %(hi_night)s
 ORDER BY night_date, start_at, source"""


def oximetry(conn: psycopg.Connection[Any], patient_id: str, period: Period) -> list[dict[str, Any]]:
    """Every oximetry night (valid or not, with `valid` and `invalid_reason`): T90, T88, ODI3, min SpO2."""
    return _rows(conn, _OXIMETRY, period.params(patient_id))


# Two devices reporting the same night (a replaced ventilator) report the same hours of use: the night
# counts once, with the longer use.
_NIV: LiteralString = """
SELECT night_date, max(usage_hours) AS usage_hours, max(leak_p95_lpm) AS leak_p95_lpm, max(ahi) AS ahi
  FROM niv_nights
 WHERE patient_id = %(p)s AND night_date BETWEEN %(start)s AND %(end)s
 GROUP BY night_date
 ORDER BY night_date"""


def niv_nights(conn: psycopg.Connection[Any], patient_id: str, period: Period) -> list[dict[str, Any]]:
    """One row per night with ventilator data: `night_date`, `usage_hours`, `leak_p95_lpm`, `ahi`."""
    return _rows(conn, _NIV, period.params(patient_id))


def niv_first_night(conn: psycopg.Connection[Any], patient_id: str, before: date) -> date | None:
    """The patient's first ventilator night up to `before`: when usage compliance starts counting."""
    rows = _rows(conn, "SELECT min(night_date) AS first FROM niv_nights WHERE patient_id = %(p)s"
                       " AND night_date <= %(end)s", {"p": patient_id, "end": before})
    return rows[0]["first"] if rows else None


_ALSFRS: LiteralString = """
SELECT taken_at, (taken_at AT TIME ZONE 'UTC')::date AS day, total,
       items[1] + items[2] + items[3] AS bulbar_subscore, items[10] + items[11] + items[12] AS respiratory_subscore
  FROM alsfrs_r
 WHERE patient_id = %(p)s AND taken_at >= %(lo)s AND taken_at < %(hi)s
 ORDER BY taken_at"""


def alsfrs_r(conn: psycopg.Connection[Any], patient_id: str, period: Period) -> list[dict[str, Any]]:
    """ALSFRS-R forms: `total`, bulbar (items 1-3) and respiratory (items 10-12) subscores."""
    return _rows(conn, _ALSFRS, period.params(patient_id))


# An alert belongs to the period when it was active at some time in it: opened before the period ended and
# not resolved before it began.
_ALERTS: LiteralString = """
SELECT a.alert_id, a.rule_id, a.rule_version, a.category, a.severity, a.status, a.resolution, a.opened_at,
       a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.assigned_to, a.snoozed_until, a.action, a.citation,
       COALESCE((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(a.rules) AS k), ARRAY[a.rule_id]) AS rule_ids,
       COALESCE((SELECT jsonb_agg(jsonb_build_object('at', e.at, 'actor', e.actor, 'action', e.action,
                                                     'note', e.note) ORDER BY e.at, e.id)
                   FROM alert_events e WHERE e.alert_id = a.alert_id), '[]'::jsonb) AS events
  FROM alerts a
 WHERE a.patient_id = %(p)s AND a.opened_at < %(hi)s AND (a.resolved_at IS NULL OR a.resolved_at >= %(lo)s)
 ORDER BY a.opened_at, a.alert_id"""


def alerts(conn: psycopg.Connection[Any], patient_id: str, period: Period) -> list[dict[str, Any]]:
    """Alerts active at some time in the period, with their outcome and audit trail (`events`: at, actor,
    action, note; `at` as ISO text) and every contributing rule id (`rule_ids`)."""
    return _rows(conn, _ALERTS, period.params(patient_id))


_NOTES: LiteralString = """
SELECT at, author, note FROM patient_notes
 WHERE patient_id = %(p)s AND at >= %(lo)s AND at < %(hi)s
 ORDER BY at, id"""


def notes(conn: psycopg.Connection[Any], patient_id: str, period: Period) -> list[dict[str, Any]]:
    """The team's notes on the patient written in the period."""
    return _rows(conn, _NOTES, period.params(patient_id))


_CARE_STATE_NOW: LiteralString = """
SELECT state, since, note, set_by, set_at FROM patient_care_states WHERE patient_id = %(p)s"""
_CARE_STATE_CHANGES: LiteralString = """
SELECT state, since, note, set_by, set_at FROM care_states
 WHERE patient_id = %(p)s AND set_at >= %(lo)s AND set_at < %(hi)s
 ORDER BY set_at, id"""


def care_state(conn: psycopg.Connection[Any], patient_id: str, period: Period
               ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The care state in force now (None: never set) and the changes set during the period."""
    params = period.params(patient_id)
    now = _rows(conn, _CARE_STATE_NOW, params)
    return (now[0] if now else None), _rows(conn, _CARE_STATE_CHANGES, params)
