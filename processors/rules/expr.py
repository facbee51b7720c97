"""The rule expression language: a small, typed subset of Python expressions, never `eval`-ed.

An expression is parsed with :mod:`ast`, every node is checked against a whitelist and given a
static type, and the tree is compiled into plain Python objects that evaluate against an
:class:`EvalContext` (a patient's history cut at an ``as_of`` time). Unknown names, fields,
functions, keyword arguments and type mismatches are reported at load time, so a rules file that
loads is a rules file that evaluates. The grammar is documented in ``processors/rules/README.md``.

Value semantics (documented for clinicians in the README):

* A missing value is ``None``; arithmetic with a missing value is missing.
* A comparison with a missing value is *false*; ``not`` of a missing value is missing (false).
* ``and`` / ``or`` treat missing as false, so a rule never fires on absent data.
* A *series* (``oxi.t90_pct``) is a column of a patient's nights or sessions; comparisons on a
  series are element-wise and give a yes/no series that ``count`` / ``latest`` aggregate.
"""

from __future__ import annotations

import ast
import math
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "DAY_S",
    "FUNCTIONS",
    "KINDS",
    "Compiled",
    "EvalContext",
    "ExprError",
    "KindSpec",
    "Scope",
    "compile_expr",
]

DAY_S = 86400.0
MAX_POINTS = 14
"""Evidence keeps at most this many (most recent) points per input, plus the count."""


class ExprError(ValueError):
    """An expression that does not parse or does not type-check; the message is for rule authors."""


# --------------------------------------------------------------------------------------------
# Static types
# --------------------------------------------------------------------------------------------
NUM, BOOL, STR, ANY = "number", "yes/no", "text", "any"
LIST, KIND, SLOPE, DEV = "list", "record kind", "slope result", "deviation result"


@dataclass(frozen=True)
class SeriesT:
    """Type of a series: element type, the kind whose rows drive it, and the join family."""

    elem: str
    primary: str
    family: str

    def __str__(self) -> str:
        return f"series of {self.elem} ({self.primary})"


def _tname(t: Any) -> str:
    return str(t)


def _scalar(t: Any) -> bool:
    return t in (NUM, BOOL, STR, ANY)


# --------------------------------------------------------------------------------------------
# Record kinds and their fields
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KindSpec:
    name: str
    family: str
    """Kinds of one family join on their row key (nights join on night_date)."""
    fields: Mapping[str, str]
    doc: str


KINDS: dict[str, KindSpec] = {
    "spiro": KindSpec(
        "spiro",
        "session",
        {
            "fvc_l": NUM, "fvc_pct_pred": NUM, "svc_l": NUM, "svc_pct_pred": NUM, "fev1_l": NUM,
            "vc_l": NUM, "vc_pct_pred": NUM, "mip_cmh2o": NUM, "mep_cmh2o": NUM, "snip_cmh2o": NUM,
            "pcf_unassisted_lpm": NUM, "pcf_assisted_lpm": NUM, "grade": STR, "usable": BOOL,
            "supine_drop_pct": NUM, "pct_pred_not_computable": BOOL, "fvc_pct_pred_source": STR,
        },
        "sitting spirometry / respiratory-muscle sessions (valid = usable grade)",
    ),
    "supine": KindSpec(
        "supine",
        "supine",
        {"fvc_l": NUM, "fvc_pct_pred": NUM, "svc_l": NUM, "vc_l": NUM, "grade": STR, "usable": BOOL},
        "supine spirometry sessions",
    ),
    "oxi": KindSpec(
        "oxi",
        "night",
        {
            "valid": BOOL, "recording_min": NUM, "vrt_min": NUM, "mean_spo2": NUM, "min_spo2": NUM,
            "t90_pct": NUM, "t90_min": NUM, "t88_pct": NUM, "t88_min": NUM, "longest_le88_min": NUM,
            "odi3": NUM, "odi4": NUM, "mean_pulse": NUM, "on_o2": BOOL, "under_niv": BOOL,
            "invalid_reason": STR,
        },
        "overnight oximetry nights (valid = valid recording time >= 4 h)",
    ),
    "niv": KindSpec(
        "niv",
        "night",
        {
            "usage_hours": NUM, "leak_p95_lpm": NUM, "leak_kind": STR, "ahi": NUM, "resp_rate": NUM,
            "tidal_volume_ml": NUM, "minute_vent_lpm": NUM, "spo2_mean": NUM, "spo2_t90_pct": NUM,
            "pct_spont_triggered": NUM,
        },
        "NIV device nights (noon to noon)",
    ),
    "alsfrs": KindSpec(
        "alsfrs",
        "form",
        {"total": NUM, "bulbar": NUM, "respiratory": NUM},
        "ALSFRS-R questionnaires; alsfrs.item(n) is item n (1-12)",
    ),
}


