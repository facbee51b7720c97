"""A synthetic ALS cohort written straight into the store tables, for the web view's tests, browser tests
and benchmark (`bench/web_view.py`: 1,000 patients over 2 years).

Each patient declines at their own rate: FVC % predicted falls from 55-95 % at enrolment by 1-4 points a month (weekly
home spirometry, sitting; a supine session monthly), ALSFRS-R falls ~1 point a month (monthly forms),
nightly oximetry worsens as FVC falls (with per-minute arrays and raw samples for the last nights), and NIV
starts once FVC is below 60 % with usage rising toward 8-12 h. Alerts are the rules' own (id, category,
action, citation from the active rules file) with evidence from the seeded values. Deterministic per seed.

Writes with COPY: a 1,000-patient, 2-year cohort (~1.6 M rows) loads in about a minute.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import psycopg

from alerts.careteams import assign
from processors.rules.loader import load_rules
from respmon.core.signals import CODEC, encode_signal, minute_aggregates


@dataclass(frozen=True)
class SeededAlert:
    patient_id: str
    rule_id: str
    category: str
    severity: str
    opened_at: datetime


@dataclass
class Cohort:
    """What was written: patient ids in creation order, and the alerts opened."""

    patients: list[str] = field(default_factory=list)
    alerts: list[SeededAlert] = field(default_factory=list)


def _fvc_series(rng: np.random.Generator, days: int, rate: float) -> np.ndarray:
    """FVC % predicted per day: from where the patient was at enrolment (55-95 %: people join at every
    stage) down `rate` points a month, with test-to-test noise."""
    t = np.arange(days)
    return np.clip(rng.uniform(55, 95) - rate * t / 30.44 + rng.normal(0, 2.0, days), 15, 120)


def _spirometry_rows(pid: str, start: date, fvc: np.ndarray) -> Iterable[tuple[Any, ...]]:
    for d in range(0, len(fvc), 7):
        at = datetime.combine(start + timedelta(days=d), time(10, 0), tzinfo=UTC)
        pct = float(round(fvc[d], 1))
        yield (pid, at, "home-spirometer", "sitting", round(pct * 0.04, 2), pct, "device", round(pct * 0.033, 2),
               None, round(pct * 0.8, 1), None, round(pct * 0.7, 1), None, False, "A")
        if d % 28 == 0:  # a supine session each month: lower when the diaphragm is weak
            supine = round(max(10.0, pct - max(0.0, (80 - pct) * 0.3)), 1)
            yield (pid, at + timedelta(minutes=20), "clinic", "supine", round(supine * 0.04, 2), supine, "device",
                   None, round(supine * 0.041, 2), None, None, None, None, False, "B")


SPIRO_COLS = ("patient_id, taken_at, source, posture, fvc_l, fvc_pct_pred, fvc_pct_pred_source, fev1_l, svc_l,"
              " mip_cmh2o, mep_cmh2o, snip_cmh2o, pcf_lpm, pcf_assisted, grade")
OXI_COLS = ("patient_id, start_at, source, night_date, interval_s, on_niv, valid, invalid_reason, recording_min,"
            " vrt_min, mean_spo2, min_spo2, t90_pct, t90_min, t88_pct, t88_min, longest_le88_min, odi3, odi4,"
            " mean_pulse")
NIV_COLS = ("patient_id, night_date, source, usage_hours, leak_p95_lpm, leak_kind, ahi, resp_rate, tidal_volume_ml,"
            " minute_vent_lpm, spo2_mean, spo2_t90_pct, pct_spont_triggered")
ALSFRS_COLS = "patient_id, taken_at, source, items, total"


def _night_rows(pid: str, start: date, fvc: np.ndarray, niv_from: int | None, rng: np.random.Generator
                ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    oxi, niv = [], []
    for d in range(len(fvc)):
        night = start + timedelta(days=d)
        weak = max(0.0, 70 - float(fvc[d])) / 40  # 0 at FVC 70 %, 1 at 30 %
        on_niv = niv_from is not None and d >= niv_from
        if rng.random() < 0.9:  # some nights are not recorded
            t90 = round(float(np.clip(weak * 12 * (0.4 if on_niv else 1) + rng.gamma(1.0, 0.6), 0, 100)), 2)
            odi = round(float(np.clip(weak * 14 + rng.gamma(2.0, 1.2), 0, 80)), 1)
            start_at = datetime.combine(night, time(22, 30), tzinfo=UTC)
            oxi.append((pid, start_at, "o2ring", night, 4.0, on_niv, True, None, 450.0, 440.0,
                        round(95 - weak * 3, 1), round(89 - weak * 8, 0), t90, round(t90 * 4.4, 1),
                        round(t90 * 0.5, 2), round(t90 * 2.2, 1), round(t90 * 0.3, 1), odi, round(odi * 0.7, 1),
                        round(float(rng.normal(72, 4)), 1)))
        if on_niv and niv_from is not None:
            usage = round(float(np.clip(4 + (d - niv_from) / 60 + rng.normal(0, 1.2), 0, 24)), 2)
            niv.append((pid, night, "resmed-str", usage, round(float(rng.gamma(4, 4)), 1), "total",
                        round(float(rng.gamma(2, 1.5)), 1), round(float(rng.normal(17, 2)), 1),
                        round(float(rng.normal(420, 40)), 0), round(float(rng.normal(7, 1)), 2), None, None,
                        round(float(rng.uniform(40, 90)), 0)))
    return oxi, niv


def _alsfrs_rows(pid: str, start: date, days: int, rate: float, rng: np.random.Generator) -> Iterable[tuple[Any, ...]]:
    for d in range(0, days, 30):
        lost = round(rate * d / 30.44 + rng.normal(0, 0.5))
        items = [4] * 12
        for i in range(max(0, min(lost, 40))):  # bulbar and respiratory items go last but do go
            items[(i * 5) % 12] = max(0, items[(i * 5) % 12] - 1)
        at = datetime.combine(start + timedelta(days=d), time(11, 0), tzinfo=UTC)
        yield (pid, at, "clinic", items, sum(items))


def _copy(conn: psycopg.Connection[Any], table: str, cols: str, rows: Iterable[tuple[Any, ...]]) -> None:
    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _signals(conn: psycopg.Connection[Any], pid: str, nights: list[tuple[Any, ...]], rng: np.random.Generator,
             keep: int) -> None:
    """Raw samples and per-minute arrays of the patient's last `keep` nights (what the night view shows)."""
    for row in nights[-keep:]:
        n = int(row[8] * 60 / row[4])  # recording_min at interval_s
        t90 = float(row[12])
        spo2 = np.clip(np.round(95 + rng.normal(0, 0.7, n) - (rng.random(n) < t90 / 100) * 7), 70, 100)
        pulse = np.round(70 + rng.normal(0, 3, n))
        s, p = minute_aggregates(spo2, row[4]), minute_aggregates(pulse, row[4])
        conn.execute(
            "INSERT INTO oximetry_signals (patient_id, start_at, source, interval_s, n_samples, codec, spo2, pulse,"
            " spo2_min_1m, spo2_mean_1m, spo2_max_1m, pulse_mean_1m) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s) ON CONFLICT DO NOTHING",
            (pid, row[1], row[2], row[4], n, CODEC, encode_signal(spo2), encode_signal(pulse), s["min"], s["mean"],
             s["max"], p["mean"]))


