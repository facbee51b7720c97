"""What an expression evaluates against: one patient's rows cut at ``as_of``, and a trace of inputs."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processors.rules.expr.compiler import Compiled

__all__ = ["EvalContext"]


class EvalContext:
    """What an expression sees: one patient's rows up to ``as_of``, the rule's params, a trace.

    ``source`` must provide ``rows(kind) -> list[dict]`` (sorted by ``t``, epoch seconds),
    ``first_event(kind|None) -> float|None``, ``open_findings() -> dict[rule_id, info]`` and
    ``care_state_at(ts) -> dict|None``.
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
        self._newest: dict[tuple[str, str], int] = {}
        self._defs: dict[str, Any] = {}
        self._def_trace: dict[str, dict[str, dict[str, Any]]] = {}
        self.used_definitions: dict[str, Any] = {}
        self.values: dict[Any, Any] = {}
        """Values of calls shared by the rules of this context, when it does not trace (`nodes.Call.ev`)."""
        self.tracing = True
        """False: only values are computed (no trace, no used definitions): what a verdict that will carry
        no evidence needs. Evaluation is otherwise the same, so the values (and any error) are too."""

    def rows(self, kind: str) -> list[dict[str, Any]]:
        cached = self._rows.get(kind)
        if cached is None:
            rows = self.source.rows(kind)
            cut = bisect_right(rows, self.as_ts, key=lambda r: r["t"])
            cached = self._rows[kind] = rows[:cut]
        return cached

    def newest_with(self, kind: str, field: str) -> int:
        """Index of the newest row of `kind` that has `field` (not missing); -1 when none has."""
        key = (kind, field)
        found = self._newest.get(key)
        if found is None:
            rows = self.rows(kind)
            found = len(rows) - 1
            while found >= 0 and rows[found].get(field) is None:
                found -= 1
            self._newest[key] = found
        return found

    def lookup(self, kind: str, key: str) -> dict[str, Any] | None:
        index = self._index.get(kind)
        if index is None:
            index = self._index[kind] = {r["k"]: r for r in self.rows(kind)}
        return index.get(key)

    def definition(self, name: str) -> Any:
        """A shared definition: evaluated once per context; its inputs are added to every rule's trace.

        Without tracing the value alone is kept; the first traced use evaluates it again for its inputs
        (the same value: evaluation does not depend on tracing)."""
        if not self.tracing:
            if name not in self._defs:
                self._defs[name] = self.definitions[name].evaluate(self)
            return self._defs[name]
        if name not in self._def_trace:
            saved, self.trace = self.trace, {}
            try:
                value = self.definitions[name].evaluate(self)
            finally:
                trace, self.trace = self.trace, saved
            self._def_trace[name] = trace
            self._defs.setdefault(name, value)
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
        if self.tracing:
            self.trace.setdefault(expr, entry)

