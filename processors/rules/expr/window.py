"""The rows an aggregate reads (its window keywords) and how they appear in a verdict's evidence."""

from __future__ import annotations

import math
from bisect import bisect_left
from datetime import UTC, datetime
from typing import Any, cast

from processors.rules.expr.context import EvalContext
from processors.rules.expr.nodes import Call, SeriesNode

__all__ = ["DAY_S", "MAX_POINTS", "evidence_points", "iso_time", "keyword_value", "round_value", "select_rows",
           "series_arg"]

DAY_S = 86400.0
ROW_FUNCTIONS = True
"""Read window rows through each series' compiled row function (``SeriesNode.row_fn``); False reads them
through ``val``, the reference path the property tests compare it with (same findings, row for row)."""
MAX_POINTS = 14
"""Evidence keeps at most this many (most recent) points per input, plus the count."""


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def round_value(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 3)
    return v


def keyword_value(call: Call, name: str, ctx: EvalContext, default: Any = None) -> Any:
    node = call.kwargs.get(name)
    return default if node is None else node.ev(ctx)


_FEW = 8
"""A window of at most this many rows is read row by row without looking for fields missing throughout."""
_KEYWORD: Any = object()
"""`select_rows(days=...)` not given: the call's own `days=` keyword."""


def select_rows(call: Call, ctx: EvalContext, series: SeriesNode, *, default_last: int | None = None,
                keep_missing: bool = False, days: Any = _KEYWORD,
                ) -> tuple[list[tuple[dict[str, Any], Any]], dict[str, Any]]:
    """Rows of the series' primary kind in the call's window, newest last, with their values.

    Window keywords: ``nights``/``sessions``/``last`` = the last N rows that have a value;
    ``days`` = rows in (as_of - days, as_of]; ``valid_only`` (default true) drops invalid nights and
    unusable sessions; ``where`` = a yes/no series a row must satisfy. ``keep_missing``: rows without a
    value count too (their value None), so the newest row is the newest of the window, value or not.
    ``days`` given here replaces the call's keyword (a function with a window of its own). The window's
    description (for the evidence) is built only when the context traces; else it is empty.
    """
    kind = series.typ.primary
    rows = ctx.rows(kind)
    counted, days_node, valid_node, where_node = call.window
    last = None
    for node in counted:
        last = node.ev(ctx)
    if last is None:
        last = default_last
    if days is _KEYWORD:
        days = None if days_node is None else days_node.ev(ctx)
    valid_only = True if valid_node is None else valid_node.ev(ctx)
    where = cast("SeriesNode | None", where_node)  # the compiler checked: a yes/no series
    start = 0
    if days is not None:
        start = bisect_left(rows, ctx.as_ts - float(days) * DAY_S + 1e-6, key=_event_ts)
    limit = None if last is None else int(last)
    picked: list[tuple[dict[str, Any], Any]] = []
    if not ROW_FUNCTIONS:
        for row in reversed(rows[start:]):
            if valid_only and not row.get("ok", True):
                continue
            if where is not None and where.val(row, kind, ctx) is not True:
                continue
            v = series.val(row, kind, ctx)
            if v is None and not keep_missing:
                continue
            picked.append((row, v))
            if last is not None and len(picked) >= int(last):
                break
    elif len(rows) - start <= _FEW or not _none_can_be_picked(ctx, kind, start, series, where, keep_missing):
        value = series.row_fn(kind)
        keep = None if where is None else where.row_fn(kind)
        for i in range(len(rows) - 1, start - 1, -1):
            row = rows[i]
            if valid_only and not row.get("ok", True):
                continue
            if keep is not None and keep(row, ctx) is not True:
                continue
            v = value(row, ctx)
            if v is None and not keep_missing:
                continue
            picked.append((row, v))
            if limit is not None and len(picked) >= limit:
                break
    picked.reverse()
    if not ctx.tracing:
        return picked, {}
    window: dict[str, Any] = {"kind": kind}
    if last is not None:
        window["last"] = int(last)
    if days is not None:
        window["days"] = days
        window["from"] = iso_time(ctx.as_ts - float(days) * DAY_S)
    window["to"] = ctx.as_of.isoformat()
    window["valid_only"] = bool(valid_only)
    if where is not None:
        window["where"] = where.src
    return picked, window


def _none_can_be_picked(ctx: EvalContext, kind: str, start: int, series: SeriesNode, where: SeriesNode | None,
                        keep_missing: bool) -> bool:
    """True when every row from `start` on lacks a field the (pure) `where` or value needs: the window picks
    nothing, and skipping rows that cannot be picked skips only evaluations without effect. A device that
    never reports a figure (NIV SpO2, oxygen flow, respiratory rate) made its rules read every row kept."""
    if where is not None:
        if not where.pure:
            return False  # it is evaluated on every row, as it would be
        if _lacking(ctx, kind, start, where.missing_without):
            return True
    return not keep_missing and _lacking(ctx, kind, start, series.missing_without)


def _lacking(ctx: EvalContext, kind: str, start: int, needs: frozenset[tuple[str, str]]) -> bool:
    """Some needed field is on no row from `start` on (on no row at all, for another kind's field)."""
    for other, field in needs:
        newest = ctx.newest_with(other, field)
        if newest < 0 or (other == kind and newest < start):
            return True
    return False


def _event_ts(row: dict[str, Any]) -> float:
    return cast(float, row["t"])


def evidence_points(series: SeriesNode, picked: list[tuple[dict[str, Any], Any]], kind: str, ctx: EvalContext,
            flags: bool = False) -> dict[str, Any]:
    tail = picked[-MAX_POINTS:]
    pts = []
    for row, v in tail:
        p: dict[str, Any] = {"date": row["d"], "value": round_value(series.show(row, kind, ctx))}
        if flags:
            p["flag"] = v
        pts.append(p)
    out: dict[str, Any] = {"n": len(picked), "points": pts}
    if picked:
        out["first_date"], out["last_date"] = picked[0][0]["d"], picked[-1][0]["d"]
    return out


def series_arg(call: Call) -> SeriesNode:
    """The call's first argument, which the compiler checked is a series."""
    return cast(SeriesNode, call.args[0])