def seed(conn: psycopg.Connection[Any], patients: int, days: int, *, team: str = "respiratory",
         prefix: str = "SYN", end: date | None = None, seed_value: int = 7, signal_nights: int = 3) -> Cohort:
    """Write `patients` synthetic patients with `days` of data ending `end` (default: yesterday), in the
    care of `team`, and open the alerts their latest values call for. Returns what was written."""
    end = end or (datetime.now(UTC).date() - timedelta(days=1))
    start = end - timedelta(days=days - 1)
    rules = load_rules()
    cohort = Cohort()
    rng = np.random.default_rng(seed_value)
    for i in range(patients):
        pid = f"{prefix}-{i:05d}"
        cohort.patients.append(pid)
        rate = float(rng.uniform(0.3, 3.5))
        fvc = _fvc_series(rng, days, rate)
        below60 = np.nonzero(fvc < 60)[0]
        declines_niv = rng.random() < 0.2  # some patients decline NIV
        niv_from = int(below60[0]) + 14 if len(below60) and below60[0] + 14 < days and not declines_niv else None
        oxi, niv = _night_rows(pid, start, fvc, niv_from, rng)
        with conn.transaction():
            assign(conn, pid, team, "seed")
            _copy(conn, "spirometry_sessions", SPIRO_COLS, _spirometry_rows(pid, start, fvc))
            _copy(conn, "oximetry_nights", OXI_COLS, oxi)
            _copy(conn, "niv_nights", NIV_COLS, niv)
            _copy(conn, "alsfrs_r", ALSFRS_COLS, _alsfrs_rows(pid, start, days, rate * 0.5, rng))
            if signal_nights and oxi:
                _signals(conn, pid, oxi, rng, signal_nights)
            alert = _alert_for(pid, float(fvc[-1]), niv, oxi, end, rules)
            if alert is not None:
                _insert_alert(conn, alert, rules)
                cohort.alerts.append(alert)
    return cohort


