"""What the inbox shows: all of a member's patients ranked, one page of them in full, and the alert actions.

Two statements, each over the member's patients (their care teams, `alerts.access` roles that read) with
LATERAL reads bounded in time on the `(patient_id, time)` primary keys, so the monthly partitions prune and a
patient costs a handful of index probes whatever the length of their history: `RANK_SQL` reads, for every
patient, only what ranks them (active alerts; for those without, the upright FVC % of the last six months
and the latest record's day), `DETAIL_SQL` the columns of the page's 50 patients. Trends are Theil–Sen
(`theil_sen`: `processors.metrics.trends.fvc_slope` vectorised over patients, at most 30 points each).

Order: patients with an active alert (open or acknowledged) that is not snoozed, most severe first then
oldest first; then those whose active alerts are all snoozed; then the others by risk: the months until
the Theil–Sen line of FVC/VC % predicted reaches 50 % (0 when the latest value is already below), ties by
the most days without data. A patient without a falling, estimable trend ranks after them.

The actions (acknowledge, resolve, assign, snooze, note) lock the alert, check the member's role on its
patient with `alerts.api.refusal` (the team API's rule: 404 outside their teams, 403 for the role, 409 for
the status; snoozing needs the role that acknowledges), change it and append the `alert_events` audit row
in one transaction.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from time import monotonic as time_monotonic
from typing import Any, Literal, LiteralString

import numpy as np
import psycopg
from psycopg.rows import dict_row

from alerts.access import Look, roles_that
from alerts.api import TEAM_ACTIONS, record_team_change, refusal
from alerts.team import Member
from processors.metrics.trends import DAYS_PER_MONTH, SlopeResult, projected_crossing
from processors.rules.loader import RuleSet, load_rules
from respmon.core.settings import Settings
from schemas.findings import CATEGORIES, SEVERITIES, SEVERITY_ORDER

DATA_DAYS = 183
"""Spirometry (the newest 30 upright sessions) and the days since data are read back this far: six months,
DQ-PFT6M's limit. Older data show as none (—)."""
TREND_DAYS = 180
"""The FVC trend's window before the latest session (NS-SLOPE's `window_days`)."""
NIGHT_DAYS = 60
"""Oximetry and NIV nights are read back this far (the newest 30 of each)."""
ALSFRS_DAYS = 365
RECENT_DAYS = 45
"""The latest night or form is looked for in this window first (two monthly partitions), then further back."""
SERIES_MAX = 30
FVC_FLOOR = 50.0
"""The risk rank: months until the FVC/VC % predicted trend reaches this (NS-FVC50's threshold)."""
PER_PAGE = 50
SNOOZE_MAX_DAYS = 90
SPARK_KINDS = {"oxi": "T90 %", "niv": "NIV use (h)", "spiro": "FVC % predicted", "alsfrs": "ALSFRS-R total"}
"""The value behind an alert, by the first store its rule reads in this order (FVC % without an alert)."""


@lru_cache(maxsize=1)
def rule_set() -> RuleSet:
    """The active rules, read once per process: titles (params filled in) and the stores they read."""
    return load_rules()


def reason(rule_id: str) -> str:
    """The one-line reason of an alert: its rule's title, or the id of a rule no longer in the file."""
    try:
        return rule_set().get(rule_id).title or rule_id
    except KeyError:
        return rule_id


def spark_kind(rule_id: str | None) -> str:
    """Which series the sparkline draws for the alert's lead rule (FVC % when no alert or no match)."""
    if rule_id is None:
        return "spiro"
    try:
        reads = rule_set().get(rule_id).reads
    except KeyError:
        return "spiro"
    return next((kind for kind in SPARK_KINDS if kind in reads), "spiro")


@dataclass(frozen=True)
class ActiveAlert:
    alert_id: int
    rule_id: str
    category: str
    severity: str
    status: str
    opened_at: datetime
    snoozed_until: date | None
    assigned_to: str | None
    acknowledged_by: str | None
    open_rules: tuple[str, ...]

    @property
    def reason(self) -> str:
        return reason(self.rule_id)

    def snoozed(self, today: date) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > today


