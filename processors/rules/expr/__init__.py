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

Modules: :mod:`.types` (static types), :mod:`.kinds` (record kinds and their fields),
:mod:`.context` (what an expression evaluates against), :mod:`.nodes` (compiled nodes),
:mod:`.window` (the rows an aggregate reads), :mod:`.functions` (callable functions),
:mod:`.compiler` (source -> checked nodes), :mod:`.errors`.
"""

from processors.rules.expr.compiler import Compiled, Scope, compile_expr
from processors.rules.expr.context import EvalContext
from processors.rules.expr.errors import ExprError
from processors.rules.expr.functions import FUNCTIONS
from processors.rules.expr.kinds import KINDS, KindSpec
from processors.rules.expr.nodes import Call, Field, LetRef, LetSeries, Node, SeriesNode
from processors.rules.expr.types import ANY, BOOL, LIST, NUM, STR, SeriesT
from processors.rules.expr.window import DAY_S, round_value

__all__ = [
    "ANY",
    "BOOL",
    "DAY_S",
    "FUNCTIONS",
    "KINDS",
    "LIST",
    "NUM",
    "STR",
    "Call",
    "Compiled",
    "EvalContext",
    "ExprError",
    "Field",
    "KindSpec",
    "LetRef",
    "LetSeries",
    "Node",
    "Scope",
    "SeriesNode",
    "SeriesT",
    "compile_expr",
    "round_value",
]
