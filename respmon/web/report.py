"""The printable report of one patient over a period, for the MDT clinic and the patient's record.

`GET /patients/{id}/report?from=&to=` is the page (print CSS: the browser's Print gives the same paper) and
`GET /patients/{id}/report.pdf?from=&to=` the same template printed by headless Chromium (`respmon.web.pdf`),
charts drawn on the server (`respmon.web.printcharts`) since a PDF runs no script. Both read through
`Web.reading` (404 outside the member's teams, access_log action "report").
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from statistics import median
from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from alerts.lifecycle import DISCLAIMER
from processors.metrics.spirometry import usable
from processors.metrics.trends import SlopeResult, fvc_slope, projected_crossing
from processors.rules.loader import RuleSet, load_rules
from respmon.core.settings import Settings
from respmon.queries import report as q
from respmon.queries.records import Period
from respmon.web.auth import Person
from respmon.web.context import Web
from respmon.web.pdf import PdfUnavailable, print_pdf
from respmon.web.printcharts import Chart, Guide, Series, Trend, svg
from respmon.web.render import ENV

DEFAULT_DAYS = 182
"""The period when none is asked for: the last six months, about two MDT clinic intervals."""
MAX_YEARS = 5
USAGE_TARGET_H = 4.0
"""Nights of at least this many hours count as compliant (the usual NIV adherence threshold, and NE-ADH's)."""


# ---------------------------------------------------------------- the period


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"'{name}' must be a date written YYYY-MM-DD, not {text[:20]!r}") from None


def period_of(start: str | None, end: str | None, today: date) -> Period:
    """The asked period (both ends included), by default the last six months to today; 422 when a date is
    malformed, the period runs backwards or is longer than five years."""
    last = _day(end, "to") if end else today
    first = _day(start, "from") if start else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise HTTPException(422, f"The period must start on or before its end ({first} is after {last}).")
    try:
        limit = first.replace(year=first.year + MAX_YEARS)
    except ValueError:  # 29 February
        limit = first.replace(year=first.year + MAX_YEARS, day=28)
    if last > limit:
        raise HTTPException(422, f"A report covers at most {MAX_YEARS} years ({first} to {last} is longer).")
    return Period(first, last)


# ---------------------------------------------------------------- what the report computes


@dataclass(frozen=True)
class Compliance:
    """NIV usage over the period: of the nights with ventilator data, and of the calendar nights on therapy
    (from the first ventilator night or the period's start, whichever is later), a missing night counting
    as under the target, as AirView and Care Orchestrator count it."""

    therapy_from: date
    nights_on_therapy: int
    nights_with_data: int
    nights_target: int
    median_hours: float | None
    mean_hours: float | None

    @property
    def pct_of_data(self) -> float | None:
        return 100 * self.nights_target / self.nights_with_data if self.nights_with_data else None

    @property
    def pct_of_nights(self) -> float | None:
        return 100 * self.nights_target / self.nights_on_therapy if self.nights_on_therapy else None


def compliance(nights: list[dict[str, Any]], period: Period, first_night: date | None) -> Compliance | None:
    """None when the patient had no ventilator night up to the period's end."""
    if first_night is None or first_night > period.end:
        return None
    therapy_from = max(first_night, period.start)
    hours = [float(n["usage_hours"]) for n in nights]
    return Compliance(therapy_from, (period.end - therapy_from).days + 1, len(hours),
                      sum(1 for h in hours if h >= USAGE_TARGET_H), median(hours) if hours else None,
                      sum(hours) / len(hours) if hours else None)


@dataclass(frozen=True)
class VcTrend:
    """One vital-capacity measure over the period, its Theil–Sen slope and projected 50 % date."""

    label: str
    points: list[tuple[datetime, float]]
    poor: int  # sessions of grade D-F or U (ATS/ERS): read with care
    slope: SlopeResult
    crossing: date | None

    @property
    def latest(self) -> tuple[datetime, float] | None:
        return self.points[-1] if self.points else None

    def line(self) -> Trend | None:
        """The fitted line across the sessions it was fitted on."""
        s = self.slope
        if not s.estimable or s.slope_per_month is None or s.intercept_now is None or not self.points:
            return None
        last = self.points[-1][0]
        first = last - timedelta(days=s.span_days)
        per_day = s.slope_per_month / 30.4
        return Trend((first.date(), s.intercept_now - per_day * s.span_days), (last.date(), s.intercept_now),
                     f"trend of {self.label}")


def vc_trend(label: str, sessions: list[dict[str, Any]], column: str, period: Period, threshold: float) -> VcTrend:
    rows = [r for r in sessions if r[column] is not None]
    points = [(r["taken_at"], float(r[column])) for r in rows]
    slope = fvc_slope(points, window_days=period.days)
    return VcTrend(label, points, sum(1 for r in rows if not usable(r["grade"])),
                   slope, projected_crossing(slope, threshold) if slope.estimable else None)


