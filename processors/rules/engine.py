"""Evaluate a rule set against one patient's history, and turn verdicts into finding transitions.

Nothing here reads the wall clock: ``as_of`` / ``at`` are always passed in, so replaying the same
records gives the same findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from processors.rules.expr import EvalContext, round_value
from processors.rules.history import PatientHistory
from processors.rules.loader import Rule, RuleSet
from schemas.findings import SEVERITY_ORDER, Finding

__all__ = ["Verdict", "evaluate", "evaluate_rule", "transition"]


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


def evaluate_rule(rule: Rule, ctx: EvalContext, wants_evidence: Callable[[str, str | None], bool] | None = None
                  ) -> Verdict:
    """Evaluate one rule in an evaluation context (shared by all rules of one evaluation).

    `wants_evidence(rule_id, severity)` may say the evidence will not be used (the verdict changes
    nothing): it is then left empty, which saves most of the cost of a rule that does not fire."""
    ctx.start_rule(rule.params)
    applies = True if rule.applies is None else rule.applies.evaluate(ctx) is True
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
    if wants_evidence is not None and not wants_evidence(rule.id, severity):
        return Verdict(rule_id=rule.id, rule_version=rule.version, category=rule.category, severity=severity,
                       holds=holds, evidence={}, action=action, citation=rule.citation, title=rule.title,
                       as_of=ctx.as_of)
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
    if rule.applies is not None:
        evidence["applies"] = {"condition": rule.applies.source, "value": applies}
    return Verdict(
        rule_id=rule.id, rule_version=rule.version, category=rule.category, severity=severity, holds=holds,
        evidence=evidence, action=action, citation=rule.citation, title=rule.title, as_of=ctx.as_of,
    )


def evaluate(rules: RuleSet, history: PatientHistory, as_of: datetime, *, changes_only: bool = False
             ) -> list[Verdict]:
    """Evaluate every enabled rule for one patient as of ``as_of`` (timezone-aware).

    With `changes_only`, evidence is built only for verdicts that `transition` turns into a finding
    (a rule that starts holding, changes severity or stops holding); the others carry none."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    ctx = EvalContext(history, as_of, rules.definitions)

    def changes(rule_id: str, severity: str | None) -> bool:
        previous = history.open.get(rule_id)
        return (previous["severity"] if previous else None) != severity

    wants = changes if changes_only else None
    return [evaluate_rule(rule, ctx, wants) for rule in rules.enabled()]


def transition(
    history: PatientHistory,
    verdicts: Iterable[Verdict],
    at: datetime,
    *,
    upload_id: str | None = None,
    received_at: datetime | None = None,
) -> list[Finding]:
    """Compare verdicts with the history's open findings and emit what changed.

    * rule starts holding -> ``open`` finding;
    * severity changes while holding (worse or better) -> new ``open`` finding at the new level;
    * open rule stops holding -> ``resolved`` finding (at the severity it had);
    * same state -> nothing.

    The history's open set is updated. Open findings of rules absent from ``verdicts`` (e.g. a rule
    disabled by a site) are left as they are.
    """
    out: list[Finding] = []
    at_iso = at.isoformat()
    for v in verdicts:
        prev = history.open.get(v.rule_id)
        common: dict[str, Any] = {
            "patient_id": history.patient_id, "rule_id": v.rule_id, "rule_version": v.rule_version,
            "category": v.category, "at": at, "action": v.action, "citation": v.citation, "upload_id": upload_id,
            "received_at": received_at,
        }
        if v.holds and v.severity is not None:
            if prev is not None and prev["severity"] == v.severity:
                continue
            evidence = dict(v.evidence)
            if prev is None:
                evidence["change"] = "opened"
                opened_at = at_iso
            else:
                worse = SEVERITY_ORDER[v.severity] > SEVERITY_ORDER[prev["severity"]]
                evidence["change"] = "worsened" if worse else "improved"
                evidence["previous_severity"] = prev["severity"]
                opened_at = prev["opened_at"]
            history.open[v.rule_id] = {
                "severity": v.severity, "category": v.category, "opened_at": opened_at, "changed_at": at_iso,
                "rule_version": v.rule_version,
            }
            out.append(Finding(severity=v.severity, state="open", evidence=evidence, **common))
        elif prev is not None:
            evidence = dict(v.evidence)
            evidence["change"] = "resolved"
            evidence["opened_at"] = prev["opened_at"]
            del history.open[v.rule_id]
            out.append(Finding(severity=prev["severity"], state="resolved", evidence=evidence, **common))
    return out
