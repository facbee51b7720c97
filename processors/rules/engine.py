"""Evaluate a rule set against one patient's history, and turn verdicts into finding transitions.

Nothing here reads the wall clock: ``as_of`` / ``at`` are always passed in, so replaying the same
records gives the same findings.

Hysteresis (a rule's ``resolve_after``): an open finding is resolved, or lowered to a milder severity,
only once its condition has been clear (or milder) for that many evaluations and days; a worse severity
opens at once, and a rule whose ``applies`` turned false resolves at once (``no_longer_applies``: the
care state changed, the value did not return to normal). The stream and the offline evaluator share
this code, so they flap (or not) alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from processors.rules.carestates import in_effect
from processors.rules.expr import EvalContext, round_value
from processors.rules.history import PatientHistory
from processors.rules.loader import ResolveAfter, Rule, RuleSet
from processors.rules.rulefile import IMMEDIATE
from schemas.findings import SEVERITY_ORDER, Finding, FindingState

__all__ = ["CONDITION_CLEARED", "NO_LONGER_APPLIES", "Verdict", "evaluate", "evaluate_changes", "evaluate_rule",
           "transition"]

CONDITION_CLEARED = "condition_cleared"
"""A resolved finding's `resolution` when its value returned to normal (for `resolve_after`)."""
NO_LONGER_APPLIES = "no_longer_applies"
"""A resolved finding's `resolution` when the rule's `applies` turned false (NIV started, say)."""


