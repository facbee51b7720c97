"""The functions an expression may call: their implementations and the table the compiler checks.

Aggregates read a window of one kind's rows (:mod:`processors.rules.expr.window`) and record their
inputs in the context's trace, which becomes the verdict's evidence.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from processors.metrics import trends
from processors.rules.expr.context import EvalContext
from processors.rules.expr.nodes import Call, KindRef
from processors.rules.expr.types import ANY, BOOL, DEV, NUM, SLOPE, STR
from processors.rules.expr.window import (
    DAY_S,
    evidence_points,
    iso_time,
    keyword_value,
    round_value,
    select_rows,
    series_arg,
)

__all__ = ["DEV_ATTRS", "FUNCTIONS", "SCALAR_MINMAX", "SLOPE_ATTRS", "WINDOW_KW", "FuncSpec"]


def _agg(reduce: Callable[[list[Any]], Any], flags: bool = False) -> Callable[[Call, EvalContext], Any]:
    def impl(call: Call, ctx: EvalContext) -> Any:
        series = series_arg(call)
        picked, window = select_rows(call, ctx, series)
        min_n = int(keyword_value(call, "min_n", ctx, 0 if flags else 1))
        values = [v for _, v in picked]
        result = reduce(values) if len(values) >= max(min_n, 0 if flags else 1) else None
        if ctx.tracing:
            ctx.record(call.src, {"value": round_value(result), "window": window,
                                  **evidence_points(series, picked, series.typ.primary, ctx, flags)})
        return result

    return impl


def _latest(call: Call, ctx: EvalContext) -> Any:
    """With ``skip_missing=False``: the value on the newest row of the window, missing when that row has none
    (a device-reported figure beside ours is the same night's, never an older night's)."""
    series = series_arg(call)
    keep_missing = keyword_value(call, "skip_missing", ctx, True) is False
    picked, window = select_rows(call, ctx, series, default_last=1, keep_missing=keep_missing)
    value = picked[-1][1] if picked else None
    if not ctx.tracing:
        return value
    entry: dict[str, Any] = {"value": round_value(value), "window": window}
    if picked:
        row = picked[-1][0]
        entry["date"] = row["d"]
        shown = series.show(row, series.typ.primary, ctx)
        if shown != value:
            entry["shown"] = round_value(shown)
    ctx.record(call.src, entry)
    return value


def _first(call: Call, ctx: EvalContext) -> Any:
    """The oldest row with a value in the window (all that is kept without one): a patient's own baseline,
    e.g. the first session's litres when % predicted cannot be computed."""
    series = series_arg(call)
    picked, window = select_rows(call, ctx, series)
    value = picked[0][1] if picked else None
    if not ctx.tracing:
        return value
    entry: dict[str, Any] = {"value": round_value(value), "window": window}
    if picked:
        entry["date"] = picked[0][0]["d"]
    ctx.record(call.src, entry)
    return value


def _days_between(ctx: EvalContext, ts: float | None) -> float | None:
    return None if ts is None else round((ctx.as_ts - ts) / DAY_S, 3)


def _days_since(call: Call, ctx: EvalContext) -> Any:
    target = call.args[0]
    if isinstance(target, KindRef):
        rows = ctx.rows(target.kind)
        ts = rows[-1]["t"] if rows else None
        date_s = rows[-1]["d"] if rows else None
        if ts is None and target.kind != "supine":  # every row pruned: the newest event is still known
            last = ctx.source.last_event(target.kind)
            ts, date_s = (last.timestamp(), last.date().isoformat()) if last else (None, None)
    else:
        series = series_arg(call)
        picked, _ = select_rows(call, ctx, series, default_last=1)
        ts = picked[-1][0]["t"] if picked else None
        date_s = picked[-1][0]["d"] if picked else None
    value = _days_between(ctx, ts)
    if ctx.tracing:
        ctx.record(call.src, {"value": value, "last_date": date_s, "as_of": ctx.as_of.isoformat()})
    return value


def _days_since_first(call: Call, ctx: EvalContext) -> Any:
    target = call.args[0]
    kind = target.kind if isinstance(target, KindRef) else series_arg(call).typ.primary
    ts = ctx.source.first_event(kind)
    if ts is not None and ts > ctx.as_ts:
        ts = None
    value = _days_between(ctx, ts)
    if ctx.tracing:
        ctx.record(call.src, {"value": value, "first": None if ts is None else iso_time(ts)})
    return value


def _days_monitored(call: Call, ctx: EvalContext) -> Any:
    ts = ctx.source.first_event(None)
    if ts is not None and ts > ctx.as_ts:
        ts = None
    value = _days_between(ctx, ts)
    if ctx.tracing:
        ctx.record(call.src, {"value": value, "first": None if ts is None else iso_time(ts)})
    return value