def vc_trends(sessions: list[dict[str, Any]], period: Period, threshold: float) -> list[VcTrend]:
    sitting = [r for r in sessions if r["posture"] == "sitting"]
    supine = [r for r in sessions if r["posture"] == "supine"]
    return [vc_trend("FVC sitting", sitting, "fvc_pct_pred", period, threshold),
            vc_trend("FVC supine", supine, "fvc_pct_pred", period, threshold),
            vc_trend("SVC", sessions, "svc_pct_pred", period, threshold)]


@dataclass(frozen=True)
class Summary:
    """A measure's values over the period, for the table beside the chart (readable without the chart)."""

    label: str
    unit: str
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return median(self.values) if self.values else None

    @property
    def low(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def high(self) -> float | None:
        return max(self.values) if self.values else None

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None


def _values(rows: list[dict[str, Any]], column: str) -> list[float]:
    return [float(r[column]) for r in rows if r[column] is not None and math.isfinite(r[column])]


def summaries(oxi: list[dict[str, Any]], niv: list[dict[str, Any]], forms: list[dict[str, Any]]) -> list[Summary]:
    valid = [r for r in oxi if r["valid"]]
    return [Summary("T90 (valid nights)", "% of night", _values(valid, "t90_pct")),
            Summary("ODI3 (valid nights)", "/h", _values(valid, "odi3")),
            Summary("Minimum SpO2 (valid nights)", "%", _values(valid, "min_spo2")),
            Summary("NIV leak p95", "L/min", _values(niv, "leak_p95_lpm")),
            Summary("NIV AHI", "/h", _values(niv, "ahi")),
            Summary("ALSFRS-R total", "of 48", _values(forms, "total")),
            Summary("ALSFRS-R respiratory (items 10-12)", "of 12", _values(forms, "respiratory_subscore"))]


# ---------------------------------------------------------------- the active rules' thresholds


@lru_cache(maxsize=4)
def _rules(rules_file: Path | None, overrides: Path | None) -> RuleSet:
    return load_rules(rules_file, overrides)


def rules_of(settings: Settings) -> RuleSet:
    return _rules(settings.rules_file, settings.rules_overrides)


def param(rules: RuleSet, rule_id: str, name: str, default: float) -> float:
    """A rule's threshold as the site set it (the default when the rule is not in the file)."""
    rule = next((r for r in rules if r.id == rule_id), None)
    value = rule.params.get(name) if rule is not None else None
    return float(value) if isinstance(value, int | float) else default


# ---------------------------------------------------------------- charts


def _day_of(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def charts(period: Period, trends: list[VcTrend], oxi: list[dict[str, Any]], niv: list[dict[str, Any]],
           forms: list[dict[str, Any]], rules: RuleSet) -> dict[str, Markup | None]:
    """Each chart's SVG, or None when the period has no value of it (the template says so)."""
    a, b = period.start, period.end
    valid = [r for r in oxi if r["valid"]]
    vc = Chart("Vital capacity", "% predicted", a, b,
               [Series(t.label, [(_day_of(d), v) for d, v in t.points], "line" if i == 0 else "points")
                for i, t in enumerate(trends)],
               [Guide(param(rules, "NS-FVC50", "fvc_pct_pred", 50), "NS-FVC50"),
                Guide(param(rules, "TD-VC30", "vc_pct_pred", 30), "TD-VC30")],
               [line for t in trends[:1] if (line := t.line()) is not None])
    found: dict[str, tuple[Chart, bool]] = {
        "vc": (vc, any(t.points for t in trends)),
        "t90": (Chart("T90", "% of night below 90 % SpO2", a, b,
                      [Series("T90", [(r["night_date"], r["t90_pct"]) for r in valid])],
                      [Guide(param(rules, "NS-T90", "t90_pct", 10), "NS-T90")], floor=0), bool(valid)),
        "odi": (Chart("ODI3", "desaturations per hour", a, b,
                      [Series("ODI3", [(r["night_date"], r["odi3"]) for r in valid])], floor=0), bool(valid)),
        "niv": (Chart("NIV use per night", "hours", a, b,
                      [Series("hours of use", [(r["night_date"], r["usage_hours"]) for r in niv], "bars")],
                      [Guide(param(rules, "NE-ADH", "min_hours", USAGE_TARGET_H), "4 h")], floor=0), bool(niv)),
        "alsfrs": (Chart("ALSFRS-R", "points", a, b,
                         [Series("total", [(r["day"], r["total"]) for r in forms]),
                          Series("respiratory", [(r["day"], r["respiratory_subscore"]) for r in forms])],
                         floor=0), bool(forms)),
    }
    return {name: svg(chart) if present else None for name, (chart, present) in found.items()}


# ---------------------------------------------------------------- alerts


def _events(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "at": datetime.fromisoformat(e["at"])} for e in raw]


def with_titles(alerts: list[dict[str, Any]], rules: RuleSet) -> list[dict[str, Any]]:
    """Each alert with its lead rule's one-line title (as the site's params word it) and its events dated."""
    titles = {r.id: r.title for r in rules}
    return [{**a, "title": titles.get(a["rule_id"], ""), "events": _events(a["events"])} for a in alerts]


# ---------------------------------------------------------------- the page


def report_context(conn: psycopg.Connection[Any], patient_id: str, period: Period, who: Person,
                   settings: Settings) -> dict[str, Any]:
    """Everything the template shows, read in the caller's transaction."""
    rules = rules_of(settings)
    sessions = q.spirometry(conn, patient_id, period)
    oxi, niv, forms = (q.oximetry(conn, patient_id, period), q.niv_nights(conn, patient_id, period),
                       q.alsfrs_r(conn, patient_id, period))
    threshold = param(rules, "NS-FVC50", "fvc_pct_pred", 50)
    trends = vc_trends(sessions, period, threshold)
    care_now, care_changes = q.care_state(conn, patient_id, period)
    return {
        "patient_id": patient_id, "period": period, "generated_at": datetime.now(UTC), "generated_by": who.member_id,
        "rules_version": rules.version, "threshold": threshold, "trends": trends,
        "summaries": summaries(oxi, niv, forms), "oximetry_nights": len(oxi),
        "valid_nights": sum(1 for r in oxi if r["valid"]),
        "compliance": compliance(niv, period, q.niv_first_night(conn, patient_id, period.end)),
        "usage_target": USAGE_TARGET_H, "charts": charts(period, trends, oxi, niv, forms, rules),
        "alerts": with_titles(q.alerts(conn, patient_id, period), rules), "notes": q.notes(conn, patient_id, period),
        "care_now": care_now, "care_changes": care_changes,
    }


def render(request: Request, who: Person, context: dict[str, Any], pdf: bool) -> str:
    period: Period = context["period"]
    query = urlencode({"from": period.start.isoformat(), "to": period.end.isoformat()})
    label = f"respmon report · {context['patient_id']} · {period.start} to {period.end}"
    return ENV.get_template("report.html").render(
        request=request, person=who, title=f"Report {context['patient_id']}", pdf=pdf, query=query,
        page_css=Markup(print_css(label)) if pdf else None, **context)


def _css_string(text: str) -> str:
    """Text as a CSS string literal, safe inside a <style> element too."""
    escaped = "".join(f"\\{ord(c):X} " if c in '"\\<>' or ord(c) < 32 else c for c in text)
    return f'"{escaped}"'


MARGIN_TEXT = "font-size: 7.5pt; color: #222; font-family: system-ui, sans-serif;"
FOOT = "vertical-align: top; padding-top: 2mm; border-top: 0.5pt solid #999;"


def print_css(label: str | None = None) -> str:
    """The report's page boxes when printed: the disclaimer and the page number at the foot of every page
    (margin boxes of the named page `report`, which only a page holding the report uses), and what the
    report is at the top of each PDF page. Served as /report/print.css (the CSP allows no inline style)
    and inlined in the page Chromium prints."""
    top = f"@top-right {{ content: {_css_string(label)}; {MARGIN_TEXT} }}" if label else ""
    return (f"@page report {{ size: A4; margin: 14mm 12mm 18mm 12mm;"
            f" @bottom-left {{ content: {_css_string(DISCLAIMER)}; {MARGIN_TEXT} {FOOT} }}"
            f' @bottom-right {{ content: "page " counter(page) " of " counter(pages); {MARGIN_TEXT} {FOOT} }}'
            f" {top} }}\n@media print {{ body:has(.report) {{ page: report; }} }}\n")


def pdf_name(patient_id: str, period: Period) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", patient_id)[:80]
    return f"respmon-report-{safe}-{period.start}-{period.end}.pdf"


def report_routes(web: Web) -> APIRouter:
    router = APIRouter()
    stylesheet = print_css()

    @router.get("/report/print.css", include_in_schema=False)
    def report_stylesheet() -> Response:
        return Response(stylesheet, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})
    From = Annotated[str | None, Query(alias="from", max_length=40)]
    To = Annotated[str | None, Query(alias="to", max_length=40)]

    def read(request: Request, who: Person, patient_id: str, start: str | None, end: str | None) -> dict[str, Any]:
        period = period_of(start, end, datetime.now(UTC).date())
        with web.reading(request, who, "report", patient_id) as conn:
            return report_context(conn, patient_id, period, who, web.settings)

    @router.get("/patients/{patient_id}/report", response_class=HTMLResponse)
    def report_page(request: Request, patient_id: str, who: Annotated[Person, Depends(web.person)],
                    start: From = None, end: To = None) -> HTMLResponse:
        context = read(request, who, patient_id, start, end)
        return HTMLResponse(render(request, who, context, pdf=False), headers={"Cache-Control": "no-store"})

    @router.get("/patients/{patient_id}/report.pdf", response_class=Response)
    def report_pdf(request: Request, patient_id: str, who: Annotated[Person, Depends(web.person)],
                   start: From = None, end: To = None) -> Response:
        context = read(request, who, patient_id, start, end)
        try:
            body = print_pdf(render(request, who, context, pdf=True), web.settings)
        except PdfUnavailable as exc:
            raise HTTPException(503, f"The PDF cannot be made on this server: {exc}. Print the report page from"
                                     " the browser instead (Print, then Save as PDF).") from None
        return Response(body, media_type="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="{pdf_name(patient_id, context["period"])}"',
            "Cache-Control": "no-store"})

    return router