@dataclass(frozen=True)
class Trend:
    """A Theil–Sen fit: slope per month and the fitted value at the last point (None if not estimable)."""

    slope_per_month: float | None = None
    fit_now: float | None = None
    n: int = 0
    span_days: float = 0.0
    last_date: date | None = None


@dataclass
class InboxRow:
    """One patient of the inbox: their active alerts and the latest values the team looks at. The ranking
    pass fills the first fields; the page's rows get the rest (`detail_rows`)."""

    patient_id: str
    teams: list[str]
    alerts: list[ActiveAlert]
    last_data: date | None
    days_since: int | None
    fvc_pct: float | None
    fvc_at: date | None
    fvc: Trend
    risk_months: float | None
    last_upload: datetime | None = None
    niv_median7: float | None = None
    niv_nights: int = 0
    leak_p95: float | None = None
    t90: float | None = None
    odi: float | None = None
    oxi_night: date | None = None
    alsfrs_total: int | None = None
    alsfrs: Trend = field(default_factory=Trend)
    series: dict[str, list[float]] = field(default_factory=dict)

    def ordered(self, today: date) -> list[ActiveAlert]:
        """The patient's active alerts, un-snoozed first, most severe then oldest first."""
        return sorted(self.alerts, key=lambda a: (a.snoozed(today), -SEVERITY_ORDER.get(a.severity, -1), a.opened_at))

    def lead(self, today: date) -> ActiveAlert | None:
        """The alert that places the row (the first of `ordered`)."""
        return next(iter(self.ordered(today)), None)

    def group(self, today: date) -> int:
        """0: an alert needs looking at; 1: all its alerts are snoozed; 2: no active alert."""
        lead = self.lead(today)
        return 2 if lead is None else int(lead.snoozed(today))

    def spark(self, today: date) -> tuple[str, list[float]]:
        """What the sparkline draws: the label and the values (oldest first)."""
        lead = self.lead(today)
        kind = spark_kind(lead.rule_id if lead else None)
        return SPARK_KINDS[kind], self.series.get(kind, [])


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    severity: str | None = None
    team: str | None = None
    stale_days: int | None = None

    def keeps(self, row: InboxRow) -> bool:
        if self.stale_days is not None and row.days_since is not None and row.days_since < self.stale_days:
            return False
        if self.category is None and self.severity is None:
            return True
        return any(self.category in (None, a.category) and self.severity in (None, a.severity) for a in row.alerts)


@dataclass(frozen=True)
class InboxPage:
    rows: list[InboxRow]
    total: int
    """Patients matching the filters (all pages)."""
    page: int
    pages: int


_MINE: LiteralString = """
WITH mine AS (
    SELECT pt.patient_id, array_agg(DISTINCT pt.team ORDER BY pt.team) AS teams
      FROM patient_teams pt JOIN team_memberships tm ON tm.team = pt.team
     WHERE pt.ended_at IS NULL AND tm.member_id = %(member)s AND tm.role = ANY(%(roles)s)
       AND (%(team)s::text IS NULL OR pt.team = %(team)s)
       AND (%(only)s::text[] IS NULL OR pt.patient_id = ANY(%(only)s))
     GROUP BY pt.patient_id
)"""
_COLUMNS: LiteralString = """
SELECT m.patient_id, m.teams, al.alerts, sp.x AS spiro_x, sp.pct AS spiro_pct,
       GREATEST(sp.last_day, ld.last_day) AS last_data"""
_ALERTS_JOIN: LiteralString = """
  FROM mine m
  LEFT JOIN LATERAL (
      SELECT json_agg(json_build_object(
                 'alert_id', a.alert_id, 'rule_id', a.rule_id, 'category', a.category, 'severity', a.severity,
                 'status', a.status, 'opened_at', a.opened_at, 'snoozed_until', a.snoozed_until,
                 'assigned_to', a.assigned_to, 'acknowledged_by', a.acknowledged_by,
                 'open_rules', (SELECT coalesce(json_agg(k ORDER BY k), '[]') FROM jsonb_each(a.rules) e(k, v)
                                 WHERE v->>'state' = 'open'))) AS alerts
        FROM alerts a WHERE a.patient_id = m.patient_id AND a.status <> 'resolved'
  ) al ON true"""
