"""What the patient page and the night view show: a patient's series over a date range, their alerts, notes
and care states, one night's rows, its per-minute arrays, raw samples and desaturation events.

Synchronous (psycopg.Connection); the caller has checked the member's reach and records the look
(`respmon.web.context.Web.reading`). Every series query bounds its time column (partition pruning). Values
come back as stored; rounding and the chart layout are the page's (`respmon.web.patient`).
"""

import math
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row, tuple_row

from processors.metrics import oximetry as oxi
from respmon.queries.records import Period, oximetry_minutes, oximetry_signal

__all__ = ["DesaturationEvent", "Period", "add_note", "alerts_of", "care_states_of", "co2_series",
           "desaturation_events", "night_minutes", "niv_night", "niv_series", "notes_of", "oximetry_night",
           "oximetry_series", "questionnaire_series", "raw_signal", "signal_window", "spirometry_series"]


def _rows(conn: psycopg.Connection[Any], sql: str, params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.encode(), params).fetchall()


# ------------------------------------------------------------------------------------------ series
# SVC % predicted is not stored: as the metrics do (GLI has no VC equation), SVC is set against the FVC
# predicted of the same session (fvc_l * 100 / fvc_pct_pred).
_SPIROMETRY = """
SELECT taken_at AS at, posture, source, grade, fvc_pct_pred,
       CASE WHEN svc_l IS NOT NULL AND fvc_l > 0 AND fvc_pct_pred > 0 THEN svc_l * fvc_pct_pred / fvc_l END
         AS svc_pct_pred,
       mip_cmh2o, snip_cmh2o, mep_cmh2o, pcf_lpm, pcf_assisted
  FROM spirometry_sessions
 WHERE patient_id = %(p)s AND taken_at >= %(lo)s AND taken_at < %(hi)s
 ORDER BY taken_at, source"""

_NIV = """
SELECT night_date, source, usage_hours, leak_p95_lpm, leak_kind, ahi, resp_rate, tidal_volume_ml, minute_vent_lpm
  FROM niv_nights
 WHERE patient_id = %(p)s AND night_date BETWEEN %(start)s AND %(end)s
 ORDER BY night_date, source"""

_OXIMETRY = """
SELECT n.night_date, n.start_at AS at, n.source, n.valid, n.t90_pct, n.t88_pct, n.odi3, n.min_spo2, n.vrt_min,
       EXISTS (SELECT 1 FROM oximetry_signals s WHERE s.patient_id = n.patient_id
                  AND s.start_at = n.start_at AND s.source = n.source) AS has_signal
  FROM oximetry_nights n
 WHERE n.patient_id = %(p)s AND n.night_date BETWEEN %(start)s AND %(end)s
   AND n.start_at >= %(lo_night)s AND n.start_at < %(hi_night)s
 ORDER BY n.start_at, n.source"""

_ALSFRS = """
SELECT taken_at AS at, total, items[1] + items[2] + items[3] AS bulbar,
       items[10] + items[11] + items[12] AS respiratory
  FROM alsfrs_r
 WHERE patient_id = %(p)s AND taken_at >= %(lo)s AND taken_at < %(hi)s
 ORDER BY taken_at, source"""

_GASES = """
SELECT taken_at AS at, sample, pco2_mmhg, bicarbonate_mmol_l
  FROM blood_gases
 WHERE patient_id = %(p)s AND taken_at >= %(lo)s AND taken_at < %(hi)s
 ORDER BY taken_at, sample, source"""

_CAPNOGRAPHY = """
SELECT start_at AS at, night_date, valid, max_tcpco2, mean_tcpco2, gt55_min
  FROM capnography_nights
 WHERE patient_id = %(p)s AND night_date BETWEEN %(start)s AND %(end)s
   AND start_at >= %(lo_night)s AND start_at < %(hi_night)s
 ORDER BY start_at, source"""


def spirometry_series(conn: psycopg.Connection[Any], patient_id: str, days: Period) -> list[dict[str, Any]]:
    """Every session in the range: FVC/SVC % predicted, posture and grade, MIP/SNIP/MEP, cough flow."""
    return _rows(conn, _SPIROMETRY, days.params(patient_id))


def niv_series(conn: psycopg.Connection[Any], patient_id: str, days: Period) -> list[dict[str, Any]]:
    """Every NIV night in the range: use, leak, AHI, rate, tidal volume, minute ventilation."""
    return _rows(conn, _NIV, days.params(patient_id))


def oximetry_series(conn: psycopg.Connection[Any], patient_id: str, days: Period) -> list[dict[str, Any]]:
    """Every oximetry night in the range with its metrics and whether its samples are stored."""
    return _rows(conn, _OXIMETRY, days.params(patient_id))


def questionnaire_series(conn: psycopg.Connection[Any], patient_id: str, days: Period) -> list[dict[str, Any]]:
    """ALSFRS-R total, bulbar (items 1-3) and respiratory (items 10-12) subscores."""
    return _rows(conn, _ALSFRS, days.params(patient_id))


