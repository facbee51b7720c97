"""The patient page: every series of one patient on one shared time axis (uPlot small multiples drawn by
`static/charts.js` from a JSON block), the active rules' thresholds as lines, each alert as a marker that
opens its evidence, and below the alerts, notes and care state with their forms.

Chart data are columnar (epoch seconds + rounded values) so two years of nightly data stay well under
300 kB; every chart also has a small table of its latest values, so the page reads without JavaScript.
Threshold numbers come from the active rules file (`load_rules()`), never from this module.
"""

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from kafka.errors import KafkaError
from markupsafe import Markup
from pydantic import ValidationError

from alerts.access import may
from alerts.carestate import publish
from alerts.carestate import record as record_care_state
from processors.metrics.spirometry import usable
from processors.metrics.trends import fvc_slope, projected_crossing
from processors.rules.loader import RuleSet, load_rules
from respmon.queries import charts as q
from respmon.web.auth import Person
from respmon.web.context import Web
from respmon.web.render import page
from schemas.carestate import CARE_STATES, NO_STATE, CareStateChange

DEFAULT_DAYS = 730
MAX_DAYS = 3660
CALENDAR_WEEKS = 12
RECENT_NIGHTS = 14

# Which rule parameters are drawn on which chart (and scale). The numbers are the rules file's.
THRESHOLDS: dict[str, list[tuple[str, str, str]]] = {
    "vc": [("NS-FVC50", "fvc_pct_pred", "y"), ("NS-FVC80-SYM", "fvc_pct_pred", "y"), ("TD-VC30", "vc_pct_pred", "y")],
    "pressures": [("NS-SNIP40", "snip_cmh2o", "y"), ("NS-MIP60", "mip_cmh2o", "y"), ("NE-MEP40", "mep_cmh2o", "y")],
    "pcf": [("NE-PCF270", "pcf_lpm", "y"), ("NE-PCF270", "severe_pcf_lpm", "y")],
    "niv_use": [("NE-ADH", "min_hours", "y"), ("NE-DAYUSE", "median_hours", "y")],
    "niv_leak": [("NE-LEAK", "leak_lpm", "y"), ("NE-AHI", "info_ahi", "y2"), ("NE-AHI", "warn_ahi", "y2")],
    "niv_vent": [],
    "oximetry": [("NS-T90", "t90_pct", "y"), ("NE-DESAT", "t90_pct", "y")],
    "co2": [("NS-PACO2", "pco2_mmhg", "y"), ("NS-CO2SCREEN", "venous_pco2_mmhg", "y"), ("NE-CO2", "pco2_mmhg", "y"),
            ("NS-CO2SCREEN", "bicarbonate_mmol_l", "y2")],
    "alsfrs": [],
}
# Where an alert's marker goes when its rule draws no threshold (else by category, else the first chart).
MARKER_CHART: dict[str, str] = {
    "NS-SLOPE": "vc", "NS-DROP10": "vc", "NS-VCDROP": "vc", "NS-SUPINE": "vc", "DQ-SPIROQC": "vc", "DQ-PFT6M": "vc",
    "DQ-DEMOG": "vc", "NS-OXI88": "oximetry", "DQ-OXINVALID": "oximetry", "TD-FAIL": "oximetry",
    "NE-USEDROP": "niv_use", "TD-DEP": "niv_use", "TD-INTOL": "niv_use", "DQ-NOUPLOAD": "niv_use",
    "NE-RRDEV": "niv_vent", "NE-MVDEV": "niv_vent", "TD-BULBAR": "alsfrs", "TD-BULBDEC": "alsfrs",
    "NS-ORTHO": "alsfrs", "NS-FVC80-SYM": "vc", "NS-TCCO2": "co2", "TD-COUGH": "pcf", "NS-O2NONIV": "oximetry",
}
CATEGORY_CHART = {"NIV_START": "vc", "NIV_ESCALATE": "niv_use", "TRACH_DISCUSS": "vc", "DATA_QUALITY": "vc"}


@lru_cache(maxsize=1)
def active_rules() -> RuleSet:
    """The rules file the worker runs (read once per process, as the worker does)."""
    return load_rules()


