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


def select_rows(call: Call, ctx: EvalContext, series: SeriesNode, *, default_last: int | None = None,
                keep_missing: bool = False) -> tuple[list[tuple[dict[str, Any], Any]], dict[str, Any]]:
    """Rows of the series' primary kind in the call's window, newest last, with their values.

    Window keywords: ``nights``/``sessions``/``last`` = the last N rows that have a value;
    ``days`` = rows in (as_of - days, as_of]; ``valid_only`` (default true) drops invalid nights and
    unusable sessions; ``where`` = a yes/no series a row must satisfy. ``keep_missing``: rows without a
    value count too (their value None), so the newest row is the newest of the window, value or not.
    """
    kind = series.typ.primary
    rows = ctx.rows(kind)
    last = None
    for key in ("nights", "sessions", "last"):
        if key in call.kwargs:
            last = keyword_value(call, key, ctx)
    if last is None:
        last = default_last
    days = keyword_value(call, "days", ctx)
    valid_only = keyword_value(call, "valid_only", ctx, True)
    where = cast("SeriesNode | None", call.kwargs.get("where"))  # the compiler checked: a yes/no series
    start = 0
    if days is not None:
        start = bisect_left(rows, ctx.as_ts - float(days) * DAY_S + 1e-6, key=lambda r: r["t"])
    picked: list[tuple[dict[str, Any], Any]] = []
    if ROW_FUNCTIONS:
        value = series.row_fn(kind)
        keep = None if where is None else where.row_fn(kind)
        limit = None if last is None else int(last)
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
    else:
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
    picked.reverse()
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
