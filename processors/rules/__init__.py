"""Guideline rules engine: versioned YAML rules over a patient's own history -> findings.

See ``processors/rules/README.md`` for the rule file format and expression grammar.
"""

from processors.rules.engine import Verdict, evaluate, transition
from processors.rules.evaluator import findings_to_jsonl, replay, step, tick
from processors.rules.history import PatientHistory, event_time
from processors.rules.loader import DEFAULT_RULES, Rule, RulesError, RuleSet, load_rules

__all__ = [
    "DEFAULT_RULES",
    "PatientHistory",
    "Rule",
    "RuleSet",
    "RulesError",
    "Verdict",
    "evaluate",
    "event_time",
    "findings_to_jsonl",
    "load_rules",
    "replay",
    "step",
    "tick",
    "transition",
]