def _open_days(call: Call, ctx: EvalContext) -> Any:
    """Days the longest-open finding of a rule id or category (e.g. "NIV_START") has been open."""
    which = call.args[0].ev(ctx)
    best: float | None = None
    for rule_id, info in ctx.source.open_findings().items():
        if rule_id == which or info.get("category") == which:
            opened = datetime.fromisoformat(info["opened_at"]).timestamp()
            if opened <= ctx.as_ts:
                days = (ctx.as_ts - opened) / DAY_S
                best = days if best is None else max(best, days)
    value = None if best is None else round(best, 3)
    ctx.record(call.src, {"value": value})
    return value


def _care_state(call: Call, ctx: EvalContext) -> Any:
    """The care state the team set for as_of ("none" when none): `schemas.carestate`."""
    entry = ctx.source.care_state_at(ctx.as_ts)
    value = entry["state"] if entry else "none"
    if ctx.tracing:
        shown = {"since": entry["since"], "set_by": entry["set_by"]} if entry else {}
        ctx.record(call.src, {"value": value, **shown})
    return value


def _coalesce(call: Call, ctx: EvalContext) -> Any:
    for a in call.args:
        v = a.ev(ctx)
        if v is not None:
            return v
    return None


def _missing(call: Call, ctx: EvalContext) -> Any:
    return call.args[0].ev(ctx) is None


def _abs(call: Call, ctx: EvalContext) -> Any:
    v = call.args[0].ev(ctx)
    return None if v is None else abs(v)


def _scalar_minmax(fn: Callable[..., Any]) -> Callable[[Call, EvalContext], Any]:
    def impl(call: Call, ctx: EvalContext) -> Any:
        values = [v for v in (a.ev(ctx) for a in call.args) if v is not None]
        return fn(values) if values else None

    return impl


def _slope(call: Call, ctx: EvalContext) -> Any:
    series = series_arg(call)
    days = keyword_value(call, "days", ctx, 180)
    min_n = int(keyword_value(call, "min_n", ctx, 3))
    min_span = keyword_value(call, "min_span_days", ctx, 60)
    # without days= the window is the default's, ending at as_of like every other window
    picked, window = select_rows(call, ctx, series, days=days)
    points = [(datetime.fromtimestamp(r["t"], tz=UTC), float(v)) for r, v in picked]
    res = trends.fvc_slope(points, window_days=days, min_sessions=min_n, min_span_days=min_span)
    out = {
        "per_month": round_value(getattr(res, "slope_per_month", None)),
        "intercept": round_value(getattr(res, "intercept_now", None)),
        "n": getattr(res, "n", None),
        "span_days": round_value(getattr(res, "span_days", None)),
        "estimable": bool(getattr(res, "estimable", False)),
        "reason": getattr(res, "reason", None),
        "_result": res,
    }
    if not out["estimable"]:
        out["per_month"] = None
    if ctx.tracing:
        ctx.record(call.src, {"value": {k: v for k, v in out.items() if not k.startswith("_")},
                              "window": window, **evidence_points(series, picked, series.typ.primary, ctx)})
    return out


def _deviation(call: Call, ctx: EvalContext) -> Any:
    series = series_arg(call)
    recent = keyword_value(call, "recent", ctx, 5)
    baseline = keyword_value(call, "baseline", ctx, 90)
    picked, window = select_rows(call, ctx, series, days=recent + baseline + 2)
    res = trends.deviation_of(*_deviation_split(picked, recent, baseline, ctx))
    b, r = getattr(res, "baseline_median", None), getattr(res, "recent_median", None)
    out = {
        "pct": round_value(getattr(res, "pct_change", None)),
        "delta": round_value(None if b is None or r is None else r - b),
        "baseline": round_value(b),
        "recent": round_value(r),
        "n_baseline": getattr(res, "n_baseline", 0),
        "n_recent": getattr(res, "n_recent", 0),
    }
    if not ctx.tracing:
        return out
    recent_pts = [p for p in picked if p[0]["t"] > ctx.as_ts - float(recent) * DAY_S]
    ctx.record(call.src, {"value": out, "window": {**window, "recent_days": recent, "baseline_days": baseline},
                          **evidence_points(series, recent_pts, series.typ.primary, ctx)})
    return out


