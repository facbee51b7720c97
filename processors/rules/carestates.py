"""What a patient's care state silences, from the `care_states:` section of the rules file.

A state is in effect at an evaluation when the team set it for that time (``PatientHistory.care_state_at``,
fed by ``schemas.CareStateChange``) or when its `when` condition holds on the data (ALSFRS-R item 12 = 0
is invasive ventilation even before the team says so). A rule silenced by a state in effect does not
apply: it never opens, and an open finding of it resolves at once as ``no_longer_applies``. The state
lists what it silences (`all`, categories, rule ids) and what of that still speaks (`keeps`, which a site
may change); a rule may also name the states it keeps speaking in (`keeps_speaking_when`: safety rules).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from processors.rules.expr import BOOL, Compiled, EvalContext, ExprError, Scope, SeriesNode, compile_expr
from processors.rules.rulefile import CareStateSpec
from schemas.carestate import NO_STATE
from schemas.findings import CATEGORIES

__all__ = ["ALL", "CareStateError", "CareStateRule", "compile_care_states", "in_effect", "silencing"]

ALL = "all"
LEFT_SERVICE = "left_service"
"""Silences everything: nothing may keep speaking in it."""


class CareStateError(ValueError):
    """A `care_states` entry that cannot be used; `field` is its path below `care_states.<state>`."""

    def __init__(self, state: str, field: str, message: str) -> None:
        super().__init__(message)
        self.field = f"care_states.{state}.{field}"


@dataclass(frozen=True)
class CareStateRule:
    """One state as the engine uses it."""

    name: str
    silences: frozenset[str]
    keeps: frozenset[str]
    when: Compiled | None = None

    def catches(self, targets: frozenset[str], rule_id: str, category: str) -> bool:
        return bool(targets & {ALL, rule_id, category})


def compile_care_states(specs: Mapping[str, CareStateSpec], rule_ids: Collection[str],
                        definitions: Mapping[str, Any]) -> dict[str, CareStateRule]:
    """Check every target names a rule or category and compile each `when` (definitions, no params)."""
    known = {ALL, *CATEGORIES, *rule_ids}
    out = {}
    for name, spec in specs.items():
        for fld in ("silences", "keeps"):
            unknown = [t for t in getattr(spec, fld) if t not in known]
            if unknown:
                raise CareStateError(name, fld, f"unknown rule id or category {unknown[0]!r} (or write 'all')")
        if name == LEFT_SERVICE and spec.keeps:
            raise CareStateError(name, "keeps", "left_service silences everything: it keeps nothing")
        out[name] = CareStateRule(name, frozenset(spec.silences), frozenset(spec.keeps),
                                  None if spec.when is None else _condition(name, spec.when, definitions))
    return out


def _condition(name: str, source: str, definitions: Mapping[str, Any]) -> Compiled:
    try:
        compiled = compile_expr(source, Scope({}, {}, definitions, allow_params=False))
    except ExprError as exc:
        raise CareStateError(name, "when", str(exc)) from None
    if isinstance(compiled.node, SeriesNode) or compiled.typ not in (BOOL, "any"):
        raise CareStateError(name, "when", "must be a yes/no condition (use latest(...), count(...))")
    return compiled


def silencing(rule_id: str, category: str, keeps_speaking_when: Collection[str],
              states: Mapping[str, CareStateRule]) -> frozenset[str]:
    """The care states that silence this rule."""
    if LEFT_SERVICE in keeps_speaking_when:
        raise ValueError("left_service silences everything: no rule keeps speaking in it")
    return frozenset(name for name, state in states.items()
                     if state.catches(state.silences, rule_id, category)
                     and not state.catches(state.keeps, rule_id, category) and name not in keeps_speaking_when)


def in_effect(ctx: EvalContext, states: Mapping[str, CareStateRule]) -> dict[str, dict[str, Any]]:
    """The states in effect at the context's as_of, and how each is known: the team's (`set_by`, `since`)
    or what the data show (`shown_by`: the condition). What silenced a rule goes into its evidence."""
    out: dict[str, dict[str, Any]] = {}
    entry = ctx.source.care_state_at(ctx.as_ts)
    if entry is not None and entry["state"] != NO_STATE:
        out[entry["state"]] = {"set_by": entry["set_by"], "since": entry["since"]}
    for name, state in states.items():
        if state.when is not None and name not in out:
            ctx.start_rule({})
            if state.when.evaluate(ctx) is True:
                out[name] = {"shown_by": state.when.source}
    return out