def co2_series(conn: psycopg.Connection[Any], patient_id: str, days: Period) -> dict[str, list[dict[str, Any]]]:
    """Blood gases and spot CO2 (`gases`) and overnight TcCO2 recordings (`tcco2`)."""
    params = days.params(patient_id)
    return {"gases": _rows(conn, _GASES, params), "tcco2": _rows(conn, _CAPNOGRAPHY, params)}


# ------------------------------------------------------------------------ alerts, notes, care states
_ALERTS = """
SELECT alert_id, rule_id, category, severity, status, resolution, evidence, action, citation, rules,
       finding_at, opened_at, acknowledged_at, acknowledged_by, resolved_at, assigned_to, snoozed_until
  FROM alerts
 WHERE patient_id = %(p)s
 ORDER BY opened_at DESC, alert_id DESC"""


def alerts_of(conn: psycopg.Connection[Any], patient_id: str) -> list[dict[str, Any]]:
    """All of the patient's alerts, newest first, whatever their status (the page shows their outcome)."""
    return _rows(conn, _ALERTS, {"p": patient_id})


def notes_of(conn: psycopg.Connection[Any], patient_id: str) -> list[dict[str, Any]]:
    """The team's notes on the patient, newest first."""
    return _rows(conn, "SELECT id, at, author, note FROM patient_notes WHERE patient_id = %(p)s"
                       " ORDER BY at DESC, id DESC", {"p": patient_id})


def add_note(conn: psycopg.Connection[Any], patient_id: str, author: str, note: str) -> int:
    """Append a note (the table refuses updates and deletes: the notes are their own audit)."""
    row = conn.cursor(row_factory=tuple_row).execute(
        "INSERT INTO patient_notes (patient_id, author, note) VALUES (%s, %s, %s) RETURNING id",
        (patient_id, author, note)).fetchone()
    assert row is not None
    return int(row[0])


def care_states_of(conn: psycopg.Connection[Any], patient_id: str) -> list[dict[str, Any]]:
    """Every care-state change, newest first: the first is the current state (`patient_care_states`)."""
    return _rows(conn, "SELECT state, since, note, set_by, set_at FROM care_states WHERE patient_id = %(p)s"
                       " ORDER BY set_at DESC, id DESC", {"p": patient_id})


# -------------------------------------------------------------------------------------- one night
def oximetry_night(conn: psycopg.Connection[Any], patient_id: str, night: date,
                   source: str | None = None) -> dict[str, Any] | None:
    """The night's oximetry row (the first source unless one is named), None if there is none."""
    rows = _rows(conn, "SELECT * FROM oximetry_nights WHERE patient_id = %(p)s AND night_date = %(d)s"
                       " AND start_at >= %(lo_night)s AND start_at < %(hi_night)s"
                       " AND (%(s)s::text IS NULL OR source = %(s)s)"
                       " ORDER BY source LIMIT 1",
                 {**Period(night, night).params(patient_id), "d": night, "s": source})
    return rows[0] if rows else None


def niv_night(conn: psycopg.Connection[Any], patient_id: str, night: date) -> dict[str, Any] | None:
    """The same night's NIV summary (the first source), None if the ventilator reported none."""
    rows = _rows(conn, "SELECT * FROM niv_nights WHERE patient_id = %(p)s AND night_date = %(d)s"
                       " ORDER BY source LIMIT 1", {"p": patient_id, "d": night})
    return rows[0] if rows else None


def night_minutes(conn: psycopg.Connection[Any], patient_id: str, start_at: datetime,
                  source: str) -> dict[str, Any] | None:
    """The stored per-minute SpO2 min/mean/max and pulse mean of one recording (None if not stored)."""
    day = start_at.astimezone(UTC).date()
    nights = oximetry_minutes(conn, patient_id, day, day)
    for night in nights:
        if night["start_at"] == start_at and night["source"] == source:
            return night
    return None


def raw_signal(conn: psycopg.Connection[Any], patient_id: str, start_at: datetime,
               source: str) -> dict[str, Any] | None:
    """One recording's decoded samples (`queries.records.oximetry_signal`), None if not stored."""
    return oximetry_signal(conn, patient_id, start_at, source)


def signal_window(conn: psycopg.Connection[Any], patient_id: str, start_at: datetime, source: str,
                  lo: float, hi: float) -> dict[str, Any] | None:
    """The raw samples of one recording between epoch seconds `lo` and `hi`: `{"t", "spo2", "pulse",
    "interval_s"}` (NaN = no reading); None if the recording's samples are not stored."""
    signal = raw_signal(conn, patient_id, start_at, source)
    if signal is None:
        return None
    step = float(signal["interval_s"])
    t0 = start_at.timestamp()
    first = max(0, math.ceil((lo - t0) / step))
    last = max(first, min(len(signal["spo2"]), math.floor((hi - t0) / step) + 1))  # exclusive
    index = np.arange(first, last)
    return {"t": t0 + index * step, "spo2": signal["spo2"][first:last], "pulse": signal["pulse"][first:last],
            "interval_s": step}


DesaturationEvent = oxi.DesaturationEvent


def desaturation_events(spo2: np.ndarray, pulse: np.ndarray, interval_s: float) -> list[DesaturationEvent]:
    """Where the night's ODI3 events are: the metrics' own walk (`processors.metrics.oximetry`)."""
    return oxi.desaturation_events(spo2, pulse, interval_s)
