"""How far back each record kind's rows must reach for a rule set: the check behind `history.keep_days`.

A patient's history is the faust table value the worker reads and writes back to the changelog for
every event, so its length is paid per event and held in memory per patient. The rules file declares
how many days of rows to keep per kind (`history.keep_days`); this module reads every compiled
expression and finds the longest window each kind is read over, so the loader can refuse a rule set
whose windows reach past what is kept (a site override that lengthens `baseline_days`, say).

What counts as a window, per aggregate call:

* ``days=D`` -> D days; ``slope`` without ``days`` -> its default 180; ``deviation(recent, baseline)``
  -> recent + baseline + 2, as it selects them;
* ``nights=N`` / ``last=N`` on nightly kinds (oxi, niv) -> N days (at most one row per night);
* ``sessions=N`` on spirometry and unwindowed aggregates (``latest(x)``, ``n(x)``) have no bound in
  days: they read whatever the kept history holds, which the rules README says.

Kinds read inside the call (a ``where`` on another kind, a joined series) need the same window.

The count bound (`history.keep_max_per_kind`) is checked the same way with :func:`row_needs`: a
counted window (``nights=N``, ``sessions=N``, ``last=N``) reads N rows of its kind, and a window of D
days over a nightly kind reads D + 1 rows of one source (one row per night; a noon-to-noon night
straddles the start). A ``where`` filter may read further back than N rows, and sessions have no bound
per day: both read only what is kept, which the rules README says.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from processors.rules.expr import Call, Compiled, Field, LetRef, LetSeries, Node
from processors.rules.rows import VIEWS
from schemas.kinds import RECORD_KINDS

__all__ = ["STORE_OF", "Need", "RowNeed", "needs", "row_needs"]

STORE_OF = {name: view.store for name, view in VIEWS.items()}
"""Expression kind -> history store (supine sessions are kept with spirometry)."""
_NIGHTLY = {k.store for k in RECORD_KINDS if k.family == "night"}
"""Stores of one row per night and source."""
_COUNT_KW = ("nights", "last", "sessions")


@dataclass(frozen=True)
class Need:
    """A window of `days` over a history store, and the expression that reads it (for the error)."""

    store: str
    days: float
    expression: str


@dataclass(frozen=True)
class RowNeed:
    """`rows` rows of a history store, and the expression that reads them (for the error)."""

    store: str
    rows: int
    expression: str


class _Params:
    """Stands in for the evaluation context: window arguments are constants or params only."""

    def __init__(self, params: Mapping[str, Any]):
        self.params = params


def _children(node: Any) -> Iterator[Node]:
    for value in vars(node).values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else (value,)
        for item in items:
            if isinstance(item, Node):
                yield item


def _walk(node: Node, into_lets: bool = True) -> Iterator[Node]:
    yield node
    if into_lets or not isinstance(node, (LetRef, LetSeries)):
        for child in _children(node):
            yield from _walk(child, into_lets)


def _kw(call: Call, name: str, params: _Params) -> float | None:
    node = call.kwargs.get(name)
    # _Params stands in for EvalContext: a window argument is a constant or a param, which read only .params
    return None if node is None else float(node.ev(params))  # type: ignore[arg-type]


def _window_days(call: Call, kind: str, params: _Params) -> float | None:
    """Days the call reads back from as_of, or None when it has no bound in days."""
    if call.name == "deviation":
        return (_kw(call, "recent", params) or 5) + (_kw(call, "baseline", params) or 90) + 2
    days = _kw(call, "days", params)
    if call.name == "slope" and days is None:
        days = 180.0
    if days is not None:
        return days
    counts = [c for c in (_kw(call, k, params) for k in _COUNT_KW) if c is not None]
    if counts and kind in _NIGHTLY:
        return max(counts)
    return None


def _kinds(node: Node) -> set[str]:
    return {STORE_OF[n.kind] for n in _walk(node) if isinstance(n, Field) and n.kind in STORE_OF}


def needs(compiled: Compiled, params: Mapping[str, Any]) -> list[Need]:
    """Every bounded window the expression reads, one per kind it reads inside that window (a `let`
    it names is checked as its own field)."""
    out: list[Need] = []
    ctx = _Params(params)
    for node in _walk(compiled.node, into_lets=False):
        if not isinstance(node, Call) or not node.args:
            continue
        primary = getattr(node.args[0].typ, "primary", None)
        if primary not in STORE_OF:
            continue
        days = _window_days(node, STORE_OF[primary], ctx)
        if days is None:
            continue
        for store in _kinds(node) | {STORE_OF[primary]}:
            out.append(Need(store, days, getattr(node, "src", compiled.source)))
    return out


def _rows_read(call: Call, store: str, primary: str, params: _Params) -> int | None:
    """Rows of `store` the call reads at least, or None when no count bounds them."""
    counts = [c for c in (_kw(call, k, params) for k in _COUNT_KW) if c is not None]
    if counts and store == primary:
        return math.ceil(max(counts))
    days = _window_days(call, primary, params)
    if days is not None and store in _NIGHTLY:
        return math.ceil(days) + 1
    return None


def row_needs(compiled: Compiled, params: Mapping[str, Any]) -> list[RowNeed]:
    """Every count of rows the expression reads per kind: what `history.keep_max_per_kind` must keep."""
    out: list[RowNeed] = []
    ctx = _Params(params)
    for node in _walk(compiled.node, into_lets=False):
        if not isinstance(node, Call) or not node.args:
            continue
        primary = getattr(node.args[0].typ, "primary", None)
        if primary not in STORE_OF:
            continue
        for store in _kinds(node) | {STORE_OF[primary]}:
            rows = _rows_read(node, store, STORE_OF[primary], ctx)
            if rows is not None:
                out.append(RowNeed(store, rows, getattr(node, "src", compiled.source)))
    return out