def _deviation_split(picked: list[tuple[dict[str, Any], Any]], recent: float, baseline: float,
                     ctx: EvalContext) -> tuple[list[float], list[float]]:
    """The values of `trends.baseline_deviation` windows (baseline, recent) on the rows' dates, as it splits
    them: its bounds, compared as ISO dates (``YYYY-MM-DD`` strings order as the dates do) rather than
    parsing each row's date; NaN is no value. A NIV night reads four deviations of ~97 nights."""
    base_from, recent_from, end = (d.isoformat() for d in trends.deviation_bounds(_as_of_day(ctx), recent, baseline))
    base: list[float] = []
    recents: list[float] = []
    for row, v in picked:
        x = float(v)
        if math.isnan(x):
            continue
        day = row["d"][:10]
        if recent_from < day <= end:
            recents.append(x)
        elif base_from < day <= recent_from:
            base.append(x)
    return base, recents


def _as_of_day(ctx: EvalContext) -> date:
    """The last night that has ended by ``as_of``: nights are dated by their evening."""
    return (ctx.as_of - timedelta(days=1)).date()


# --------------------------------------------------------------------------------------------
# Function table: name -> (arg checker, allowed kwargs, implementation)
# --------------------------------------------------------------------------------------------
WINDOW_KW = {"nights": NUM, "sessions": NUM, "last": NUM, "days": NUM, "valid_only": BOOL, "where": "where",
             "min_n": NUM}


@dataclass(frozen=True)
class FuncSpec:
    args: str
    """'series', 'bool_series', 'num_series', 'kind_or_series', 'scalar', 'scalars', 'text', 'none'"""
    kwargs: Mapping[str, Any]
    result: Any
    impl: Callable[[Call, EvalContext], Any]
    doc: str


def _median(vs: list[float]) -> float:
    return float(statistics.median(vs))


FUNCTIONS: dict[str, FuncSpec] = {
    "latest": FuncSpec("series", {**WINDOW_KW, "skip_missing": BOOL}, "elem", _latest,
                       "value of the most recent row with a value (skip_missing=False: of the most recent row)"),
    "first": FuncSpec("series", WINDOW_KW, "elem", _first, "value of the oldest row with a value"),
    "count": FuncSpec("bool_series", WINDOW_KW, NUM, _agg(lambda vs: sum(1 for v in vs if v), flags=True),
                      "number of rows where the yes/no series is yes"),
    "n": FuncSpec("series", WINDOW_KW, NUM, _agg(len, flags=True), "number of rows with a value"),
    "median": FuncSpec("num_series", WINDOW_KW, NUM, _agg(_median), "median of the values"),
    "mean": FuncSpec("num_series", WINDOW_KW, NUM, _agg(lambda vs: float(sum(vs)) / len(vs)), "mean"),
    "sum": FuncSpec("num_series", WINDOW_KW, NUM, _agg(lambda vs: float(sum(vs))), "sum"),
    "min": FuncSpec("num_series_or_scalars", WINDOW_KW, NUM, _agg(min), "smallest value"),
    "max": FuncSpec("num_series_or_scalars", WINDOW_KW, NUM, _agg(max), "largest value"),
    "slope": FuncSpec("num_series", {"days": NUM, "min_n": NUM, "min_span_days": NUM, "valid_only": BOOL,
                                     "where": "where"}, SLOPE, _slope,
                      "linear trend per month over the last `days` (processors.metrics.trends.fvc_slope)"),
    "deviation": FuncSpec("num_series", {"recent": NUM, "baseline": NUM, "valid_only": BOOL, "where": "where"},
                          DEV, _deviation,
                          "median of the last `recent` days vs the median of the `baseline` days before"),
    "days_since": FuncSpec("kind_or_series", {"valid_only": BOOL, "where": "where"}, NUM, _days_since,
                           "days from the latest row (of a kind, or with a value) to as_of"),
    "days_since_first": FuncSpec("kind_or_series", {}, NUM, _days_since_first,
                                 "days from the first ever record of that kind to as_of"),
    "days_monitored": FuncSpec("none", {}, NUM, _days_monitored, "days since the first record of any kind"),
    "open_days": FuncSpec("text", {}, NUM, _open_days,
                          "days the open finding of a rule id or category has been open"),
    "care_state": FuncSpec("none", {}, STR, _care_state,
                           "the care state the team set for as_of: niv_declined, invasive_ventilation, end_of_life,"
                           " left_service, or none"),
    "coalesce": FuncSpec("scalars", {}, ANY, _coalesce, "first argument that is not missing"),
    "missing": FuncSpec("scalar", {}, BOOL, _missing, "yes when the value is missing"),
    "abs": FuncSpec("scalar", {}, NUM, _abs, "absolute value"),
}
SCALAR_MINMAX = {"min": _scalar_minmax(min), "max": _scalar_minmax(max)}

SLOPE_ATTRS = {"per_month": NUM, "intercept": NUM, "n": NUM, "span_days": NUM, "estimable": BOOL}
DEV_ATTRS = {"pct": NUM, "delta": NUM, "baseline": NUM, "recent": NUM, "n_baseline": NUM, "n_recent": NUM}