@dataclass(frozen=True)
class Verdict:
    """One rule's result for one patient at ``as_of``. ``severity`` is None when the rule does not hold."""

    rule_id: str
    rule_version: str
    category: str
    severity: str | None
    holds: bool
    evidence: dict[str, Any]
    action: str
    citation: str
    title: str = ""
    as_of: datetime | None = field(default=None, compare=False)
    applies: bool = True
    """False when the rule's `applies` precondition does not hold (then `holds` is False too)."""
    fresh: bool = False
    """Evaluated on a new record of a kind the rule's condition reads (counts toward `resolve_after`)."""
    resolve_after: ResolveAfter = IMMEDIATE


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, float):
        return round_value(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def evaluate_rule(rule: Rule, ctx: EvalContext, wants_evidence: Callable[[str, str | None], bool] | None = None,
                  fresh: str | None = None, states: Mapping[str, Any] | None = None) -> Verdict:
    """Evaluate one rule in an evaluation context (shared by all rules of one evaluation).

    `wants_evidence(rule_id, severity)` may say the evidence will not be used (the verdict changes
    nothing): it is then left empty, which saves most of the cost of a rule that does not fire.
    `fresh` is the history store of the record that triggered this evaluation (None for a tick). `states`:
    the care states in effect (`carestates.in_effect`); one that silences the rule makes it not apply."""
    verdict = _evaluate_rule(rule, ctx, wants_evidence, fresh, states or {}, None)
    assert verdict is not None  # only a rule that is quiet among open findings has none
    return verdict


UNTRACED = True
"""Decide a verdict whose evidence may not be wanted without a trace, and trace it only when it is; False
traces every rule (the reference path the tests compare it with: same findings, same evidence)."""
Outcome = tuple[bool, bool, str | None, str]
"""A rule's (applies, holds, severity, action)."""


def _evaluate_rule(rule: Rule, ctx: EvalContext, wants_evidence: Callable[[str, str | None], bool] | None,
                   fresh: str | None, states: Mapping[str, Any], open_: Mapping[str, Any] | None) -> Verdict | None:
    """:func:`evaluate_rule`; with the open findings `open_`, None for a rule that neither holds nor has one.

    With `wants_evidence` the rule is decided without a trace (its inputs are not recorded: most of the cost
    of an evaluation), and evaluated again with one only when its evidence is wanted: evaluation does not
    depend on tracing, so both passes decide alike (the tracing pass is the reference)."""
    silenced = {name: how for name, how in states.items() if name in rule.silenced_by} if states else {}
    traced = wants_evidence is None or not UNTRACED
    outcome = _outcome(rule, ctx, silenced) if traced else _untraced_outcome(rule, ctx, silenced)
    if open_ is not None and not outcome[1] and rule.id not in open_:
        return None  # `transition` passes over it: no finding to open or to resolve
    verdict = _verdict(rule, ctx, outcome, fresh)
    if wants_evidence is not None and not wants_evidence(rule.id, outcome[2]):
        return verdict
    if not traced:
        _outcome(rule, ctx, silenced)  # the same decision again, recording the inputs its evidence shows
    values: dict[str, Any] = {}
    for name, compiled in rule.lets:
        if name in ctx.lets:
            values[name] = ctx.lets[name]
    for name, compiled in rule.evidence:
        values[name] = compiled.evaluate(ctx)
    values.update(ctx.used_definitions)
    evidence: dict[str, Any] = {
        "as_of": ctx.as_of.isoformat(),
        "condition": rule.when.source,
        "params": dict(rule.params),
        "values": _jsonable(values),
        "inputs": _jsonable(ctx.trace),
    }
    if rule.applies is not None or silenced:
        evidence["applies"] = {"condition": rule.applies.source if rule.applies else None, "value": verdict.applies,
                               **({"care_state": silenced} if silenced else {})}
    return replace(verdict, evidence=evidence)


def _outcome(rule: Rule, ctx: EvalContext, silenced: Mapping[str, Any]) -> Outcome:
    """Whether the rule applies and holds, its severity and action, in a fresh rule scope of the context."""
    ctx.start_rule(rule.params)
    applies = not silenced and (rule.applies is None or rule.applies.evaluate(ctx) is True)
    holds = False
    severity: str | None = None
    action = rule.action
    if applies:
        holds = rule.when.evaluate(ctx) is True
    if holds:
        severity = next((t.level for t in rule.tiers if t.when is None or t.when.evaluate(ctx) is True),
                        rule.tiers[-1].level)
        extra = [text for cond, text in rule.advice if cond.evaluate(ctx) is True]
        if extra:
            action = " ".join([action, *extra])
    return applies, holds, severity, action


def _untraced_outcome(rule: Rule, ctx: EvalContext, silenced: Mapping[str, Any]) -> Outcome:
    """:func:`_outcome` with the context's tracing off (nothing recorded), then back as it was."""
    traced, ctx.tracing = ctx.tracing, False
    try:
        return _outcome(rule, ctx, silenced)
    finally:
        ctx.tracing = traced


def _verdict(rule: Rule, ctx: EvalContext, outcome: Outcome, fresh: str | None) -> Verdict:
    applies, holds, severity, action = outcome
    return Verdict(rule_id=rule.id, rule_version=rule.version, category=rule.category, severity=severity,
                   holds=holds, evidence={}, action=action, citation=rule.citation, title=rule.title,
                   as_of=ctx.as_of, applies=applies, fresh=fresh in rule.reads, resolve_after=rule.resolve_after)


def evaluate(rules: RuleSet, history: PatientHistory, as_of: datetime, *, changes_only: bool = False,
             fresh: str | None = None) -> list[Verdict]:
    """Evaluate every enabled rule for one patient as of ``as_of`` (timezone-aware).

    With `changes_only`, evidence is built only for verdicts that `transition` may turn into a finding
    (a rule that starts holding, changes severity or stops holding); the others carry none. `fresh` is
    the store of the new record evaluated (None: a tick, time passing)."""
    return _evaluate(rules, history, as_of, changes_only=changes_only, fresh=fresh, quiet=True)


def evaluate_changes(rules: RuleSet, history: PatientHistory, as_of: datetime, *,
                     fresh: str | None = None) -> list[Verdict]:
    """What :func:`transition` acts on: ``evaluate(changes_only=True)`` without the verdicts of rules that
    neither hold nor have an open finding (most rules, most evaluations), which it passes over."""
    return _evaluate(rules, history, as_of, changes_only=True, fresh=fresh, quiet=False)


def _evaluate(rules: RuleSet, history: PatientHistory, as_of: datetime, *, changes_only: bool, fresh: str | None,
              quiet: bool) -> list[Verdict]:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    ctx = EvalContext(history, as_of, rules.definitions)
    open_ = history.open

    def changes(rule_id: str, severity: str | None) -> bool:
        previous = open_.get(rule_id)
        return (previous["severity"] if previous else None) != severity

    wants = changes if changes_only else None
    ctx.tracing = False  # what the states' conditions read is no rule's evidence
    states = in_effect(ctx, rules.care_states)
    ctx.tracing = True
    out = [_evaluate_rule(rule, ctx, wants, fresh, states, None if quiet else open_) for rule in rules.enabled()]
    return [v for v in out if v is not None]


def transition(
    history: PatientHistory,
    verdicts: Iterable[Verdict],
    at: datetime,
    *,
    upload_id: str | None = None,
    received_at: datetime | None = None,
) -> list[Finding]:
    """Compare verdicts with the history's open findings and emit what changed.

    * rule starts holding -> ``open`` finding (change ``opened``);
    * severity rises while holding -> ``open`` at the new level at once (``worsened``);
    * severity falls, or the condition clears -> nothing until it has stayed so for the rule's
      ``resolve_after``; then ``open`` at the highest milder level seen meanwhile (``improved``) or
      ``resolved`` (resolution ``condition_cleared``, at the severity it had);
    * the rule's ``applies`` turns false -> ``resolved`` at once (resolution ``no_longer_applies``);
    * same state -> nothing.

    The history's open set is updated (its entries keep the pending dwell). Open findings of rules
    absent from ``verdicts`` (e.g. a rule disabled by a site) are left as they are.
    """
    out: list[Finding] = []
    for v in verdicts:
        change = _change(history.open, v, at)
        if change is None:
            continue
        state, severity, extra = change
        out.append(Finding(
            patient_id=history.patient_id, rule_id=v.rule_id, rule_version=v.rule_version, category=v.category,
            severity=severity, state=state, at=at, evidence={**v.evidence, **extra}, action=v.action,
            citation=v.citation, upload_id=upload_id, received_at=received_at,
        ))
    return out


Change = tuple[FindingState, str, dict[str, Any]]
"""(finding state, severity, what the evidence adds: change, previous severity, resolution...)."""


def _change(open_: dict[str, dict[str, Any]], v: Verdict, at: datetime) -> Change | None:
    """One rule's transition, applied to the open set."""
    prev = open_.get(v.rule_id)
    level = v.severity if v.holds else None
    if prev is None:
        if level is None:
            return None
        open_[v.rule_id] = _entry(v, level, at.isoformat(), at)
        return "open", level, {"change": "opened"}
    if not v.applies:
        return _resolve(open_, v.rule_id, NO_LONGER_APPLIES, at)
    if level is not None and SEVERITY_ORDER[level] >= SEVERITY_ORDER[prev["severity"]]:
        prev.pop("pending", None)  # back at (or above) the open level: any dwell starts again
        if level == prev["severity"]:
            return None
        open_[v.rule_id] = _entry(v, level, prev["opened_at"], at)
        return "open", level, {"change": "worsened", "previous_severity": prev["severity"]}
    pending = prev["pending"] = _dwell(prev.get("pending"), level, v.fresh, at)
    if _served(pending["clear"], v.resolve_after, at):
        return _resolve(open_, v.rule_id, CONDITION_CLEARED, at)
    if pending["level"] is not None and _served(pending["lower"], v.resolve_after, at):
        open_[v.rule_id] = _entry(v, pending["level"], prev["opened_at"], at)
        if pending["clear"] is not None:  # the clear run goes on counting toward resolution
            open_[v.rule_id]["pending"] = {"lower": pending["clear"], "level": None, "clear": pending["clear"]}
        return "open", pending["level"], {"change": "improved", "previous_severity": prev["severity"]}
    return None


def _entry(v: Verdict, severity: str, opened_at: str, at: datetime) -> dict[str, Any]:
    return {"severity": severity, "category": v.category, "opened_at": opened_at, "changed_at": at.isoformat(),
            "rule_version": v.rule_version}


def _resolve(open_: dict[str, dict[str, Any]], rule_id: str, resolution: str, at: datetime) -> Change:
    prev = open_.pop(rule_id)
    extra = {"change": "resolved", "opened_at": prev["opened_at"], "resolution": resolution}
    pending = prev.get("pending") or {}
    if resolution == CONDITION_CLEARED and pending.get("clear"):
        extra["clear_since"] = pending["clear"]["since"]
    return "resolved", prev["severity"], extra


def _dwell(pending: dict[str, Any] | None, level: str | None, fresh: bool, at: datetime) -> dict[str, Any]:
    """The dwell after one more evaluation below the open level: the run below it (`lower`, with the
    highest `level` seen in it, None = clear throughout) and the run of clear evaluations (`clear`)."""
    if pending is None:
        pending = {"lower": None, "level": None, "clear": None}
    lower = _run(pending["lower"], fresh, at)
    if level is None:
        return {"lower": lower, "level": pending["level"], "clear": _run(pending["clear"], fresh, at)}
    worst = level if pending["level"] is None else max(level, pending["level"], key=SEVERITY_ORDER.__getitem__)
    return {"lower": lower, "level": worst, "clear": None}


def _run(run: dict[str, Any] | None, fresh: bool, at: datetime) -> dict[str, Any]:
    """A run of evaluations: its first evaluation counts, later ones count when they bring a new record."""
    if run is None:
        return {"since": at.isoformat(), "count": 1}
    return {"since": run["since"], "count": run["count"] + int(fresh)}


def _served(run: dict[str, Any] | None, dwell: ResolveAfter, at: datetime) -> bool:
    """True when the run has lasted the rule's `resolve_after` (both figures)."""
    if run is None:
        return False
    lasted = at - datetime.fromisoformat(run["since"])
    return run["count"] >= dwell.evaluations and lasted >= timedelta(days=dwell.days)