_JOINS: LiteralString = _ALERTS_JOIN + """
  LEFT JOIN LATERAL (
      SELECT array_agg(extract(epoch FROM s.taken_at)::float8 / 86400) AS x, array_agg(s.fvc_pct_pred) AS pct,
             max((s.taken_at AT TIME ZONE 'UTC')::date) AS last_day
        FROM (SELECT taken_at, fvc_pct_pred FROM spirometry_sessions
               WHERE patient_id = m.patient_id AND taken_at >= %(since)s AND taken_at < %(until)s
                 AND posture <> 'supine' AND fvc_pct_pred IS NOT NULL AND (%(full)s OR al.alerts IS NULL)
               ORDER BY taken_at DESC LIMIT %(n)s) s
  ) sp ON true
  LEFT JOIN LATERAL (
      SELECT GREATEST(
          COALESCE((SELECT o.night_date FROM oximetry_nights o WHERE o.patient_id = m.patient_id
                       AND o.start_at >= %(recent)s AND o.start_at < %(until)s ORDER BY o.start_at DESC LIMIT 1),
                   (SELECT o.night_date FROM oximetry_nights o WHERE o.patient_id = m.patient_id
                       AND o.start_at >= %(since)s AND o.start_at < %(recent)s ORDER BY o.start_at DESC LIMIT 1)),
          COALESCE((SELECT n.night_date FROM niv_nights n WHERE n.patient_id = m.patient_id
                       AND n.night_date >= %(recent_day)s AND n.night_date < %(until_day)s
                     ORDER BY n.night_date DESC LIMIT 1),
                   (SELECT n.night_date FROM niv_nights n WHERE n.patient_id = m.patient_id
                       AND n.night_date >= %(since_day)s AND n.night_date < %(recent_day)s
                     ORDER BY n.night_date DESC LIMIT 1)),
          (COALESCE((SELECT f.taken_at FROM alsfrs_r f WHERE f.patient_id = m.patient_id
                        AND f.taken_at >= %(recent)s AND f.taken_at < %(until)s ORDER BY f.taken_at DESC LIMIT 1),
                    (SELECT f.taken_at FROM alsfrs_r f WHERE f.patient_id = m.patient_id
                        AND f.taken_at >= %(since)s AND f.taken_at < %(recent)s ORDER BY f.taken_at DESC LIMIT 1))
           AT TIME ZONE 'UTC')::date) AS last_day
       WHERE %(full)s OR al.alerts IS NULL
  ) ld ON true"""
RANK_SQL: LiteralString = _MINE + _COLUMNS + _JOINS
ALERTS_SQL: LiteralString = _MINE + """
SELECT m.patient_id, m.teams, al.alerts""" + _ALERTS_JOIN
"""Every patient of the member and their active alerts, nothing else: read live at every view."""
"""Every patient of the member: what the order and the filters need (alerts; for those without, the FVC
trend and the days since data; for all with `full`). The spirometry arrays come unsorted (no sort per
patient; both arrays in the same order)."""
DETAIL_SQL: LiteralString = _MINE + _COLUMNS + """,
       ox.nights AS oxi_nights, ox.valid AS oxi_valid, ox.t90 AS oxi_t90, ox.odi AS oxi_odi,
       nv.usage AS niv_usage, nv.leak AS niv_leak,
       af.x AS alsfrs_x, af.total AS alsfrs_total,
       (SELECT max(r.received_at) FROM raw_uploads r
         WHERE r.upload_id = ANY(ARRAY[ox.upload_id, nv.upload_id, af.upload_id,
                                       (SELECT s.upload_id FROM spirometry_sessions s WHERE s.patient_id = m.patient_id
                                           AND s.taken_at >= %(since)s AND s.taken_at < %(until)s
                                         ORDER BY s.taken_at DESC LIMIT 1)])) AS last_upload""" + \
    _JOINS + """
  LEFT JOIN LATERAL (
      SELECT array_agg(o.night_date ORDER BY o.start_at) AS nights, array_agg(o.valid ORDER BY o.start_at) AS valid,
             array_agg(o.t90_pct ORDER BY o.start_at) AS t90, array_agg(o.odi3 ORDER BY o.start_at) AS odi,
             (array_agg(o.upload_id ORDER BY o.start_at DESC))[1] AS upload_id
        FROM (SELECT start_at, night_date, valid, t90_pct, odi3, upload_id FROM oximetry_nights
               WHERE patient_id = m.patient_id AND start_at >= %(night_since)s AND start_at < %(until)s
               ORDER BY start_at DESC LIMIT %(n)s) o
  ) ox ON true
  LEFT JOIN LATERAL (
      SELECT array_agg(n.usage_hours ORDER BY n.night_date) AS usage,
             array_agg(n.leak_p95_lpm ORDER BY n.night_date) AS leak,
             (array_agg(n.upload_id ORDER BY n.night_date DESC))[1] AS upload_id
        FROM (SELECT night_date, usage_hours, leak_p95_lpm, upload_id FROM niv_nights
               WHERE patient_id = m.patient_id AND night_date >= %(night_since_day)s
                 AND night_date < %(until_day)s
               ORDER BY night_date DESC LIMIT %(n)s) n
  ) nv ON true
  LEFT JOIN LATERAL (
      SELECT array_agg(extract(epoch FROM f.taken_at)::float8 / 86400 ORDER BY f.taken_at) AS x,
             array_agg(f.total ORDER BY f.taken_at) AS total,
             (array_agg(f.upload_id ORDER BY f.taken_at DESC))[1] AS upload_id
        FROM (SELECT taken_at, total, upload_id FROM alsfrs_r
               WHERE patient_id = m.patient_id AND taken_at >= %(alsfrs_since)s AND taken_at < %(until)s
               ORDER BY taken_at DESC LIMIT %(n)s) f
  ) af ON true"""