# ------------------------------------------------------------------------------------------- shapes
def rounded(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def night_epoch(night: date) -> int:
    """A night on the shared axis: noon UTC of its date (as `queries.records` places NIV nights)."""
    return epoch(datetime.combine(night, time(12), tzinfo=UTC))


@dataclass
class Series:
    label: str
    unit: str
    values: list[float | None]
    scale: str = "y"

    def latest(self, x: Sequence[int]) -> tuple[int, float] | None:
        for at, v in zip(reversed(x), reversed(self.values), strict=True):
            if v is not None:
                return at, v
        return None


@dataclass
class Chart:
    """One small multiple: a shared x (epoch s), its series, the rules' lines and the alert markers."""

    id: str
    title: str
    kind: str  # what is recorded, for "No <kind> recorded in this period"
    x: list[int] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    bars: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(v is not None for s in self.series for v in s.values)

    def latest(self) -> list[dict[str, Any]]:
        """The no-JS fallback: each series' latest value and its day."""
        out = []
        for s in self.series:
            found = s.latest(self.x)
            if found is not None:
                out.append({"label": s.label, "unit": s.unit, "value": found[1],
                            "day": datetime.fromtimestamp(found[0], UTC).date()})
        return out

    def data(self) -> dict[str, Any]:
        return {"id": self.id, "bars": self.bars, "x": self.x,
                "series": [{"label": s.label, "unit": s.unit, "scale": s.scale, "values": s.values}
                           for s in self.series],
                "thresholds": self.thresholds, "markers": self.markers, **self.extra}


def columns(rows: Sequence[dict[str, Any]], at: Callable[[dict[str, Any]], int],
            specs: Iterable[tuple[str, str, Callable[[dict[str, Any]], Any], str]], digits: int = 1
            ) -> tuple[list[int], list[Series]]:
    """Rows to one x column and a value column per spec (label, unit, getter, scale); a row without any
    value is left out, a series without any value is dropped."""
    specs = list(specs)
    x: list[int] = []
    cols: list[list[float | None]] = [[] for _ in specs]
    for row in rows:
        vals = [rounded(get(row), digits) for _, _, get, _ in specs]
        if all(v is None for v in vals):
            continue
        x.append(at(row))
        for col, v in zip(cols, vals, strict=True):
            col.append(v)
    series = [Series(label, unit, col, scale) for (label, unit, _, scale), col in zip(specs, cols, strict=True)
              if any(v is not None for v in col)]
    return x, series


def one_per_night(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per night date (the first source), so the axis has one point per night."""
    seen: dict[date, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row["night_date"], row)
    return [seen[d] for d in sorted(seen)]


# ------------------------------------------------------------------------------------------- charts
def vc_chart(sessions: list[dict[str, Any]], rules: RuleSet, days: q.Period) -> tuple[Chart, dict[str, Any]]:
    """FVC and SVC % predicted, sitting and supine apart, grade per session, Theil-Sen trend."""
    def pick(measure: str, supine: bool) -> Callable[[dict[str, Any]], Any]:
        return lambda r: r[measure] if (r["posture"] == "supine") == supine else None

    rows = [r for r in sessions if r["fvc_pct_pred"] is not None or r["svc_pct_pred"] is not None]
    x, series = columns(rows, lambda r: epoch(r["at"]), [
        ("FVC sitting", "%", pick("fvc_pct_pred", False), "y"),
        ("FVC supine", "%", pick("fvc_pct_pred", True), "y"),
        ("SVC sitting", "%", pick("svc_pct_pred", False), "y"),
        ("SVC supine", "%", pick("svc_pct_pred", True), "y")])
    chart = Chart("vc", "Vital capacity (% predicted)", "spirometry", x, series, bars=False)
    chart.extra["grades"] = [r["grade"] or "?" for r in rows]
    trend = vc_trend(rows, rules)
    if trend["line"] is not None:
        chart.extra["trend"] = trend["line"]
    return chart, trend


def vc_trend(rows: list[dict[str, Any]], rules: RuleSet) -> dict[str, Any]:
    """Theil-Sen fit of the better of FVC and SVC % predicted per sitting session of usable grade, over
    NS-SLOPE's window, and the day it reaches NS-SLOPE's floor (`processors.metrics.trends`)."""
    p = params_of(rules, "NS-SLOPE")
    points = [(r["at"], max(v for v in (r["fvc_pct_pred"], r["svc_pct_pred"]) if v is not None)) for r in rows
              if r["posture"] != "supine" and usable(r["grade"])]
    floor = float(p.get("fvc_floor", 50))
    fit = fvc_slope(points, window_days=int(p.get("window_days", 180)), min_sessions=int(p.get("min_sessions", 3)),
                    min_span_days=int(p.get("min_span_days", 60)))
    crossing = projected_crossing(fit, floor)
    below = fit.intercept_now is not None and fit.intercept_now <= floor
    out: dict[str, Any] = {"fit": fit, "floor": floor, "crossing": crossing, "line": None, "below": below}
    if fit.estimable and fit.slope_per_month is not None and fit.intercept_now is not None and points:
        last = max(t for t, _ in points)
        first = last - timedelta(days=fit.span_days)
        end = last + timedelta(days=180)
        # drawn to the crossing when it is ahead; a fit already below the floor crossed in the past
        if crossing is not None and last.date() < crossing < end.date():
            end = datetime.combine(crossing, time(12), tzinfo=UTC)
        per_day = fit.slope_per_month / 30.4
        now = fit.intercept_now

        def value(t: datetime) -> float:
            return now + per_day * (t - last).total_seconds() / 86400

        out["line"] = {"x": [epoch(first), epoch(end)], "y": [rounded(value(first)), rounded(value(end))],
                       "label": "Trend (Theil–Sen)"}
    return out


def spirometry_charts(sessions: list[dict[str, Any]]) -> list[Chart]:
    x, series = columns(sessions, lambda r: epoch(r["at"]), [
        ("MIP", "cmH2O", lambda r: r["mip_cmh2o"], "y"), ("SNIP", "cmH2O", lambda r: r["snip_cmh2o"], "y"),
        ("MEP", "cmH2O", lambda r: r["mep_cmh2o"], "y")])
    pressures = Chart("pressures", "Respiratory muscle pressures (cmH2O)", "MIP, SNIP or MEP", x, series)
    x, series = columns(sessions, lambda r: epoch(r["at"]), [
        ("PCF unassisted", "L/min", lambda r: None if r["pcf_assisted"] else r["pcf_lpm"], "y"),
        ("PCF assisted", "L/min", lambda r: r["pcf_lpm"] if r["pcf_assisted"] else None, "y")], digits=0)
    return [pressures, Chart("pcf", "Peak cough flow (L/min)", "peak cough flow", x, series)]


def niv_charts(nights: list[dict[str, Any]]) -> list[Chart]:
    rows = one_per_night(nights)

    def at(r: dict[str, Any]) -> int:
        return night_epoch(r["night_date"])

    x, series = columns(rows, at, [("Use", "h", lambda r: r["usage_hours"], "y")], digits=2)
    use = Chart("niv_use", "NIV use per night (hours)", "NIV use", x, series, bars=True)
    x, series = columns(rows, at, [("Leak p95", "L/min", lambda r: r["leak_p95_lpm"], "y"),
                                   ("AHI", "/h", lambda r: r["ahi"], "y2")])
    leak = Chart("niv_leak", "NIV leak (L/min) and residual AHI (/h)", "NIV leak or AHI", x, series)
    x, series = columns(rows, at, [("Resp. rate", "/min", lambda r: r["resp_rate"], "y"),
                                   ("Minute vent.", "L/min", lambda r: r["minute_vent_lpm"], "y"),
                                   ("Tidal volume", "mL", lambda r: r["tidal_volume_ml"], "y2")])
    vent = Chart("niv_vent", "NIV rate (/min), minute ventilation (L/min), tidal volume (mL)", "NIV ventilation",
                 x, series)
    return [use, leak, vent]


def oximetry_chart(nights: list[dict[str, Any]]) -> Chart:
    rows = one_per_night(nights)
    x, series = columns(rows, lambda r: night_epoch(r["night_date"]), [
        ("T90", "%", lambda r: r["t90_pct"], "y"), ("T88", "%", lambda r: r["t88_pct"], "y"),
        ("ODI3", "/h", lambda r: r["odi3"], "y"), ("Min SpO2", "%", lambda r: r["min_spo2"], "y2")])
    chart = Chart("oximetry", "Nightly oximetry: T90, T88 (% of night), ODI3 (/h), min SpO2 (%)", "oximetry", x,
                  series)
    chart.extra["nightLinks"] = True  # a click on a night opens the night view
    return chart


def pco2_of(sample: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r["pco2"] if r["sample"] == sample else None


def co2_chart(co2: dict[str, list[dict[str, Any]]]) -> Chart:
    rows = [{"at": r["at"], "sample": r["sample"], "pco2": r["pco2_mmhg"], "bic": r["bicarbonate_mmol_l"],
             "tc": None} for r in co2["gases"]]
    rows += [{"at": r["at"], "sample": None, "pco2": None, "bic": None, "tc": r["max_tcpco2"]} for r in co2["tcco2"]]
    rows.sort(key=lambda r: r["at"])
    samples = sorted({r["sample"] for r in rows if r["sample"] and r["pco2"] is not None})
    specs: list[tuple[str, str, Callable[[dict[str, Any]], Any], str]] = [
        (f"pCO2 {s}", "mmHg", pco2_of(s), "y") for s in samples]
    specs += [("TcCO2 max (night)", "mmHg", lambda r: r["tc"], "y"),
              ("Bicarbonate", "mmol/L", lambda r: r["bic"], "y2")]
    x, series = columns(rows, lambda r: epoch(r["at"]), specs)
    return Chart("co2", "CO2: pCO2 and overnight TcCO2 (mmHg), bicarbonate (mmol/L)", "CO2 values", x, series)


def alsfrs_chart(forms: list[dict[str, Any]]) -> Chart:
    x, series = columns(forms, lambda r: epoch(r["at"]), [
        ("Total", "/48", lambda r: r["total"], "y"), ("Bulbar (1-3)", "/12", lambda r: r["bulbar"], "y2"),
        ("Respiratory (10-12)", "/12", lambda r: r["respiratory"], "y2")], digits=0)
    return Chart("alsfrs", "ALSFRS-R total and bulbar / respiratory subscores", "ALSFRS-R", x, series)


def params_of(rules: RuleSet, rule_id: str) -> dict[str, Any]:
    try:
        rule = rules.get(rule_id)
    except KeyError:
        return {}
    return dict(rule.params) if rule.enabled else {}


def draw_thresholds(chart: Chart, rules: RuleSet) -> None:
    """The rules' numbers as lines: one per distinct value and scale, labelled with every rule using it."""
    lines: dict[tuple[str, float], list[str]] = {}
    for rule_id, name, scale in THRESHOLDS.get(chart.id, []):
        value = params_of(rules, rule_id).get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            lines.setdefault((scale, float(value)), []).append(f"{rule_id} {name}")
    chart.thresholds = [{"value": v, "scale": s, "label": " · ".join(labels)} for (s, v), labels in lines.items()]


def marker_chart(alert: dict[str, Any], present: set[str]) -> str:
    """The chart an alert's marker goes on: its rule's threshold chart, its own, its category's, or the first."""
    rule_id = alert["rule_id"]
    for chart_id, specs in THRESHOLDS.items():
        if any(r == rule_id for r, _, _ in specs) and chart_id in present:
            return chart_id
    for choice in (MARKER_CHART.get(rule_id), CATEGORY_CHART.get(alert["category"])):
        if choice in present:
            return choice
    return next(iter(sorted(present)), "vc")


def place_markers(charts: list[Chart], alerts: list[dict[str, Any]], days: q.Period) -> None:
    by_id = {c.id: c for c in charts}
    present = {c.id for c in charts if not c.empty} or {charts[0].id}
    for alert in alerts:
        if not days.lo <= alert["opened_at"] < days.hi:
            continue
        chart = by_id[marker_chart(alert, present)]
        alert["chart"] = chart.id
        chart.markers.append({"x": epoch(alert["opened_at"]), "id": alert["alert_id"],
                              "label": f"{alert['severity']} {alert['rule_id']}"})


# ----------------------------------------------------------------------------------- the rest of it
def usage_calendar(nights: list[dict[str, Any]], end: date, min_hours: float | None) -> list[list[dict[str, Any]]]:
    """The last weeks of NIV use, Monday to Sunday, each day with its hours and whether it reached the
    adherence threshold (NE-ADH's min_hours)."""
    used = {r["night_date"]: r["usage_hours"] for r in one_per_night(nights)}
    last_sunday = end + timedelta(days=6 - end.weekday())
    first = last_sunday - timedelta(days=7 * CALENDAR_WEEKS - 1)
    weeks = []
    for w in range(CALENDAR_WEEKS):
        week = []
        for d in range(7):
            day = first + timedelta(days=7 * w + d)
            hours = used.get(day)
            level = ("future" if day > end else "none" if hours is None
                     else "ok" if min_hours is None or hours >= min_hours else "low")
            week.append({"day": day, "hours": hours, "level": level})
        weeks.append(week)
    return weeks


def rule_title(rules: RuleSet, rule_id: str) -> str:
    try:
        return rules.get(rule_id).title or rule_id
    except KeyError:
        return rule_id


def date_range(start: date | None, end: date | None) -> q.Period:
    """`?from=&to=`: default the last two years to today; a reversed or over-long range is refused."""
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=DEFAULT_DAYS)
    if start > end or (end - start).days > MAX_DAYS:
        raise HTTPException(422, f"the range must run forward and span at most {MAX_DAYS} days")
    return q.Period(start, end)


def chart_json(charts: list[Chart], days: q.Period, patient_id: str, trend_end: int | None) -> Markup:
    """The JSON block charts.js reads (`<` escaped: it sits inside a <script> element)."""
    hi = max(epoch(days.hi), trend_end or 0)
    data = {"from": epoch(days.lo), "to": hi, "patient": patient_id,
            "charts": [c.data() for c in charts if not c.empty]}
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def gather(conn: Any, patient_id: str, days: q.Period, member_id: str) -> dict[str, Any]:
    """Everything the page shows, read in the caller's transaction."""
    rules = active_rules()
    sessions = q.spirometry_series(conn, patient_id, days)
    niv = q.niv_series(conn, patient_id, days)
    oxi = q.oximetry_series(conn, patient_id, days)
    vc, trend = vc_chart(sessions, rules, days)
    charts = [vc, *spirometry_charts(sessions), *niv_charts(niv), oximetry_chart(oxi),
              co2_chart(q.co2_series(conn, patient_id, days)),
              alsfrs_chart(q.questionnaire_series(conn, patient_id, days))]
    for chart in charts:
        draw_thresholds(chart, rules)
    alerts = q.alerts_of(conn, patient_id)
    for alert in alerts:
        alert["title"] = rule_title(rules, alert["rule_id"])
        alert["chart"] = None
    place_markers(charts, alerts, days)
    line = trend["line"]
    states = q.care_states_of(conn, patient_id)
    min_hours = params_of(rules, "NE-ADH").get("min_hours")
    return {
        "patient_id": patient_id, "days": days, "charts": charts, "trend": trend,
        "chart_data": chart_json(charts, days, patient_id, line["x"][1] if line else None),
        "alerts": alerts, "notes": q.notes_of(conn, patient_id), "care_states": states,
        "current_state": states[0] if states and states[0]["state"] != NO_STATE else None,
        "state_choices": [NO_STATE, *CARE_STATES], "today": datetime.now(UTC).date(),
        "calendar": usage_calendar(niv, days.end, min_hours), "min_hours": min_hours,
        "recent_nights": list(reversed(oxi))[:RECENT_NIGHTS],
        "can_note": may(conn, member_id, patient_id, "note"),
        "can_care_state": may(conn, member_id, patient_id, "care_state"),
    }


def care_state_change(patient_id: str, state: str, since: date, note: str | None, who: Person) -> CareStateChange:
    """The change the JSON API would publish (`alerts.carestate_api`), or 422 naming what is wrong."""
    try:
        return CareStateChange(patient_id=patient_id, state=state, since=since,
                               note=note or None, set_by=who.member_id, set_at=datetime.now(UTC))
    except ValidationError as error:
        first = error.errors()[0]
        raise HTTPException(422, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def patient_routes(web: Web) -> APIRouter:
    router = APIRouter()

    @router.get("/patients/{patient_id}", response_class=HTMLResponse)
    def patient_page(request: Request, patient_id: str, who: Annotated[Person, Depends(web.person)],
                     start: Annotated[date | None, Query(alias="from")] = None,
                     end: Annotated[date | None, Query(alias="to")] = None) -> HTMLResponse:
        days = date_range(start, end)
        with web.reading(request, who, "patient_page", patient_id) as conn:
            view = gather(conn, patient_id, days, who.member_id)
        return page(request, "patient.html", who, f"Patient {patient_id}", **view)

    @router.post("/patients/{patient_id}/notes")
    def add_note(request: Request, patient_id: str, who: Annotated[Person, Depends(web.posted)],
                 note: Annotated[str, Form(min_length=1, max_length=2000)]) -> RedirectResponse:
        text = note.replace("\x00", "").strip()
        if not text:
            raise HTTPException(422, "the note is empty")
        with web.reading(request, who, "note", patient_id, permission="note") as conn:
            q.add_note(conn, patient_id, who.member_id, text)
        return RedirectResponse(f"/patients/{patient_id}#notes", status_code=303)

    @router.post("/patients/{patient_id}/care-state")
    def set_care_state(request: Request, patient_id: str, who: Annotated[Person, Depends(web.posted)],
                       state: Annotated[str, Form(max_length=32)], since: Annotated[date, Form()],
                       note: Annotated[str | None, Form(max_length=2000)] = None) -> RedirectResponse:
        change = care_state_change(patient_id, state, since, note, who)
        with web.reading(request, who, "care_state", patient_id, permission="care_state") as conn:
            try:  # published first, as the JSON API does: the worker applies it, care_states audits it
                publish(web.settings, change)
            except KafkaError as error:
                raise HTTPException(503, f"Kafka did not take the change ({type(error).__name__}): retry") from None
            record_care_state(conn, change)
        return RedirectResponse(f"/patients/{patient_id}#care-state", status_code=303)

    return router
