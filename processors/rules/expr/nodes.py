"""Compiled expression nodes: plain objects that evaluate against an :class:`EvalContext`.

A scalar node answers ``ev(ctx)``; a :class:`SeriesNode` answers ``val(row, kind, ctx)`` per row of its
primary kind, for an aggregate (``count``, ``latest``, ...) to reduce. Missing is ``None``: arithmetic
with it is missing, a comparison with it is no.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any

from processors.rules.expr.context import EvalContext
from processors.rules.expr.errors import ExprError
from processors.rules.expr.kinds import KINDS
from processors.rules.expr.types import ANY, BOOL, KIND, LIST, NUM, SeriesT

__all__ = [
    "ARITHMETIC",
    "COMPARISONS",
    "Arith",
    "Attr",
    "BoolOp",
    "Call",
    "Compare",
    "Const",
    "DaysTo",
    "DefRef",
    "Field",
    "KindRef",
    "LetRef",
    "LetSeries",
    "ListConst",
    "Neg",
    "Node",
    "Not",
    "ParamRef",
    "SeriesArith",
    "SeriesBoolOp",
    "SeriesCompare",
    "SeriesNode",
    "SeriesNot",
]


RowFn = Callable[[dict[str, Any], EvalContext], Any]
"""A series node's value for one row, as a closure: ``fn(row, ctx)`` is ``node.val(row, kind, ctx)``."""


class Node:
    typ: Any = ANY
    src: str = ""
    pure: bool = False
    """Evaluating it has no effect (no trace, no let or definition cached) and cannot fail: a row function
    may then skip it once an operand is missing, and the result is the same."""

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

    def row_fn(self, kind: str) -> RowFn:
        """``val`` for rows of `kind` as one closure, built once per node and kind: an aggregate calls it for
        every row of its window, and the closures skip the method dispatch and temporary lists of ``val``
        (rules 0.2.0 spent most of an event there). Same values as ``val``, row for row."""
        fns: dict[str, RowFn] | None = self.__dict__.get("_row_fns")
        if fns is None:
            fns = self.__dict__["_row_fns"] = {}
        fn = fns.get(kind)
        if fn is None:
            fn = fns[kind] = self._row_fn(kind)
        return fn

    def _row_fn(self, kind: str) -> RowFn:
        val = self.val
        return lambda row, ctx: val(row, kind, ctx)

    def needs(self) -> frozenset[tuple[str, str]]:
        """(kind, field) pairs the value is missing without, row for row: a row whose field is missing (or,
        for another kind's field, that has no row of that kind on its key) has a missing value."""
        return frozenset()

    @property
    def missing_without(self) -> frozenset[tuple[str, str]]:
        """:meth:`needs` of a pure series (empty for another: its evaluation must not be skipped), worked out
        once. A window whose rows all lack one of them picks nothing, whatever the rows (`select_rows`)."""
        known: frozenset[tuple[str, str]] | None = self.__dict__.get("_missing_without")
        if known is None:
            known = self.__dict__["_missing_without"] = self.needs() if self.pure else frozenset()
        return known


def _needs(parts: list[Node]) -> frozenset[tuple[str, str]]:
    """What an element-wise node missing when any of its operands is missing needs: what each series needs."""
    return frozenset().union(*(p.needs() for p in parts if isinstance(p, SeriesNode)))


class Const(Node):
    pure = True

    def __init__(self, value: Any, typ: Any):
        self.value, self.typ = value, typ

    def ev(self, ctx: EvalContext) -> Any:
        return self.value


class ParamRef(Node):
    pure = True  # the compiler checked the name is a param of the rule

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

    @property
    def pure(self) -> bool:  # type: ignore[override]
        return self.node.pure

    def _row_fn(self, kind: str) -> RowFn:
        return self.node.row_fn(kind)

    def needs(self) -> frozenset[tuple[str, str]]:
        return self.node.needs()


class KindRef(Node):
    pure = True

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

    @property
    def pure(self) -> bool:  # type: ignore[override]
        return self.item is None  # an item index could fail on a short list: evaluated as val does

    def needs(self) -> frozenset[tuple[str, str]]:
        return frozenset() if self.item is not None else frozenset({(self.kind, self.name)})

    def _row_fn(self, kind: str) -> RowFn:
        name, other = self.name, self.kind
        if self.item is not None:
            return super()._row_fn(kind)
        if kind == other:
            return lambda row, ctx: row.get(name)

        def joined(row: dict[str, Any], ctx: EvalContext) -> Any:
            r = ctx.lookup(other, row["k"])
            return None if r is None else r.get(name)

        return joined


COMPARISONS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
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


def _operand_fn(node: Node, kind: str) -> RowFn:
    """What `_sval` gives for a row, as a closure (a constant is returned as is)."""
    if isinstance(node, SeriesNode):
        return node.row_fn(kind)
    if isinstance(node, Const):
        value = node.value
        return lambda row, ctx: value
    ev = node.ev
    return lambda row, ctx: ev(ctx)