"""The page's patients: everything the columns show."""


def _args(member_id: str, today: date, team: str | None, only: Sequence[str] | None, full: bool) -> dict[str, Any]:
    midnight = datetime.combine(today, time(), tzinfo=UTC)
    return {"member": member_id, "roles": roles_that("read"), "team": team, "full": full,
            "only": list(only) if only is not None else None, "n": SERIES_MAX,
            "since": midnight - timedelta(DATA_DAYS), "since_day": today - timedelta(DATA_DAYS),
            "night_since": midnight - timedelta(NIGHT_DAYS + 1), "night_since_day": today - timedelta(NIGHT_DAYS),
            "alsfrs_since": midnight - timedelta(ALSFRS_DAYS), "recent": midnight - timedelta(RECENT_DAYS),
            "recent_day": today - timedelta(RECENT_DAYS), "until": midnight + timedelta(2),
            "until_day": today + timedelta(2)}


def _fetch(conn: psycopg.Connection[Any], sql: LiteralString, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one inbox statement without JIT (compiling it costs more, ~200 ms, than the statement itself), its
    answer in binary (arrays of numbers decode several times faster than from text)."""
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")
        return conn.cursor(row_factory=dict_row, binary=True).execute(sql, args).fetchall()


@dataclass(frozen=True)
class _Ranking:
    """What ranks a patient without an alert: their FVC points, trend and last data day, kept until `until`."""

    until: float
    spiro_x: list[float]
    spiro_pct: list[float]
    last_data: date | None
    trend: Trend


_RANKINGS: dict[tuple[str, date], _Ranking] = {}
_RANKINGS_MAX = 200_000


def rank_rows(conn: psycopg.Connection[Any], member_id: str, today: date, team: str | None = None,
              full: bool = False, keep_s: float = 0.0) -> list[InboxRow]:
    """Every patient of the member's teams (or of one of them), with what ranks them; with `full`, the days
    since data of those with alerts too (for the "no data for N days" filter).

    With `keep_s` > 0, alerts are read live at every call but what ranks the others (their FVC trend and last
    data day, which change only when a night or session arrives) is kept up to `keep_s` seconds per patient
    in this process: re-reading six months of spirometry for a thousand patients at every view is most of
    the inbox's time (bench/web_view.py)."""
    if keep_s <= 0:
        return _rank_rows_now(conn, member_id, today, team, full)
    live = _fetch(conn, ALERTS_SQL, _args(member_id, today, team, None, full))
    need = [r["patient_id"] for r in live if full or not r["alerts"]]
    now = time_monotonic()
    missing = [pid for pid in need if (kept := _RANKINGS.get((pid, today))) is None or kept.until < now]
    if missing:
        _keep_rankings(conn, member_id, today, missing, now + keep_s)
    rows = []
    for r in live:
        kept = _RANKINGS.get((r["patient_id"], today)) if full or not r["alerts"] else None
        r.update(spiro_x=kept.spiro_x if kept else None, spiro_pct=kept.spiro_pct if kept else None,
                 last_data=kept.last_data if kept else None)
        rows.append(_ranked(r, kept.trend if kept else Trend(), today))
    return rows


def _keep_rankings(conn: psycopg.Connection[Any], member_id: str, today: date, patient_ids: list[str],
                   until: float) -> None:
    if len(_RANKINGS) > _RANKINGS_MAX:  # a day's keys for a very large site: start again rather than grow
        _RANKINGS.clear()
    raw = _fetch(conn, RANK_SQL, _args(member_id, today, None, patient_ids, True))
    trends = theil_sen([(r["spiro_x"] or [], r["spiro_pct"] or []) for r in raw], TREND_DAYS)
    for r, trend in zip(raw, trends, strict=True):
        _RANKINGS[(r["patient_id"], today)] = _Ranking(until, r["spiro_x"] or [], r["spiro_pct"] or [],
                                                        r["last_data"], trend)


def _rank_rows_now(conn: psycopg.Connection[Any], member_id: str, today: date, team: str | None,
                   full: bool) -> list[InboxRow]:
    raw = _fetch(conn, RANK_SQL, _args(member_id, today, team, None, full))
    plain = [r for r in raw if not r["alerts"]]  # those with alerts rank by them: their trend waits for their page
    trends = dict(zip((r["patient_id"] for r in plain),
                      theil_sen([(r["spiro_x"] or [], r["spiro_pct"] or []) for r in plain], TREND_DAYS), strict=True))
    return [_ranked(r, trends.get(r["patient_id"], Trend()), today) for r in raw]


def detail_rows(conn: psycopg.Connection[Any], member_id: str, today: date, patient_ids: Sequence[str],
                team: str | None = None) -> list[InboxRow]:
    """The whole rows of some patients of the member (those of one page, or the one just acted on)."""
    if not patient_ids:
        return []
    raw = [_sorted_spiro(r) for r in _fetch(conn, DETAIL_SQL, _args(member_id, today, team, patient_ids, True))]
    fvc = theil_sen([(r["spiro_x"], r["spiro_pct"]) for r in raw], TREND_DAYS)
    alsfrs = theil_sen([(r["alsfrs_x"] or [], [float(v) for v in r["alsfrs_total"] or []]) for r in raw], ALSFRS_DAYS)
    order = {pid: i for i, pid in enumerate(patient_ids)}
    rows = [_detailed(_ranked(r, f, today), r, a) for r, f, a in zip(raw, fvc, alsfrs, strict=True)]
    return sorted(rows, key=lambda row: order.get(row.patient_id, len(order)))


def inbox_page(conn: psycopg.Connection[Any], member_id: str, today: date, filters: Filters,
               page: int = 1, keep_s: float = 0.0) -> InboxPage:
    """One page of the member's inbox: all their patients ranked and filtered, the page's rows in full (live);
    `keep_s`: how long what ranks patients without an alert may be reused (`rank_rows`)."""
    every = rank_rows(conn, member_id, today, filters.team, full=filters.stale_days is not None, keep_s=keep_s)
    kept = ranked([row for row in every if filters.keeps(row)], today)
    pages = max(1, math.ceil(len(kept) / PER_PAGE))
    page = min(max(1, page), pages)
    chosen = [row.patient_id for row in kept[(page - 1) * PER_PAGE:page * PER_PAGE]]
    return InboxPage(detail_rows(conn, member_id, today, chosen, filters.team), len(kept), page, pages)


def _sorted_spiro(r: dict[str, Any]) -> dict[str, Any]:
    """The spirometry arrays in time order (the statement leaves them unsorted)."""
    points = sorted(zip(r["spiro_x"] or [], r["spiro_pct"] or [], strict=True))
    r["spiro_x"], r["spiro_pct"] = [x for x, _ in points], [y for _, y in points]
    return r


def _alerts(raw: list[dict[str, Any]] | None) -> list[ActiveAlert]:
    return [ActiveAlert(a["alert_id"], a["rule_id"], a["category"], a["severity"], a["status"],
                        datetime.fromisoformat(a["opened_at"]),
                        date.fromisoformat(a["snoozed_until"]) if a["snoozed_until"] else None,
                        a["assigned_to"], a["acknowledged_by"], tuple(a["open_rules"] or ()))
            for a in raw or []]


def _ranked(r: dict[str, Any], fvc: Trend, today: date) -> InboxRow:
    x: list[float] = r["spiro_x"] or []
    pct: list[float] = r["spiro_pct"] or []
    latest = max(range(len(x)), key=x.__getitem__) if x else None  # the arrays may come unsorted
    fvc_now = None if latest is None else pct[latest]
    last: date | None = r["last_data"]
    return InboxRow(patient_id=r["patient_id"], teams=r["teams"], alerts=_alerts(r["alerts"]), last_data=last,
                    days_since=(today - last).days if last else None, fvc_pct=fvc_now,
                    fvc_at=None if latest is None else _day(x[latest]), fvc=fvc,
                    risk_months=_risk_months(fvc, fvc_now, today))


def _detailed(row: InboxRow, r: dict[str, Any], alsfrs: Trend) -> InboxRow:
    oxi = [(night, t90, odi) for night, ok, t90, odi
           in zip(r["oxi_nights"] or [], r["oxi_valid"] or [], r["oxi_t90"] or [], r["oxi_odi"] or [], strict=True)
           if ok]
    usage = _finite(r["niv_usage"])
    totals: list[int] = r["alsfrs_total"] or []
    row.last_upload = r["last_upload"]
    row.niv_median7 = float(np.median(usage[-7:])) if usage else None
    row.niv_nights = len(usage[-7:])
    row.leak_p95 = (r["niv_leak"] or [None])[-1]
    if oxi:
        row.oxi_night, row.t90, row.odi = oxi[-1]
    row.alsfrs_total = totals[-1] if totals else None
    row.alsfrs = alsfrs
    row.series = {"spiro": _finite(r["spiro_pct"]), "oxi": _finite([t for _, t, _ in oxi]), "niv": usage,
                  "alsfrs": [float(t) for t in totals]}
    return row


def _finite(values: Sequence[float | None] | None) -> list[float]:
    return [float(v) for v in values or [] if v is not None and math.isfinite(v)]


def _day(epoch_days: float) -> date:
    return date(1970, 1, 1) + timedelta(days=math.floor(epoch_days))


def theil_sen(series: Sequence[tuple[Sequence[float], Sequence[float | None]]], window_days: float,
              min_points: int = 3, min_span_days: float = 60) -> list[Trend]:
    """`processors.metrics.trends.fvc_slope` for many series at once, vectorised (one numpy pass for a
    thousand patients instead of a thousand calls): x in days (in any order), points within `window_days`
    before each series' last point; the median of pairwise slopes and Sen's intercept at the last point."""
    width = max((len(x) for x, _ in series), default=0)
    if width == 0:
        return [Trend() for _ in series]
    xs = np.full((len(series), width), np.nan)
    ys = np.full((len(series), width), np.nan)
    for k, (x, y) in enumerate(series):
        xs[k, :len(x)] = x
        ys[k, :len(y)] = [np.nan if v is None else v for v in y]
    xs[~np.isfinite(ys)] = np.nan
    has = np.isfinite(xs).any(axis=1)
    last = np.where(has, np.nanmax(np.where(has[:, None], xs, 0.0), axis=1), 0.0)
    xs = xs - last[:, None]
    xs[xs < -window_days] = np.nan
    ys[np.isnan(xs)] = np.nan
    counts = np.isfinite(xs).sum(axis=1)
    spans = np.where(counts > 0, -np.nanmin(np.where(counts[:, None] > 0, xs, 0.0), axis=1), 0.0)
    fit = (counts >= min_points) & (spans >= min_span_days)
    slopes = np.full(len(series), np.nan)
    fits = np.full(len(series), np.nan)
    if fit.any():
        i, j = np.triu_indices(width, k=1)
        dx, dy = xs[fit][:, j] - xs[fit][:, i], ys[fit][:, j] - ys[fit][:, i]
        with np.errstate(invalid="ignore", divide="ignore"):
            slopes[fit] = _row_medians(np.where(dx != 0, dy / dx, np.nan))  # a pair's slope is the same either way
        fits[fit] = _row_medians(ys[fit] - slopes[fit][:, None] * xs[fit])
    return [Trend(float(slopes[k]) * DAYS_PER_MONTH if fit[k] else None, float(fits[k]) if fit[k] else None,
                  int(counts[k]), float(spans[k]), _day(last[k]) if has[k] else None) for k in range(len(series))]


def _row_medians(values: np.ndarray) -> np.ndarray:
    """The median of each row's finite values (NaN sorts last): np.nanmedian, without its masked arrays."""
    ordered = np.sort(values, axis=1)
    count = np.isfinite(ordered).sum(axis=1)
    rows = np.arange(len(ordered))
    low, high = np.maximum(count - 1, 0) // 2, np.maximum(count, 1) // 2
    return np.where(count > 0, (ordered[rows, low] + ordered[rows, high]) / 2, np.nan)


def _risk_months(fvc: Trend, fvc_now: float | None, today: date) -> float | None:
    """Months until the FVC trend reaches 50 % (`projected_crossing`): 0 when the latest value is already
    below; None without an estimable falling trend."""
    if fvc_now is not None and fvc_now < FVC_FLOOR:
        return 0.0
    result = SlopeResult(fvc.slope_per_month, fvc.fit_now, fvc.n, fvc.span_days, fvc.slope_per_month is not None,
                         None, fvc.last_date)
    crossing = projected_crossing(result, FVC_FLOOR)
    return None if crossing is None else max(0.0, (crossing - today).days / DAYS_PER_MONTH)


def ranked(rows: list[InboxRow], today: date) -> list[InboxRow]:
    """The inbox order (module docstring): alerts by severity then age, snoozed after, then by risk."""
    def key(row: InboxRow) -> tuple[Any, ...]:
        lead = row.lead(today)
        if lead is not None:
            return (row.group(today), -SEVERITY_ORDER.get(lead.severity, -1), lead.opened_at.timestamp(), 0.0, 0,
                    row.patient_id)
        stale = -(row.days_since if row.days_since is not None else 10**6)
        return (2, int(row.risk_months is None), 0.0, row.risk_months or 0.0, stale, row.patient_id)

    return sorted(rows, key=key)


def member_teams(conn: psycopg.Connection[Any], member_id: str) -> list[str]:
    """The teams in which the member reads patients (the team filter's choices)."""
    rows = conn.execute("SELECT DISTINCT team FROM team_memberships WHERE member_id = %s AND role = ANY(%s)"
                        " ORDER BY team", (member_id, roles_that("read"))).fetchall()
    return [_first(r) for r in rows]


def assignable(conn: psycopg.Connection[Any], patient_ids: Sequence[str]) -> dict[str, list[str]]:
    """The members an alert of each patient can be assigned to: clinicians of the patient's teams."""
    rows = conn.cursor(row_factory=dict_row).execute(
        "SELECT pt.patient_id, array_agg(DISTINCT tm.member_id ORDER BY tm.member_id) AS members"
        " FROM patient_teams pt JOIN team_memberships tm ON tm.team = pt.team"
        " JOIN team_members mb ON mb.member_id = tm.member_id AND mb.active"
        " WHERE pt.ended_at IS NULL AND pt.patient_id = ANY(%s) AND tm.role = ANY(%s) GROUP BY pt.patient_id",
        (list(patient_ids), roles_that("acknowledge"))).fetchall()
    return {r["patient_id"]: r["members"] for r in rows}


def _first(row: Any) -> Any:
    return row[next(iter(row))] if isinstance(row, dict) else row[0]


# --- the alert actions -------------------------------------------------------------------------------------

Verb = Literal["acknowledge", "resolve", "assign", "snooze", "note"]


class Refused(Exception):
    """The action is not allowed (404, 403, 409) or its input is wrong (422): status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def snooze_limit(until: date, today: date) -> str | None:
    """Why `until` is not a snooze date (after today, at most 90 days ahead), or None."""
    if until <= today:
        return f"Snooze until a day after today ({today.isoformat()})."
    if until > today + timedelta(SNOOZE_MAX_DAYS):
        return f"Snooze for at most {SNOOZE_MAX_DAYS} days (until {(today + timedelta(SNOOZE_MAX_DAYS)).isoformat()})."
    return None


_ACTIVE = ("open", "acknowledged")
_PERMISSION: dict[Verb, Any] = {"acknowledge": "acknowledge", "resolve": "resolve", "assign": "assign",
                                "snooze": "acknowledge", "note": "note"}
_FROM: dict[Verb, tuple[str, ...] | None] = {"acknowledge": ("open",), "resolve": _ACTIVE, "assign": _ACTIVE,
                                             "snooze": _ACTIVE, "note": None}


def act(conn: psycopg.Connection[Any], alert_id: int, member_id: str, verb: Verb, looked: Look, *,
        note: str = "", assignee: str | None = None, until: date | None = None, today: date | None = None,
        settings: Settings | None = None) -> str:
    """Do one action on an alert in one transaction (the change, its `alert_events` row and, for an
    acknowledgement or resolution with `settings`, the FHIR push of the change); returns the alert's patient id.
    Raises Refused (after the commit, so the look at the alert stays recorded)."""
    refused: tuple[int, str] | None = None
    with conn.transaction():
        refused = refusal(conn, alert_id, Member(member_id, "session"), _PERMISSION[verb], looked, _FROM[verb])
        if refused is None:
            refused = _change(conn, alert_id, member_id, verb, note, assignee, until, today, settings)
        patient = alert_patient(conn, alert_id)
    if refused is not None or patient is None:
        raise Refused(*(refused or (404, f"alert {alert_id} not found")))
    TEAM_ACTIONS.labels(_COUNTED[verb]).inc()
    return patient


_COUNTED: dict[Verb, str] = {"acknowledge": "acknowledged", "resolve": "resolved", "assign": "assigned",
                             "snooze": "snoozed", "note": "noted"}


def _change(conn: psycopg.Connection[Any], alert_id: int, member_id: str, verb: Verb, note: str,
            assignee: str | None, until: date | None, today: date | None,
            settings: Settings | None) -> tuple[int, str] | None:
    """The change itself and its audit row, or (422, why) for an input that cannot be taken. An
    acknowledgement or resolution is the team API's (`alerts.api.record_team_change`, FHIR push included)."""
    if verb in ("acknowledge", "resolve"):
        record_team_change(conn, alert_id, member_id, "acknowledged" if verb == "acknowledge" else "resolved",
                           note, settings)
        return None
    if verb == "assign":
        if assignee and assignee not in _assignees_of(conn, alert_id):
            return 422, f"{assignee} is not a clinician of this patient's care teams."
        conn.execute("UPDATE alerts SET assigned_to = %s, updated_at = now() WHERE alert_id = %s",
                     (assignee or None, alert_id))
        event, said = "assigned", f"to {assignee}" if assignee else "unassigned"
    elif verb == "snooze":
        problem = "Give a date to snooze until." if until is None or today is None else snooze_limit(until, today)
        if problem is not None or until is None:
            return 422, problem or ""
        conn.execute("UPDATE alerts SET snoozed_until = %s, updated_at = now() WHERE alert_id = %s", (until, alert_id))
        event, said = "snoozed", f"until {until.isoformat()}" + (f": {note}" if note else "")
    else:
        if not note.strip():
            return 422, "Write a note before adding it."
        event, said = "note", note
    conn.execute("INSERT INTO alert_events (alert_id, actor, action, note) VALUES (%s, %s, %s, %s)",
                 (alert_id, member_id, event, said))
    return None


def alert_patient(conn: psycopg.Connection[Any], alert_id: int) -> str | None:
    """The patient of an alert (for a member already allowed to see it: `refusal` checked)."""
    row = conn.execute("SELECT patient_id FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
    return None if row is None else str(_first(row))


def _assignees_of(conn: psycopg.Connection[Any], alert_id: int) -> list[str]:
    patient = alert_patient(conn, alert_id)
    return assignable(conn, [patient]).get(patient, []) if patient else []


def choices() -> dict[str, Sequence[str]]:
    """The filter form's fixed choices (most severe first)."""
    return {"categories": CATEGORIES, "severities": tuple(reversed(SEVERITIES))}
