"""Parse an expression with :mod:`ast`, check every node against a whitelist, type it, build nodes.

Never ``eval``: anything outside the grammar (``processors/rules/README.md``) is refused here, at
load, with a message for the rule author, so a rules file that loads is a rules file that evaluates.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processors.rules.expr.context import EvalContext
from processors.rules.expr.errors import ExprError
from processors.rules.expr.functions import DEV_ATTRS, FUNCTIONS, SCALAR_MINMAX, SLOPE_ATTRS, FuncSpec
from processors.rules.expr.kinds import KINDS
from processors.rules.expr.nodes import (
    ARITHMETIC,
    COMPARISONS,
    Arith,
    Attr,
    BoolOp,
    Call,
    Compare,
    Const,
    DaysTo,
    DefRef,
    Field,
    KindRef,
    LetRef,
    LetSeries,
    ListConst,
    Neg,
    Node,
    Not,
    ParamRef,
    SeriesArith,
    SeriesBoolOp,
    SeriesCompare,
    SeriesNode,
    SeriesNot,
)
from processors.rules.expr.types import (
    ANY,
    BOOL,
    DEV,
    KIND,
    LIST,
    NUM,
    SLOPE,
    STR,
    SeriesT,
    is_scalar,
    param_kind,
    type_name,
)

__all__ = ["Compiled", "Scope", "compile_expr"]


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
    ast.Constant, ast.keyword, ast.Tuple, ast.List, *COMPARISONS.keys(),
)
_SERIES_ARGS = ("series", "bool_series", "num_series", "num_series_or_scalars")


@dataclass
class Compiled:
    """A checked expression: its source, static type and evaluator."""

    source: str
    node: Node

    @property
    def typ(self) -> Any:
        return self.node.typ

    def __post_init__(self) -> None:
        self._series = isinstance(self.node, SeriesNode)  # evaluated per rule and event: checked once

    def evaluate(self, ctx: EvalContext) -> Any:
        if self._series:
            return None
        return self.node.ev(ctx)


def _param_type(value: Any) -> Any:
    kind = param_kind(value)
    if kind == "invalid":
        raise ExprError(f"param value {value!r} must be a number, yes/no, text or list")
    return kind


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
            return self._constant(node)
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
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            return self._arith(node)
        if isinstance(node, ast.BoolOp):
            return self._bool(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        raise self.fail(f"'{self.seg(node)}' is not allowed")  # pragma: no cover

    def _constant(self, node: ast.Constant) -> Node:
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

    def _unary(self, node: ast.UnaryOp) -> Node:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            self._need_bool(operand, node.operand, "not")
            return SeriesNot(operand) if isinstance(operand, SeriesNode) else Not(operand)
        if isinstance(operand, SeriesNode):
            raise self.fail(f"'{self.seg(node)}': unary minus on a series is not supported")
        self._need(operand, NUM, node.operand)
        return operand if isinstance(node.op, ast.UAdd) else Neg(operand)

    def _arith(self, node: ast.BinOp) -> Node:
        left, right = self.compile(node.left), self.compile(node.right)
        for part, n in ((left, node.left), (right, node.right)):
            self._need_elem(part, NUM, n)
        op = ARITHMETIC[type(node.op)]
        st = self._series_type([left, right], node, NUM)
        return SeriesArith(op, left, right, st) if st else Arith(op, left, right)

    def _bool(self, node: ast.BoolOp) -> Node:
        parts = [self.compile(v) for v in node.values]
        for part, n in zip(parts, node.values):
            self._need_bool(part, n, "and" if isinstance(node.op, ast.And) else "or")
        is_and = isinstance(node.op, ast.And)
        st = self._series_type(parts, node, BOOL)
        return SeriesBoolOp(is_and, parts, st) if st else BoolOp(is_and, parts)

    def _compare(self, node: ast.Compare) -> Node:
        parts = [self.compile(node.left)] + [self.compile(c) for c in node.comparators]
        asts = [node.left, *node.comparators]
        ops = []
        for i, op in enumerate(node.ops):
            self._check_comparison(node, op, parts[i], parts[i + 1])
            ops.append(COMPARISONS[type(op)])
        for p, n in zip(parts, asts):
            if p.typ in (KIND, SLOPE, DEV):
                raise self.fail(f"'{self.seg(n)}' is a {p.typ}; compare one of its values instead")
        st = self._series_type(parts, node, BOOL)
        return SeriesCompare(parts, ops, st) if st else Compare(parts, ops)

    def _check_comparison(self, node: ast.Compare, op: ast.cmpop, a: Node, b: Node) -> None:
        ta, tb = self._elem(a), self._elem(b)
        if isinstance(op, (ast.In, ast.NotIn)):
            if b.typ != LIST:
                raise self.fail(f"'{self.seg(node)}': 'in' needs a list such as (\"D\", \"E\")")
        elif ANY not in (ta, tb) and ta != tb:
            raise self.fail(f"'{self.seg(node)}': cannot compare {ta} with {tb}")
        elif isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) and ta not in (NUM, ANY):
            raise self.fail(f"'{self.seg(node)}': '<'/'>' need numbers, got {ta}")

    # -- helpers
    def _elem(self, n: Node) -> Any:
        return n.typ.elem if isinstance(n.typ, SeriesT) else n.typ

    def _need(self, n: Node, t: str, a: ast.AST) -> None:
        if n.typ not in (t, ANY):
            raise self.fail(f"'{self.seg(a)}' must be {t}, it is {type_name(n.typ)}")

    def _need_elem(self, n: Node, t: str, a: ast.AST) -> None:
        if self._elem(n) not in (t, ANY):
            raise self.fail(f"'{self.seg(a)}' must be {t}, it is {type_name(n.typ)}")

    def _need_bool(self, n: Node, a: ast.AST, what: str) -> None:
        if self._elem(n) not in (BOOL, ANY):
            raise self.fail(f"'{self.seg(a)}' is {type_name(n.typ)}, '{what}' needs yes/no")

    def _series_type(self, parts: list[Node], node: ast.AST, elem: str) -> SeriesT | None:
        series = [p for p in parts if isinstance(p, SeriesNode)]
        if not series:
            return None
        families = {p.typ.family for p in series}
        if len(families) > 1:
            raise self.fail(f"'{self.seg(node)}' mixes series that cannot be matched row by row "
                            f"({', '.join(sorted(families))})")
        return SeriesT(elem, series[0].typ.primary, series[0].typ.family)

    # -- names
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
            return self._param(node.attr)
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
            raise self.fail(f"'{self.seg(node)}': {type_name(obj.typ)} has no attribute '{node.attr}'")
        if node.attr not in attrs:
            raise self.fail(f"'{self.seg(node)}': unknown attribute '{node.attr}' of a {obj.typ} "
                            f"(known: {', '.join(sorted(attrs))})")
        return Attr(obj, node.attr, attrs[node.attr])

    def _param(self, name: str) -> Node:
        if not self.scope.allow_params:
            raise self.fail("definitions cannot use params; write the number in the definition")
        if name not in self.scope.params:
            known = ", ".join(sorted(self.scope.params)) or "none"
            raise self.fail(f"unknown param '{name}' (params of this rule: {known})")
        return ParamRef(name, _param_type(self.scope.params[name]))

    # -- calls
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
        if spec.args == "num_series_or_scalars" and not (args and isinstance(args[0], SeriesNode)):
            return self._scalar_minmax(name, label, args, kwargs, node)
        self._check_args(label, spec.args, args, kwargs, node)
        for key, value in kwargs.items():
            self._check_keyword(label, spec, key, value, args, node)
        return Call(name, spec.impl, args, kwargs, self._result_type(spec, args))

    def _scalar_minmax(self, name: str, label: str, args: list[Node], kwargs: dict[str, Node],
                       node: ast.Call) -> Node:
        """``min(a, b, ...)`` / ``max(a, b, ...)`` of plain values rather than of a series."""
        if kwargs:
            raise self.fail(f"{label} of plain values takes no keywords")
        if len(args) < 2:
            raise self.fail(f"{label} needs a series or at least two values")
        for a, n in zip(args, node.args):
            self._need(a, NUM, n)
        return Call(name, SCALAR_MINMAX[name], args, {}, NUM)

    def _check_args(self, label: str, kind: str, args: list[Node], kwargs: dict[str, Node], node: ast.Call) -> None:
        """The positional arguments against the function's argument kind (``FuncSpec.args``)."""
        if kind in _SERIES_ARGS:
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
                if not is_scalar(a.typ):
                    raise self.fail(f"{label}: '{self.seg(n)}' is {type_name(a.typ)}, not a single value")

    def _check_keyword(self, label: str, spec: FuncSpec, key: str, value: Node, args: list[Node],
                       node: ast.Call) -> None:
        if key not in spec.kwargs:
            allowed = ", ".join(sorted(spec.kwargs)) or "none"
            raise self.fail(f"{label}: unknown keyword '{key}' (allowed: {allowed})")
        want = spec.kwargs[key]
        if want == "where":
            if not isinstance(value, SeriesNode) or value.typ.elem != BOOL:
                raise self.fail(f"{label}: where= needs a yes/no series such as 'niv.usage_hours >= 4'")
            if args and isinstance(args[0], SeriesNode) and value.typ.family != args[0].typ.family:
                raise self.fail(f"{label}: where= series cannot be matched row by row with the first argument")
            return
        if isinstance(value, SeriesNode):
            raise self.fail(f"{label}: {key}= must be a single value, not a series")
        self._need(value, want, next(k.value for k in node.keywords if k.arg == key))

    @staticmethod
    def _result_type(spec: FuncSpec, args: list[Node]) -> Any:
        if spec.args == "scalars":
            types = {a.typ for a in args} - {ANY}
            return types.pop() if len(types) == 1 else ANY
        if spec.result == "elem":
            return args[0].typ.elem
        return spec.result

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