def _all_pure(nodes: list[Node]) -> bool:
    return all(n.pure for n in nodes)


class Compare(Node):
    def __init__(self, parts: list[Node], ops: list[Callable[[Any, Any], bool]]):
        self.parts, self.ops, self.typ = parts, ops, BOOL

    def ev(self, ctx: EvalContext) -> Any:
        parts = self.parts
        if len(parts) == 2:  # the common case without the lists: both sides evaluated, as below
            a, b = parts[0].ev(ctx), parts[1].ev(ctx)
            return a is not None and b is not None and bool(self.ops[0](a, b))
        values = [p.ev(ctx) for p in parts]
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

    @property
    def pure(self) -> bool:  # type: ignore[override]
        return _all_pure(self.parts)

    def needs(self) -> frozenset[tuple[str, str]]:
        return _needs(self.parts)  # any operand missing: missing (val, and every row function below)

    def _row_fn(self, kind: str) -> RowFn:
        if len(self.parts) != 2:
            return super()._row_fn(kind)
        fa, fb = (_operand_fn(p, kind) for p in self.parts)
        op = self.ops[0]
        first, second = self.parts
        if isinstance(first, Field) and first.item is None and first.kind == kind and isinstance(second, ParamRef):
            # the commonest window condition (`niv.usage_hours >= params.min_use_hours`) in one call per row
            name, param = first.name, second.name

            def field_param(row: dict[str, Any], ctx: EvalContext) -> Any:
                a = row.get(name)
                if a is None:
                    return None
                b = ctx.params[param]
                return None if b is None else bool(op(a, b))

            return field_param
        if isinstance(first, Field) and first.item is None and first.kind == kind and isinstance(second, Const):
            name, b = first.name, second.value

            def field_const(row: dict[str, Any], ctx: EvalContext) -> Any:
                a = row.get(name)
                return None if a is None or b is None else bool(op(a, b))

            return field_const
        if self.pure:
            def short(row: dict[str, Any], ctx: EvalContext) -> Any:
                a = fa(row, ctx)
                if a is None:
                    return None
                b = fb(row, ctx)
                return None if b is None else bool(op(a, b))  # all() of the one comparison

            return short

        def both(row: dict[str, Any], ctx: EvalContext) -> Any:
            a, b = fa(row, ctx), fb(row, ctx)
            return None if a is None or b is None else bool(op(a, b))

        return both

    def show(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        return _sshow(self.parts[0], row, kind, ctx)


class BoolOp(Node):
    def __init__(self, is_and: bool, parts: list[Node]):
        self.is_and, self.parts, self.typ = is_and, parts, BOOL

    def ev(self, ctx: EvalContext) -> Any:
        # every operand is evaluated (no short circuit) so evidence shows all inputs, and an operand that
        # fails fails the evaluation whatever the others are
        found = not self.is_and  # `or` holds once an operand is yes, `and` fails once one is not
        result = self.is_and
        for p in self.parts:
            if (p.ev(ctx) is True) is found:
                result = found
        return result


class SeriesBoolOp(SeriesNode):
    def __init__(self, is_and: bool, parts: list[Node], typ: SeriesT):
        self.is_and, self.parts, self.typ = is_and, parts, typ

    def val(self, row: dict[str, Any], kind: str, ctx: EvalContext) -> Any:
        values = [_sval(p, row, kind, ctx) for p in self.parts]
        if any(v is None for v in values):
            return None  # rows are joined: a row missing any operand drops out
        return all(values) if self.is_and else any(values)

    @property
    def pure(self) -> bool:  # type: ignore[override]
        return _all_pure(self.parts)

    def needs(self) -> frozenset[tuple[str, str]]:
        return _needs(self.parts)  # a row missing any operand drops out (val, and both row functions)

    def _row_fn(self, kind: str) -> RowFn:
        fns = [_operand_fn(p, kind) for p in self.parts]
        reduce = all if self.is_and else any
        if self.pure:
            def short(row: dict[str, Any], ctx: EvalContext) -> Any:
                values = []
                for fn in fns:
                    v = fn(row, ctx)
                    if v is None:
                        return None  # missing whatever the other operands are: they need not be read
                    values.append(v)
                return reduce(values)

            return short

        def every(row: dict[str, Any], ctx: EvalContext) -> Any:
            values = [fn(row, ctx) for fn in fns]
            return None if any(v is None for v in values) else reduce(values)

        return every

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

    @property
    def pure(self) -> bool:  # type: ignore[override]
        return self.operand.pure

    def needs(self) -> frozenset[tuple[str, str]]:
        return self.operand.needs()

    def _row_fn(self, kind: str) -> RowFn:
        fn = self.operand.row_fn(kind)

        def negated(row: dict[str, Any], ctx: EvalContext) -> Any:
            v = fn(row, ctx)
            return None if v is None else not v

        return negated

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

    def _row_fn(self, kind: str) -> RowFn:
        # not pure: division by zero is missing, but an operation on mismatched values may fail as in val
        fl, fr, op = _operand_fn(self.left, kind), _operand_fn(self.right, kind), self.op
        return lambda row, ctx: _arith(op, fl(row, ctx), fr(row, ctx))


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
        if ctx.tracing:
            ctx.record(self.src, {"value": days, "crossing_date": crossing.isoformat(), "threshold": thr})
        return days


WindowNodes = tuple[tuple[Node, ...], Node | None, Node | None, Node | None]
"""A call's window keywords: (nights/sessions/last given, days, valid_only, where)."""


class Call(Node):
    def __init__(self, name: str, impl: Callable[..., Any], args: list[Node], kwargs: dict[str, Node], typ: Any):
        self.name, self.impl, self.args, self.kwargs, self.typ = name, impl, args, kwargs, typ
        # looked up once here rather than by name on every evaluation (`window.select_rows`)
        self.window: WindowNodes = (tuple(kwargs[k] for k in ("nights", "sessions", "last") if k in kwargs),
                                    kwargs.get("days"), kwargs.get("valid_only"), kwargs.get("where"))
        self._shared: SharedKey | None = None
        self._shared_known = False  # `_shared` is worked out on the first evaluation (`shared_key`)

    def ev(self, ctx: EvalContext) -> Any:
        if ctx.tracing:  # the reference path: every call evaluated, its inputs recorded
            return self.impl(self, ctx)
        if not self._shared_known:
            self._shared, self._shared_known = shared_key(self), True
        shared = self._shared
        if shared is None:
            return self.impl(self, ctx)
        shape, names = shared
        key = (shape, *(_frozen(ctx.params[n]) for n in names)) if names else shape
        values = ctx.values
        value = values.get(key, _UNSET)
        if value is _UNSET:
            value = values[key] = self.impl(self, ctx)
        return value


class ListConst(Node):
    def __init__(self, items: list[Node]):
        self.items, self.typ = items, LIST

    def ev(self, ctx: EvalContext) -> Any:
        return tuple(i.ev(ctx) for i in self.items)


# ------------------------------------------------------------------------ calls shared by rules
SharedKey = tuple[int, tuple[str, ...]]
"""A call's shape (an id standing for its structure) and the params it reads, in order."""
_UNSET: Any = object()
_SHAPES: dict[Hashable, int] = {}
_SHAPE_IDS = itertools.count()


def shared_key(call: Call) -> SharedKey | None:
    """What a call's value depends on in one evaluation context: its structure (the function, its arguments and
    keywords, node by node: the same call written in two rules is one) and the values of the params it reads.
    Rules of one evaluation share such calls' values when the context does not trace (`Call.ev`): ~60 calls
    an event, many the same (`latest(alsfrs.item(12))` five times). None: a node whose value this does not
    know to depend on nothing else (none today); such a call is evaluated every time."""
    params: list[str] = []
    shape = _shape(call, params)
    if shape is None:
        return None
    return _SHAPES.setdefault(shape, next(_SHAPE_IDS)), tuple(dict.fromkeys(params))


def _shape(node: Node, params: list[str]) -> Hashable | None:
    """A node's structure as a hashable value; the names of the params it reads are appended to `params`."""
    own: Hashable = None
    kids: list[Node] = []
    if isinstance(node, Const):
        own = (type(node.value), node.value)  # 1, 1.0 and True are equal keys, not equal constants
    elif isinstance(node, ParamRef):
        params.append(node.name)
        own = node.name
    elif isinstance(node, DefRef):
        own = node.name  # one value per context
    elif isinstance(node, KindRef):
        own = node.kind
    elif isinstance(node, Field):
        own = (node.kind, node.name, node.item)
    elif isinstance(node, (LetRef, LetSeries)):
        kids = [node.node]  # its rule's expression, whatever the let is called
    elif isinstance(node, (Compare, SeriesCompare)):
        own, kids = tuple(node.ops), node.parts
    elif isinstance(node, (BoolOp, SeriesBoolOp)):
        own, kids = node.is_and, node.parts
    elif isinstance(node, (Not, SeriesNot, Neg)):
        kids = [node.operand]
    elif isinstance(node, (Arith, SeriesArith)):
        own, kids = node.op, [node.left, node.right]
    elif isinstance(node, Attr):
        own, kids = node.name, [node.obj]
    elif isinstance(node, DaysTo):
        kids = [node.obj, node.threshold]
    elif isinstance(node, Call):
        names = tuple(sorted(node.kwargs))
        own, kids = (node.name, node.impl, names), [*node.args, *(node.kwargs[k] for k in names)]
    elif isinstance(node, ListConst):
        kids = node.items
    else:
        return None
    shapes = []
    for kid in kids:
        shape = _shape(kid, params)
        if shape is None:
            return None
        shapes.append(shape)
    return type(node), node.typ, own, tuple(shapes)


def _frozen(value: Any) -> Hashable:
    """A param value as part of a key: lists (`bad_grades`) as tuples, and typed (True is not 1)."""
    return type(value), tuple(value) if isinstance(value, list) else value