def _alert_for(pid: str, fvc_now: float, niv: list[tuple[Any, ...]], oxi: list[tuple[Any, ...]], end: date,
               rules: Any) -> SeededAlert | None:
    """The alert the patient's latest values call for (a simplified reading of the rules, enough for a
    realistic inbox; the rules themselves are tested elsewhere): FVC < 30 % on NIV, FVC < 50 % without
    NIV, a 7-night median NIV use under 4 h, T90 over 10 % on the last night."""
    opened = datetime.combine(end, time(7, 0), tzinfo=UTC) - timedelta(hours=int(fvc_now * 37) % 240)
    usage = float(np.median([row[3] for row in niv[-7:]])) if niv else None
    rule_id = None
    if niv and fvc_now < 30:
        rule_id = "TD-VC30"
    elif not niv and fvc_now < 50:
        rule_id = "NS-FVC50"
    elif usage is not None and usage < 4:
        rule_id = "NE-ADH"
    elif oxi and oxi[-1][12] > 10:
        rule_id = "NS-T90"
    if rule_id is None:
        return None
    rule = rules.get(rule_id)
    return SeededAlert(pid, rule_id, rule.category, rule.severities[0], opened)


def _insert_alert(conn: psycopg.Connection[Any], alert: SeededAlert, rules: Any) -> int:
    rule = rules.get(alert.rule_id)
    evidence = {alert.rule_id: {"seeded": True}}
    action, citation = " ".join(rule.action.split()), " ".join(rule.citation.split())
    contributing = {alert.rule_id: {"severity": alert.severity, "state": "open", "at": alert.opened_at.isoformat(),
                                    "rule_version": rules.version, "action": action, "citation": citation,
                                    "resolution": None}}
    row = conn.execute(
        "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, status, evidence, action,"
        " citation, finding_at, opened_at, updated_at, rules) VALUES (%s, %s, %s, %s, %s, 'open', %s, %s, %s,"
        " %s, %s, %s, %s) RETURNING alert_id",
        (alert.patient_id, alert.rule_id, rules.version, alert.category, alert.severity, json.dumps(evidence),
         action, citation, alert.opened_at, alert.opened_at, alert.opened_at, json.dumps(contributing))).fetchone()
    assert row is not None
    conn.execute("INSERT INTO alert_events (alert_id, actor, action, note) VALUES (%s, 'rules', 'opened', NULL)",
                 (row[0],))
    return int(row[0])