# --------------------------------------------------------------------------------------------
# Evaluation context
# --------------------------------------------------------------------------------------------
class EvalContext:
    """What an expression sees: one patient's rows up to ``as_of``, the rule's params, a trace.

    ``source`` must provide ``rows(kind) -> list[dict]`` (sorted by ``t``, epoch seconds),
    ``first_event(kind|None) -> float|None`` and ``open_findings() -> dict[rule_id, info]``.
    """

    def __init__(self, source: Any, as_of: datetime, definitions: Mapping[str, Compiled] | None = None):
        self.source = source
        self.as_of = as_of
        self.as_ts = as_of.timestamp()
        self.definitions = dict(definitions or {})
        self.params: Mapping[str, Any] = {}
        self.lets: dict[str, Any] = {}
        self.trace: dict[str, dict[str, Any]] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._index: dict[str, dict[str, dict[str, Any]]] = {}
        self._defs: dict[str, Any] = {}
        self._def_trace: dict[str, dict[str, dict[str, Any]]] = {}
        self.used_definitions: dict[str, Any] = {}

    def rows(self, kind: str) -> list[dict[str, Any]]:
        cached = self._rows.get(kind)
        if cached is None:
            rows = self.source.rows(kind)
            cut = bisect_right(rows, self.as_ts, key=lambda r: r["t"])
            cached = self._rows[kind] = rows[:cut]
        return cached

    def lookup(self, kind: str, key: str) -> dict[str, Any] | None:
        index = self._index.get(kind)
        if index is None:
            index = self._index[kind] = {r["k"]: r for r in self.rows(kind)}
        return index.get(key)

    def definition(self, name: str) -> Any:
        """A shared definition: evaluated once per context; its inputs are added to every rule's trace."""
        if name not in self._defs:
            saved, self.trace = self.trace, {}
            try:
                self._defs[name] = self.definitions[name].evaluate(self)
            finally:
                self._def_trace[name], self.trace = self.trace, saved
        for key, entry in self._def_trace[name].items():
            self.trace.setdefault(f"{name}: {key}", entry)
        self.used_definitions[name] = self._defs[name]
        return self._defs[name]

    def start_rule(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.lets = {}
        self.trace = {}
        self.used_definitions = {}

    def record(self, expr: str, entry: dict[str, Any]) -> None:
        self.trace.setdefault(expr, entry)


# --------------------------------------------------------------------------------------------
# Compiled nodes
# --------------------------------------------------------------------------------------------
class Node:
    typ: Any = ANY
    src: str = ""

    def ev(self, ctx: EvalContext) -> Any:  # scalar nodes
        raise NotImplementedError


class SeriesNode(Node):
    """Element-wise node: ``val(row, kind, ctx)`` for a row of the primary kind."""

    typ: SeriesT

    def val(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        raise NotImplementedError

    def show(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        return self.val(row, kind, ctx)

    def ev(self, ctx: EvalContext) -> Any:  # pragma: no cover - guarded by type checks
        raise ExprError("a series needs an aggregate such as latest(...)")


class Const(Node):
    def __init__(self, value: Any, typ: Any):
        self.value, self.typ = value, typ

    def ev(self, ctx: EvalContext) -> Any:
        return self.value


class ParamRef(Node):
    def __init__(self, name: str, typ: Any):
        self.name, self.typ = name, typ

    def ev(self, ctx: EvalContext) -> Any:
        return ctx.params[self.name]


class DefRef(Node):
    def __init__(self, name: str, typ: Any):
        self.name, self.typ = name, typ

    def ev(self, ctx: EvalContext) -> Any:
        return ctx.definition(self.name)


class LetRef(Node):
    def __init__(self, name: str, node: Node):
        self.name, self.node, self.typ = name, node, node.typ

    def ev(self, ctx: EvalContext) -> Any:
        if self.name not in ctx.lets:
            ctx.lets[self.name] = self.node.ev(ctx)
        return ctx.lets[self.name]


class LetSeries(SeriesNode):
    def __init__(self, name: str, node: SeriesNode):
        self.name, self.node, self.typ = name, node, node.typ

    def val(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        return self.node.val(row, kind, ctx)

    def show(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        return self.node.show(row, kind, ctx)


class KindRef(Node):
    def __init__(self, kind: str):
        self.kind, self.typ = kind, KIND

    def ev(self, ctx: EvalContext) -> Any:
        return self.kind


class Field(SeriesNode):
    def __init__(self, kind: str, name: str, elem: str, item: int | None = None):
        self.kind, self.name, self.item = kind, name, item
        self.typ = SeriesT(elem, kind, KINDS[kind].family)

    def val(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        r = row if kind == self.kind else ctx.lookup(self.kind, row["k"])
        if r is None:
            return None
        if self.item is not None:
            return r["items"][self.item - 1]
        return r.get(self.name)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_CMP: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if b else None,
}


def _compare(op: Callable[[Any, Any], bool], a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return bool(op(a, b))


def _arith(op: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    return op(a, b)


def _sval(node: Node, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
    return node.val(row, kind, ctx) if isinstance(node, SeriesNode) else node.ev(ctx)


def _sshow(node: Node, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
    return node.show(row, kind, ctx) if isinstance(node, SeriesNode) else node.ev(ctx)


class Compare(Node):
    def __init__(self, parts: list[Node], ops: list[Callable[[Any, Any], bool]]):
        self.parts, self.ops, self.typ = parts, ops, BOOL

    def ev(self, ctx: EvalContext) -> Any:
        values = [p.ev(ctx) for p in self.parts]
        for op, a, b in zip(self.ops, values, values[1:]):
            if not _compare(op, a, b):
                return False
        return True


class SeriesCompare(SeriesNode):
    def __init__(self, parts: list[Node], ops: list[Callable[[Any, Any], bool]], typ: SeriesT):
        self.parts, self.ops, self.typ = parts, ops, typ

    def val(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        values = [_sval(p, row, kind, ctx) for p in self.parts]
        if any(v is None for v in values):
            return None
        return all(op(a, b) for op, a, b in zip(self.ops, values, values[1:]))

    def show(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        return _sshow(self.parts[0], row, kind, ctx)


class BoolOp(Node):
    def __init__(self, is_and: bool, parts: list[Node]):
        self.is_and, self.parts, self.typ = is_and, parts, BOOL

    def ev(self, ctx: EvalContext) -> Any:
        # every operand is evaluated (no short circuit) so evidence shows all inputs
        values = [p.ev(ctx) is True for p in self.parts]
        return all(values) if self.is_and else any(values)


class SeriesBoolOp(SeriesNode):
    def __init__(self, is_and: bool, parts: list[Node], typ: SeriesT):
        self.is_and, self.parts, self.typ = is_and, parts, typ

    def val(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        values = [_sval(p, row, kind, ctx) for p in self.parts]
        if any(v is None for v in values):
            return None  # rows are joined: a row missing any operand drops out
        return all(values) if self.is_and else any(values)

    def show(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        return _sshow(self.parts[0], row, kind, ctx)


class Not(Node):
    def __init__(self, operand: Node):
        self.operand, self.typ = operand, BOOL

    def ev(self, ctx: EvalContext) -> Any:
        v = self.operand.ev(ctx)
        return None if v is None else not v


class SeriesNot(SeriesNode):
    def __init__(self, operand: SeriesNode):
        self.operand = operand
        self.typ = SeriesT(BOOL, operand.typ.primary, operand.typ.family)

    def val(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        v = self.operand.val(row, kind, ctx)
        return None if v is None else not v

    def show(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        return self.operand.show(row, kind, ctx)


class Neg(Node):
    def __init__(self, operand: Node):
        self.operand, self.typ = operand, NUM

    def ev(self, ctx: EvalContext) -> Any:
        v = self.operand.ev(ctx)
        return None if v is None else -v


class Arith(Node):
    def __init__(self, op: Callable[[Any, Any], Any], left: Node, right: Node):
        self.op, self.left, self.right, self.typ = op, left, right, NUM

    def ev(self, ctx: EvalContext) -> Any:
        return _arith(self.op, self.left.ev(ctx), self.right.ev(ctx))


class SeriesArith(SeriesNode):
    def __init__(self, op: Callable[[Any, Any], Any], left: Node, right: Node, typ: SeriesT):
        self.op, self.left, self.right, self.typ = op, left, right, typ

    def val(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        return _arith(self.op, _sval(self.left, row, kind, ctx), _sval(self.right, row, kind, ctx))


class Attr(Node):
    def __init__(self, obj: Node, name: str, typ: Any):
        self.obj, self.name, self.typ = obj, name, typ

    def ev(self, ctx: EvalContext) -> Any:
        v = self.obj.ev(ctx)
        return None if v is None else v.get(self.name)


class DaysTo(Node):
    """``slope(...).days_to(x)``: days from as_of until the fitted line reaches ``x``."""

    def __init__(self, obj: Node, threshold: Node):
        self.obj, self.threshold, self.typ = obj, threshold, NUM

    def ev(self, ctx: EvalContext) -> Any:
        fit = self.obj.ev(ctx)
        thr = self.threshold.ev(ctx)
        if fit is None or thr is None or not fit.get("estimable"):
            return None
        from processors.metrics import trends

        # projected from the last session (its default anchor), counted from as_of
        crossing = trends.projected_crossing(fit["_result"], thr)
        if crossing is None:
            return None
        if isinstance(crossing, datetime):
            crossing = crossing.date()
        days = (crossing - ctx.as_of.date()).days
        ctx.record(self.src, {"value": days, "crossing_date": crossing.isoformat(), "threshold": thr})
        return days


class Call(Node):
    def __init__(self, name: str, impl: Callable[..., Any], args: list[Node], kwargs: dict[str, Node], typ: Any):
        self.name, self.impl, self.args, self.kwargs, self.typ = name, impl, args, kwargs, typ

    def ev(self, ctx: EvalContext) -> Any:
        return self.impl(self, ctx)


class ListConst(Node):
    def __init__(self, items: list[Node]):
        self.items, self.typ = items, LIST

    def ev(self, ctx: EvalContext) -> Any:
        return tuple(i.ev(ctx) for i in self.items)


# --------------------------------------------------------------------------------------------
# Function implementations
# --------------------------------------------------------------------------------------------
def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 3)
    return v


def _kw(call: Call, name: str, ctx: EvalContext, default: Any = None) -> Any:
    node = call.kwargs.get(name)
    return default if node is None else node.ev(ctx)


def _select(call: Call, ctx: EvalContext, series: SeriesNode, *, default_last: int | None = None
            ) -> tuple[list[tuple[dict[str, Any], Any]], dict[str, Any]]:
    """Rows of the series' primary kind in the call's window, newest last, with their values.

    Window keywords: ``nights``/``sessions``/``last`` = the last N rows that have a value;
    ``days`` = rows in (as_of - days, as_of]; ``valid_only`` (default true) drops invalid nights and
    unusable sessions; ``where`` = a yes/no series a row must satisfy.
    """
    kind = series.typ.primary
    rows = ctx.rows(kind)
    last = None
    for key in ("nights", "sessions", "last"):
        if key in call.kwargs:
            last = _kw(call, key, ctx)
    if last is None:
        last = default_last
    days = _kw(call, "days", ctx)
    valid_only = _kw(call, "valid_only", ctx, True)
    where: SeriesNode | None = call.kwargs.get("where")  # type: ignore[assignment]
    start = 0
    if days is not None:
        start = bisect_left(rows, ctx.as_ts - float(days) * DAY_S + 1e-6, key=lambda r: r["t"])
    picked: list[tuple[dict[str, Any], Any]] = []
    for row in reversed(rows[start:]):
        if valid_only and not row.get("ok", True):
            continue
        if where is not None and where.val(row, kind, ctx) is not True:
            continue
        v = series.val(row, kind, ctx)
        if v is None:
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
        window["from"] = _iso(ctx.as_ts - float(days) * DAY_S)
    window["to"] = ctx.as_of.isoformat()
    window["valid_only"] = bool(valid_only)
    if where is not None:
        window["where"] = where.src
    return picked, window


def _points(series: SeriesNode, picked: list[tuple[dict[str, Any], Any]], kind: str, ctx: EvalContext,
            flags: bool = False) -> dict[str, Any]:
    tail = picked[-MAX_POINTS:]
    pts = []
    for row, v in tail:
        p: dict[str, Any] = {"date": row["d"], "value": _round(series.show(row, kind, ctx))}
        if flags:
            p["flag"] = v
        pts.append(p)
    out: dict[str, Any] = {"n": len(picked), "points": pts}
    if picked:
        out["first_date"], out["last_date"] = picked[0][0]["d"], picked[-1][0]["d"]
    return out


def _agg(reduce: Callable[[list[Any]], Any], flags: bool = False) -> Callable[[Call, EvalContext], Any]:
    def impl(call: Call, ctx: EvalContext) -> Any:
        series: SeriesNode = call.args[0]  # type: ignore[assignment]
        picked, window = _select(call, ctx, series)
        min_n = int(_kw(call, "min_n", ctx, 0 if flags else 1))
        values = [v for _, v in picked]
        result = reduce(values) if len(values) >= max(min_n, 0 if flags else 1) else None
        ctx.record(call.src, {"value": _round(result), "window": window,
                              **_points(series, picked, series.typ.primary, ctx, flags)})
        return result

    return impl


def _latest(call: Call, ctx: EvalContext) -> Any:
    series: SeriesNode = call.args[0]  # type: ignore[assignment]
    picked, window = _select(call, ctx, series, default_last=1)
    value = picked[-1][1] if picked else None
    entry: dict[str, Any] = {"value": _round(value), "window": window}
    if picked:
        row = picked[-1][0]
        entry["date"] = row["d"]
        shown = series.show(row, series.typ.primary, ctx)
        if shown != value:
            entry["shown"] = _round(shown)
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
        series: SeriesNode = target  # type: ignore[assignment]
        picked, _ = _select(call, ctx, series, default_last=1)
        ts = picked[-1][0]["t"] if picked else None
        date_s = picked[-1][0]["d"] if picked else None
    value = _days_between(ctx, ts)
    ctx.record(call.src, {"value": value, "last_date": date_s, "as_of": ctx.as_of.isoformat()})
    return value


def _days_since_first(call: Call, ctx: EvalContext) -> Any:
    target = call.args[0]
    kind = target.kind if isinstance(target, KindRef) else target.typ.primary  # type: ignore[union-attr]
    ts = ctx.source.first_event(kind)
    if ts is not None and ts > ctx.as_ts:
        ts = None
    value = _days_between(ctx, ts)
    ctx.record(call.src, {"value": value, "first": None if ts is None else _iso(ts)})
    return value


def _days_monitored(call: Call, ctx: EvalContext) -> Any:
    ts = ctx.source.first_event(None)
    if ts is not None and ts > ctx.as_ts:
        ts = None
    value = _days_between(ctx, ts)
    ctx.record(call.src, {"value": value, "first": None if ts is None else _iso(ts)})
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
    from processors.metrics import trends

    series: SeriesNode = call.args[0]  # type: ignore[assignment]
    days = _kw(call, "days", ctx, 180)
    min_n = int(_kw(call, "min_n", ctx, 3))
    min_span = _kw(call, "min_span_days", ctx, 60)
    if "days" not in call.kwargs:  # window ends at as_of, like every other window
        call = Call(call.name, call.impl, call.args, {**call.kwargs, "days": Const(days, NUM)}, call.typ)
    picked, window = _select(call, ctx, series)
    points = [(datetime.fromtimestamp(r["t"], tz=timezone.utc), float(v)) for r, v in picked]
    res = trends.fvc_slope(points, window_days=days, min_sessions=min_n, min_span_days=min_span)
    out = {
        "per_month": _round(getattr(res, "slope_per_month", None)),
        "intercept": _round(getattr(res, "intercept_now", None)),
        "n": getattr(res, "n", None),
        "span_days": _round(getattr(res, "span_days", None)),
        "estimable": bool(getattr(res, "estimable", False)),
        "reason": getattr(res, "reason", None),
        "_result": res,
    }
    if not out["estimable"]:
        out["per_month"] = None
    ctx.record(call.src, {"value": {k: v for k, v in out.items() if not k.startswith("_")},
                          "window": window, **_points(series, picked, series.typ.primary, ctx)})
    return out


def _deviation(call: Call, ctx: EvalContext) -> Any:
    from processors.metrics import trends

    series: SeriesNode = call.args[0]  # type: ignore[assignment]
    recent = _kw(call, "recent", ctx, 5)
    baseline = _kw(call, "baseline", ctx, 90)
    kwargs = {k: v for k, v in call.kwargs.items() if k not in ("recent", "baseline")}
    sub = Call(call.name, call.impl, call.args, {**kwargs, "days": Const(recent + baseline + 2, NUM)}, call.typ)
    picked, window = _select(sub, ctx, series)
    hist = [(date.fromisoformat(r["d"][:10]), float(v)) for r, v in picked]
    res = trends.baseline_deviation(hist, recent_days=recent, baseline_days=baseline, as_of=_as_of_day(ctx))
    b, r = getattr(res, "baseline_median", None), getattr(res, "recent_median", None)
    out = {
        "pct": _round(getattr(res, "pct_change", None)),
        "delta": _round(None if b is None or r is None else r - b),
        "baseline": _round(b),
        "recent": _round(r),
        "n_baseline": getattr(res, "n_baseline", 0),
        "n_recent": getattr(res, "n_recent", 0),
    }
    recent_pts = [p for p in picked if p[0]["t"] > ctx.as_ts - float(recent) * DAY_S]
    ctx.record(call.src, {"value": out, "window": {**window, "recent_days": recent, "baseline_days": baseline},
                          **_points(series, recent_pts, series.typ.primary, ctx)})
    return out


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
    "latest": FuncSpec("series", WINDOW_KW, "elem", _latest, "value of the most recent row with a value"),
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
    "coalesce": FuncSpec("scalars", {}, ANY, _coalesce, "first argument that is not missing"),
    "missing": FuncSpec("scalar", {}, BOOL, _missing, "yes when the value is missing"),
    "abs": FuncSpec("scalar", {}, NUM, _abs, "absolute value"),
}
_SCALAR_MINMAX = {"min": _scalar_minmax(min), "max": _scalar_minmax(max)}

SLOPE_ATTRS = {"per_month": NUM, "intercept": NUM, "n": NUM, "span_days": NUM, "estimable": BOOL}
DEV_ATTRS = {"pct": NUM, "delta": NUM, "baseline": NUM, "recent": NUM, "n_baseline": NUM, "n_recent": NUM}


# --------------------------------------------------------------------------------------------
# Compiler
# --------------------------------------------------------------------------------------------
@dataclass
class Scope:
    """Names an expression may use: the rule's params, let names and the rule set's definitions."""

    params: Mapping[str, Any]
    lets: Mapping[str, Node]
    definitions: Mapping[str, Any]
    """name -> static type"""
    allow_params: bool = True


_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Call, ast.Attribute, ast.Name, ast.Load,
    ast.Constant, ast.keyword, ast.Tuple, ast.List, *_CMP.keys(),
)


@dataclass
class Compiled:
    """A checked expression: its source, static type and evaluator."""

    source: str
    node: Node

    @property
    def typ(self) -> Any:
        return self.node.typ

    def evaluate(self, ctx: EvalContext) -> Any:
        if isinstance(self.node, SeriesNode):
            return None
        return self.node.ev(ctx)


def _param_type(value: Any) -> Any:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUM
    if isinstance(value, str):
        return STR
    if isinstance(value, list):
        return LIST
    raise ExprError(f"param value {value!r} must be a number, yes/no, text or list")


class _Compiler:
    def __init__(self, source: str, scope: Scope):
        self.source, self.scope = source, scope

    def seg(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ast.unparse(node)

    def fail(self, msg: str) -> ExprError:
        return ExprError(msg)

    def compile(self, node: ast.AST) -> Node:
        if not isinstance(node, _ALLOWED):
            raise self.fail(f"'{self.seg(node)}' uses {type(node).__name__}, which rules may not use")
        out = self._compile(node)
        out.src = self.seg(node)
        return out

    # -- dispatch
    def _compile(self, node: ast.AST) -> Node:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                return Const(v, BOOL)
            if isinstance(v, (int, float)):
                return Const(v, NUM)
            if isinstance(v, str):
                return Const(v, STR)
            if v is None:
                raise self.fail("None is not allowed: use missing(x) to test for a missing value")
            raise self.fail(f"constant {v!r} is not allowed")
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [self.compile(e) for e in node.elts]
            if not all(isinstance(i, Const) for i in items):
                raise self.fail(f"'{self.seg(node)}': a list may hold only constants")
            return ListConst(items)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.UnaryOp):
            operand = self.compile(node.operand)
            if isinstance(node.op, ast.Not):
                self._need_bool(operand, node.operand, "not")
                return SeriesNot(operand) if isinstance(operand, SeriesNode) else Not(operand)  # type: ignore[arg-type]
            if isinstance(operand, SeriesNode):
                raise self.fail(f"'{self.seg(node)}': unary minus on a series is not supported")
            self._need(operand, NUM, node.operand)
            return operand if isinstance(node.op, ast.UAdd) else Neg(operand)
        if isinstance(node, ast.BinOp):
            left, right = self.compile(node.left), self.compile(node.right)
            for part, n in ((left, node.left), (right, node.right)):
                self._need_elem(part, NUM, n)
            op = _ARITH[type(node.op)]
            st = self._series_type([left, right], node, NUM)
            return SeriesArith(op, left, right, st) if st else Arith(op, left, right)
        if isinstance(node, ast.BoolOp):
            parts = [self.compile(v) for v in node.values]
            for part, n in zip(parts, node.values):
                self._need_bool(part, n, "and" if isinstance(node.op, ast.And) else "or")
            is_and = isinstance(node.op, ast.And)
            st = self._series_type(parts, node, BOOL)
            return SeriesBoolOp(is_and, parts, st) if st else BoolOp(is_and, parts)
        if isinstance(node, ast.Compare):
            parts = [self.compile(node.left)] + [self.compile(c) for c in node.comparators]
            asts = [node.left, *node.comparators]
            ops = []
            for i, op in enumerate(node.ops):
                a, b = parts[i], parts[i + 1]
                ta, tb = self._elem(a), self._elem(b)
                if isinstance(op, (ast.In, ast.NotIn)):
                    if b.typ != LIST:
                        raise self.fail(f"'{self.seg(node)}': 'in' needs a list such as (\"D\", \"E\")")
                elif ANY not in (ta, tb) and ta != tb:
                    raise self.fail(f"'{self.seg(node)}': cannot compare {ta} with {tb}")
                elif isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) and ta not in (NUM, ANY):
                    raise self.fail(f"'{self.seg(node)}': '<'/'>' need numbers, got {ta}")
                ops.append(_CMP[type(op)])
            for p, n in zip(parts, asts):
                if p.typ in (KIND, SLOPE, DEV):
                    raise self.fail(f"'{self.seg(n)}' is a {p.typ}; compare one of its values instead")
            st = self._series_type(parts, node, BOOL)
            return SeriesCompare(parts, ops, st) if st else Compare(parts, ops)
        raise self.fail(f"'{self.seg(node)}' is not allowed")  # pragma: no cover

    # -- helpers
    def _elem(self, n: Node) -> Any:
        return n.typ.elem if isinstance(n.typ, SeriesT) else n.typ

    def _need(self, n: Node, t: str, a: ast.AST) -> None:
        if n.typ not in (t, ANY):
            raise self.fail(f"'{self.seg(a)}' must be {t}, it is {_tname(n.typ)}")

    def _need_elem(self, n: Node, t: str, a: ast.AST) -> None:
        if self._elem(n) not in (t, ANY):
            raise self.fail(f"'{self.seg(a)}' must be {t}, it is {_tname(n.typ)}")

    def _need_bool(self, n: Node, a: ast.AST, what: str) -> None:
        if self._elem(n) not in (BOOL, ANY):
            raise self.fail(f"'{self.seg(a)}' is {_tname(n.typ)}, '{what}' needs yes/no")

    def _series_type(self, parts: list[Node], node: ast.AST, elem: str) -> SeriesT | None:
        series = [p for p in parts if isinstance(p, SeriesNode)]
        if not series:
            return None
        families = {p.typ.family for p in series}
        if len(families) > 1:
            raise self.fail(f"'{self.seg(node)}' mixes series that cannot be matched row by row "
                            f"({', '.join(sorted(families))})")
        return SeriesT(elem, series[0].typ.primary, series[0].typ.family)

    def _name(self, node: ast.Name) -> Node:
        name = node.id
        if name in self.scope.lets:
            target = self.scope.lets[name]
            return LetSeries(name, target) if isinstance(target, SeriesNode) else LetRef(name, target)
        if name in self.scope.definitions:
            return DefRef(name, self.scope.definitions[name])
        if name in KINDS:
            return KindRef(name)
        if name == "params":
            raise self.fail("'params' needs a name: params.<name>")
        if name in ("true", "false"):
            raise self.fail(f"unknown name '{name}' (write True or False)")
        raise self.fail(f"unknown name '{name}'" + self._known_names())

    def _known_names(self) -> str:
        known = sorted({*self.scope.lets, *self.scope.definitions, *KINDS, "params"})
        return f" (known: {', '.join(known)})"

    def _attribute(self, node: ast.Attribute) -> Node:
        base = node.value
        if isinstance(base, ast.Name) and base.id == "params":
            if not self.scope.allow_params:
                raise self.fail("definitions cannot use params; write the number in the definition")
            if node.attr not in self.scope.params:
                known = ", ".join(sorted(self.scope.params)) or "none"
                raise self.fail(f"unknown param '{node.attr}' (params of this rule: {known})")
            return ParamRef(node.attr, _param_type(self.scope.params[node.attr]))
        if isinstance(base, ast.Name) and base.id in KINDS and base.id not in self.scope.lets:
            spec = KINDS[base.id]
            if node.attr not in spec.fields:
                extra = " and item(n)" if base.id == "alsfrs" else ""
                raise self.fail(f"unknown field '{base.id}.{node.attr}' (fields: "
                                f"{', '.join(sorted(spec.fields))}{extra})")
            return Field(base.id, node.attr, spec.fields[node.attr])
        obj = self.compile(base)
        attrs = SLOPE_ATTRS if obj.typ == SLOPE else DEV_ATTRS if obj.typ == DEV else None
        if attrs is None:
            raise self.fail(f"'{self.seg(node)}': {_tname(obj.typ)} has no attribute '{node.attr}'")
        if node.attr not in attrs:
            raise self.fail(f"'{self.seg(node)}': unknown attribute '{node.attr}' of a {obj.typ} "
                            f"(known: {', '.join(sorted(attrs))})")
        return Attr(obj, node.attr, attrs[node.attr])

    def _call(self, node: ast.Call) -> Node:
        func = node.func
        if isinstance(func, ast.Attribute):
            return self._method(node, func)
        if not isinstance(func, ast.Name):
            raise self.fail(f"'{self.seg(node)}': only named functions may be called")
        name = func.id
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise self.fail(f"unknown function '{name}' (functions: {', '.join(sorted(FUNCTIONS))})")
        args = [self.compile(a) for a in node.args]
        kwargs: dict[str, Node] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail(f"'{self.seg(node)}': **kwargs are not allowed")
            kwargs[kw.arg] = self.compile(kw.value)
        label = f"{name}()"
        kind = spec.args
        if kind == "num_series_or_scalars" and not (args and isinstance(args[0], SeriesNode)):
            if kwargs:
                raise self.fail(f"{label} of plain values takes no keywords")
            if len(args) < 2:
                raise self.fail(f"{label} needs a series or at least two values")
            for a, n in zip(args, node.args):
                self._need(a, NUM, n)
            return Call(name, _SCALAR_MINMAX[name], args, {}, NUM)
        if kind in ("series", "bool_series", "num_series", "num_series_or_scalars"):
            if len(args) != 1 or not isinstance(args[0], SeriesNode):
                raise self.fail(f"{label} needs exactly one series argument, such as oxi.t90_pct")
            elem = args[0].typ.elem
            if kind == "bool_series" and elem != BOOL:
                raise self.fail(f"{label} needs a yes/no series such as 'oxi.t90_pct > 10', got {args[0].typ}")
            if kind in ("num_series", "num_series_or_scalars") and elem != NUM:
                raise self.fail(f"{label} needs a series of numbers, got {args[0].typ}")
        elif kind == "kind_or_series":
            if len(args) != 1 or not (isinstance(args[0], (KindRef, SeriesNode))):
                raise self.fail(f"{label} needs a record kind ({', '.join(KINDS)}) or a series")
            if isinstance(args[0], KindRef) and kwargs:
                raise self.fail(f"{label} of a record kind takes no keywords")
        elif kind == "text":
            if len(args) != 1 or not isinstance(args[0], Const) or args[0].typ != STR:
                raise self.fail(f"{label} needs a quoted rule id or category")
        elif kind == "none":
            if args:
                raise self.fail(f"{label} takes no arguments")
        elif kind in ("scalar", "scalars"):
            if not args or (kind == "scalar" and len(args) != 1):
                raise self.fail(f"{label} needs {'one value' if kind == 'scalar' else 'values'}")
            for a, n in zip(args, node.args):
                if not _scalar(a.typ):
                    raise self.fail(f"{label}: '{self.seg(n)}' is {_tname(a.typ)}, not a single value")
        for key, value in kwargs.items():
            if key not in spec.kwargs:
                allowed = ", ".join(sorted(spec.kwargs)) or "none"
                raise self.fail(f"{label}: unknown keyword '{key}' (allowed: {allowed})")
            want = spec.kwargs[key]
            kw_ast = next(k.value for k in node.keywords if k.arg == key)
            if want == "where":
                if not isinstance(value, SeriesNode) or value.typ.elem != BOOL:
                    raise self.fail(f"{label}: where= needs a yes/no series such as 'niv.usage_hours >= 4'")
                if args and isinstance(args[0], SeriesNode) and value.typ.family != args[0].typ.family:
                    raise self.fail(f"{label}: where= series cannot be matched row by row with the first argument")
            else:
                if isinstance(value, SeriesNode):
                    raise self.fail(f"{label}: {key}= must be a single value, not a series")
                self._need(value, want, kw_ast)
        if spec.result == "elem":
            result = args[0].typ.elem  # type: ignore[union-attr]
        else:
            result = spec.result
        if kind == "scalars":
            types = {a.typ for a in args} - {ANY}
            result = types.pop() if len(types) == 1 else ANY
        return Call(name, spec.impl, args, kwargs, result)

    def _method(self, node: ast.Call, func: ast.Attribute) -> Node:
        base = func.value
        if isinstance(base, ast.Name) and base.id == "alsfrs" and base.id not in self.scope.lets:
            if func.attr != "item":
                raise self.fail(f"unknown method 'alsfrs.{func.attr}' (use alsfrs.item(n))")
            if (len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Constant)
                    or not isinstance(node.args[0].value, int) or not 1 <= node.args[0].value <= 12):
                raise self.fail("alsfrs.item(n) needs a whole number 1-12")
            n = node.args[0].value
            return Field("alsfrs", f"item{n}", NUM, item=n)
        obj = self.compile(base)
        if obj.typ == SLOPE and func.attr == "days_to":
            if len(node.args) != 1 or node.keywords:
                raise self.fail("days_to(x) needs one value: the level whose crossing is projected")
            thr = self.compile(node.args[0])
            self._need(thr, NUM, node.args[0])
            return DaysTo(obj, thr)
        raise self.fail(f"'{self.seg(node)}': unknown method '{func.attr}'")


def compile_expr(source: str, scope: Scope) -> Compiled:
    """Parse and type-check one expression; raises :class:`ExprError` with a readable message."""
    if not isinstance(source, str) or not source.strip():
        raise ExprError("expression is empty")
    text = " ".join(source.split())  # YAML folded blocks: newlines are just spaces
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise ExprError(f"syntax error{col}: {exc.msg}") from None
    node = _Compiler(text, scope).compile(tree.body)
    return Compiled(text, node)
