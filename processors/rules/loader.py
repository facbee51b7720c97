"""Load and validate a versioned rules file, optionally with a site override file.

Every check happens here, at load time: the YAML's shape (the pydantic models of
:mod:`processors.rules.rulefile`), a site's changes against the rules they change, every expression
(syntax, names, functions, types) and the history each expression reads. A file that loads is a
file that evaluates. Errors are :class:`RulesError` whose message names the file, the rule and the
field::

    site.yaml: rule NS-FVC50: field 'when': unknown name 'fvc'
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from processors.rules.carestates import CareStateError, CareStateRule, compile_care_states, silencing
from processors.rules.expr import BOOL, Compiled, ExprError, Field, Node, Scope, SeriesNode, compile_expr
from processors.rules.expr.nodes import DefRef, KindRef
from processors.rules.history import KEEP_DAYS, KEEP_MAX_PER_KIND, STORES
from processors.rules.lookback import STORE_OF, needs, row_needs
from processors.rules.rulefile import (
    IMMEDIATE,
    CareStateSpec,
    ResolveAfter,
    RuleChange,
    RulesFile,
    RuleSpec,
    SiteFile,
    SiteHistory,
    TierSpec,
    locate,
    message,
    param_kind,
    tiers_problem,
)
from schemas.findings import SEVERITY_ORDER

__all__ = [
    "DEFAULT_RULES",
    "ResolveAfter",
    "Rule",
    "RuleSet",
    "RulesError",
    "Tier",
    "load_rules",
]

DEFAULT_RULES = Path(__file__).with_name("default.yaml")
_MAX = "keep_max_per_kind"


class RulesError(ValueError):
    """An invalid rules or override file; ``file``, ``rule_id`` and ``field`` locate the problem."""

    def __init__(self, file: str, message: str, rule_id: str | None = None, field: str | None = None):
        self.file, self.rule_id, self.field, self.reason = file, rule_id, field, message
        where = [file]
        if rule_id is not None:
            where.append(f"rule {rule_id}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join([*where, message]))


@dataclass(frozen=True)
class Tier:
    level: str
    when: Compiled | None


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    tiers: tuple[Tier, ...]
    """Highest severity first; exactly one tier has no condition (the level when `when` holds)."""
    when: Compiled
    params: Mapping[str, Any]
    lets: tuple[tuple[str, Compiled], ...]
    evidence: tuple[tuple[str, Compiled], ...]
    action: str
    advice: tuple[tuple[Compiled, str], ...]
    citation: str
    sources: tuple[str, ...]
    applies: Compiled | None = None
    enabled: bool = True
    title: str = ""
    version: str = ""
    resolve_after: ResolveAfter = IMMEDIATE
    """How long the condition must stay clear (or lower) before the finding resolves (or is lowered)."""
    reads: frozenset[str] = frozenset(STORES)
    """History stores its condition and severity tiers read: a new record of one of them is an evaluation
    that counts toward `resolve_after.evaluations` (`applies` is left out: it is the care state)."""
    silenced_by: frozenset[str] = frozenset()
    """Care states in which the rule does not apply (`care_states:` of the file, less `keeps_speaking_when`)."""

    @property
    def severities(self) -> tuple[str, ...]:
        return tuple(t.level for t in self.tiers)


@dataclass
class RuleSet:
    version: str
    rules: list[Rule]
    definitions: dict[str, Compiled] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    keep_days: Mapping[str, int] = field(default_factory=lambda: {s: KEEP_DAYS for s in STORES})
    """Days of rows a patient's history keeps per store (spiro, oxi, niv, alsfrs): `history.keep_days`."""
    keep_max_per_kind: int = KEEP_MAX_PER_KIND
    """Rows a patient's history keeps per store at most (the newest): `history.keep_max_per_kind`."""
    care_states: Mapping[str, CareStateRule] = field(default_factory=dict)
    """What each care state silences, and the condition under which the data show it (`care_states:`)."""

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]

    def get(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]


# ------------------------------------------------------------------------------------------------
# reading and shape
# ------------------------------------------------------------------------------------------------
def _read_yaml(path: Path) -> Any:
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(label, f"cannot read file: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError(label, f"invalid YAML{pos}: {problem}") from None


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], data: Any, label: str) -> _M:
    """The file's data as `model`; its first problem as a one-line error naming the rule and field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        rule_id, fld = locate(first["loc"], data)
        raise RulesError(label, message(first), rule_id, fld) from None


# ------------------------------------------------------------------------------------------------
# the rules file with a site's changes, before compiling
# ------------------------------------------------------------------------------------------------
@dataclass
class _Draft:
    """The rules file with a site's changes applied, and which file set what (for errors)."""

    version: str
    specs: dict[str, RuleSpec]
    definitions: dict[str, str]
    keep_days: dict[str, int]
    keep_max: int
    files: list[str]
    keep_origin: dict[str, str]
    """Retention setting (a store, or keep_max_per_kind) -> the file that set it."""
    resolve_after: dict[str, ResolveAfter]
    """Category -> persistence of its rules that declare none."""
    origins: dict[str, dict[str, str]] = field(default_factory=dict)
    """Rule id -> {field a site changed: the site file}."""
    def_origin: dict[str, str] = field(default_factory=dict)
    """'definitions.<name>' -> the site file that replaced it."""
    care_states: dict[str, CareStateSpec] = field(default_factory=dict)
    state_origin: dict[str, str] = field(default_factory=dict)
    """Care state -> the site file that changed what it keeps."""

    @classmethod
    def of(cls, rules: RulesFile, label: str) -> _Draft:
        keep_days = dict(rules.history.keep_days) if rules.history else {s: KEEP_DAYS for s in STORES}
        keep_max = rules.history.keep_max_per_kind if rules.history else KEEP_MAX_PER_KIND
        return cls(version=rules.version, specs={r.id: r for r in rules.rules},
                   definitions=dict(rules.definitions), keep_days=keep_days, keep_max=keep_max, files=[label],
                   keep_origin={**{s: label for s in keep_days}, _MAX: label},
                   resolve_after=dict(rules.resolve_after), origins={r.id: {} for r in rules.rules},
                   care_states=dict(rules.care_states))

    def apply(self, site: SiteFile, label: str) -> None:
        """A site's version, retention, definitions and rule changes (params, severity, enabled)."""
        self.files.append(label)
        self.version = f"{self.version}+{site.version or 'site'}"
        if site.history is not None:
            self._retention(site.history, label)
        self.resolve_after.update(site.resolve_after)
        for state, kept in site.care_states.items():
            if state not in self.care_states:
                raise RulesError(label, "care state not declared by the rules file", field=f"care_states.{state}")
            self.care_states[state] = self.care_states[state].model_copy(update={"keeps": kept.keeps})
            self.state_origin[state] = label
        for name, source in site.definitions.items():
            if name not in self.definitions:
                raise RulesError(label, f"unknown definition '{name}' (known: {', '.join(self.definitions)})",
                                 field=f"definitions.{name}")
            self.definitions[name] = source
            self.def_origin[f"definitions.{name}"] = label
        for rule_id, change in site.rules.items():
            if rule_id not in self.specs:
                raise RulesError(label, "unknown rule id", rule_id)
            self._change(self.specs[rule_id], change, label)

    def _retention(self, history: SiteHistory, label: str) -> None:
        for store, days in history.keep_days.items():
            if days != self.keep_days[store]:
                self.keep_days[store], self.keep_origin[store] = days, label
        if _MAX in history.model_fields_set and history.keep_max_per_kind != self.keep_max:
            self.keep_max, self.keep_origin[_MAX] = history.keep_max_per_kind, label

    def _change(self, spec: RuleSpec, change: RuleChange, label: str) -> None:
        update: dict[str, Any] = {}
        if "params" in change.model_fields_set:
            update["params"] = _changed_params(spec, change.params, label)
        if "severity" in change.model_fields_set:
            update["severity"] = _changed_tiers(spec, change.severity, label)
        if "enabled" in change.model_fields_set:
            update["enabled"] = change.enabled
        if "resolve_after" in change.model_fields_set:
            update["resolve_after"] = change.resolve_after
        self.specs[spec.id] = spec.model_copy(update=update)
        self.origins[spec.id] |= {f: label for f in update}


def _changed_params(spec: RuleSpec, new: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A site changes a rule's params by name, each keeping the type of the default."""
    params = dict(spec.params)
    for name, value in new.items():
        if name not in params:
            known = ", ".join(sorted(params)) or "none"
            raise RulesError(label, f"unknown param '{name}' (params of this rule: {known})", spec.id, "params")
        if param_kind(value) != param_kind(params[name]):
            raise RulesError(label, f"param '{name}' must be a {param_kind(params[name])} like the default "
                             f"({params[name]!r}), got {value!r}", spec.id, "params")
        params[name] = value
    return params


def _changed_tiers(spec: RuleSpec, new: tuple[TierSpec, ...] | Mapping[str, str], label: str
                   ) -> tuple[TierSpec, ...]:
    """New tiers, or {old level: new level}: the rule's tiers with their conditions, levels remapped."""
    if not isinstance(new, Mapping):
        return new
    levels = {t.level for t in spec.severity}
    for old in new:
        if old not in levels:
            raise RulesError(label, f"level '{old}' is not a level of this rule ({', '.join(sorted(levels))})",
                             spec.id, "severity")
    tiers = tuple(t.model_copy(update={"level": new.get(t.level, t.level)}) for t in spec.severity)
    problem = tiers_problem(tiers)
    if problem:
        raise RulesError(label, problem, spec.id, "severity")
    return tiers


# ------------------------------------------------------------------------------------------------
# compiling
# ------------------------------------------------------------------------------------------------
class _RuleCompiler:
    """Compiles one rule's expressions; an error names the file that wrote (or last changed) the field."""

    def __init__(self, spec: RuleSpec, origin: Mapping[str, str], base: str, def_types: Mapping[str, Any]):
        self.spec, self.origin, self.base, self.def_types = spec, origin, base, def_types
        self.let_nodes: dict[str, Node] = {}

    def error(self, fld: str, msg: str) -> RulesError:
        top = re.split(r"[.\[]", fld)[0]
        return RulesError(self.origin.get(top, self.base), msg, self.spec.id, fld)

    def expression(self, fld: str, source: str, scalar: bool = True) -> Compiled:
        try:
            compiled = compile_expr(source, Scope(self.spec.params, self.let_nodes, self.def_types))
        except ExprError as exc:
            raise self.error(fld, str(exc)) from None
        if scalar and isinstance(compiled.node, SeriesNode):
            raise self.error(fld, f"'{compiled.source}' is a series; use latest(...), count(...) or another aggregate")
        return compiled

    def condition(self, fld: str, source: str) -> Compiled:
        compiled = self.expression(fld, source)
        if compiled.typ not in (BOOL, "any"):
            shown = f"'{compiled.source}' " if fld == "when" else ""
            raise self.error(fld, f"{shown}must be a yes/no condition, it is {compiled.typ}")
        return compiled

    def lets(self) -> tuple[tuple[str, Compiled], ...]:
        """Named sub-expressions, in order, each usable by the later ones and every other field."""
        out = []
        for name, source in self.spec.let.items():
            if name in self.def_types or name == "params":
                raise self.error(f"let.{name}", "name is already a definition")
            compiled = self.expression(f"let.{name}", source, scalar=False)
            self.let_nodes[name] = compiled.node
            out.append((name, compiled))
        return tuple(out)

    def text(self, fld: str, source: str) -> str:
        """Prose with each `{param}` replaced by the rule's (site-adjusted) value: a site that moves a
        threshold moves the number the clinician reads with it (issue 12)."""
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.spec.params:
                raise self.error(fld, f"'{{{name}}}' is not a param of this rule (known: "
                                      f"{', '.join(self.spec.params) or 'none'})")
            return _shown(self.spec.params[name])

        return _PLACEHOLDER.sub(value, source)

    def tiers(self) -> tuple[Tier, ...]:
        tiers = [Tier(t.level, None if t.when is None else self.condition(f"severity[{i}].when", t.when))
                 for i, t in enumerate(self.spec.severity)]
        return tuple(sorted(tiers, key=lambda t: -SEVERITY_ORDER[t.level]))

    def rule(self, version: str, resolve_after: ResolveAfter, definitions: Mapping[str, Compiled]) -> Rule:
        spec = self.spec
        lets = self.lets()
        when = self.condition("when", spec.when)
        applies = None if spec.applies is None else self.condition("applies", spec.applies)
        tiers = self.tiers()
        evidence = tuple((name, self.expression(f"evidence.{name}", source)) for name, source in spec.evidence.items())
        advice = tuple((self.expression(f"advice[{i}].when", a.when), self.text(f"advice[{i}].text", a.text))
                       for i, a in enumerate(spec.advice))
        return Rule(
            id=spec.id, category=spec.category, tiers=tiers, when=when, params=dict(spec.params), lets=lets,
            evidence=evidence, action=self.text("action", spec.action), advice=advice,
            citation=spec.citation.rendered, sources=tuple(spec.citation.sources), applies=applies,
            enabled=spec.enabled, title=self.text("title", spec.title),
            version=version, resolve_after=spec.resolve_after or resolve_after,
            reads=_stores_read([when.node, *(t.when.node for t in tiers if t.when is not None)], definitions),
        )


_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
"""`{name}` in a rule's title, action or advice text: the value of its param `name`."""


def _shown(value: Any) -> str:
    """A param as prose: 50 not 50.0, a list as "D, E, F"."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _stores_read(nodes: list[Node], definitions: Mapping[str, Compiled]) -> frozenset[str]:
    """History stores the nodes read (through lets and definitions); every store when they name none
    (`days_monitored()` alone)."""
    stores: set[str] = set()
    seen: set[str] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, (Field, KindRef)) and node.kind in STORE_OF:
            stores.add(STORE_OF[node.kind])
        if isinstance(node, DefRef) and node.name not in seen and node.name in definitions:
            seen.add(node.name)
            todo.append(definitions[node.name].node)
        todo.extend(_children(node))
    return frozenset(stores) if stores else frozenset(STORES)


def _children(node: Node) -> list[Node]:
    out: list[Node] = []
    for value in vars(node).values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else (value,)
        out.extend(item for item in items if isinstance(item, Node))
    return out


def _compile_definitions(sources: Mapping[str, str], origin: Mapping[str, str], base: str) -> dict[str, Compiled]:
    """Shared conditions, in order: each may use the ones before it, never params."""
    out: dict[str, Compiled] = {}
    for name, source in sources.items():
        fld = f"definitions.{name}"
        file = origin.get(fld, base)
        try:
            compiled = compile_expr(source, Scope({}, {}, {k: v.typ for k, v in out.items()}, allow_params=False))
        except ExprError as exc:
            raise RulesError(file, str(exc), field=fld) from None
        if isinstance(compiled.node, SeriesNode):
            raise RulesError(file, "a definition must be a single value, not a series", field=fld)
        out[name] = compiled
    return out


def _care_states(draft: _Draft, def_types: Mapping[str, Any], base: str) -> dict[str, CareStateRule]:
    try:
        return compile_care_states(draft.care_states, draft.specs, def_types)
    except CareStateError as error:
        state = error.field.split(".")[1]
        raise RulesError(draft.state_origin.get(state, base), str(error), field=error.field) from None


def _silencing(spec: RuleSpec, states: Mapping[str, CareStateRule], origin: Mapping[str, str],
               base: str) -> frozenset[str]:
    try:
        return silencing(spec.id, spec.category, spec.keeps_speaking_when, states)
    except ValueError as error:
        raise RulesError(origin.get("keeps_speaking_when", base), str(error), spec.id, "keeps_speaking_when") from None


def load_rules(path: Path | str | None = None, overrides: Path | str | None = None) -> RuleSet:
    """Load a rules file (default: the packaged ``default.yaml``) and optionally a site override file.

    The override file may set ``version`` (appended to the rule version as ``+<site version>``),
    replace ``definitions``, and change ``params`` (same names and types), ``severity`` (a level, a
    list of tiers, or a mapping old level -> new level) and ``enabled`` of rules by id.
    """
    path = Path(path) if path is not None else DEFAULT_RULES
    label = str(path)
    draft = _Draft.of(_validate(RulesFile, _read_yaml(path), label), label)
    if overrides is not None:
        olabel = str(Path(overrides))
        odata = _read_yaml(Path(overrides))
        draft.apply(_validate(SiteFile, {} if odata is None else odata, olabel), olabel)
    definitions = _compile_definitions(draft.definitions, draft.def_origin, label)
    def_types = {k: v.typ for k, v in definitions.items()}
    rules = [_RuleCompiler(spec, draft.origins[rid], label, def_types)
             .rule(draft.version, draft.resolve_after.get(spec.category, IMMEDIATE), definitions)
             for rid, spec in draft.specs.items()]
    states = _care_states(draft, def_types, label)
    rules = [replace(rule, silenced_by=_silencing(draft.specs[rule.id], states, draft.origins[rule.id], label))
             for rule in rules]
    rule_set = RuleSet(version=draft.version, rules=rules, definitions=definitions, files=tuple(draft.files),
                       keep_days=draft.keep_days, keep_max_per_kind=draft.keep_max, care_states=states)
    changed_by = {rid: next(iter(o.values())) for rid, o in draft.origins.items() if o}
    changed_by |= {name.removeprefix("definitions."): file for name, file in draft.def_origin.items()}
    _check_windows_kept(rule_set, draft.keep_origin, changed_by, label)
    return rule_set


# ------------------------------------------------------------------------------------------------
# history the expressions read
# ------------------------------------------------------------------------------------------------
def _expressions(rule: Rule) -> Iterator[tuple[str, Compiled]]:
    yield "when", rule.when
    if rule.applies is not None:
        yield "applies", rule.applies
    yield from ((f"let.{name}", c) for name, c in rule.lets)
    yield from ((f"severity[{i}].when", t.when) for i, t in enumerate(rule.tiers) if t.when is not None)
    yield from ((f"evidence.{name}", c) for name, c in rule.evidence)
    yield from ((f"advice[{i}].when", c) for i, (c, _) in enumerate(rule.advice))


def _check_windows_kept(rule_set: RuleSet, origin: Mapping[str, str], changed_by: Mapping[str, str],
                        base_file: str) -> None:
    """Refuse a rule set whose windows read further back than its history keeps (a lengthened
    `baseline_days` with the default retention, say), or more rows than `keep_max_per_kind` keeps: the
    rule would silently see fewer rows. The error names the file that changed the rule (or definition)
    or the retention, else the base file."""
    places: list[tuple[str | None, str, str, Compiled, Mapping[str, Any]]] = [
        (None, f"definitions.{name}", name, c, {}) for name, c in rule_set.definitions.items()]
    places += [(r.id, fld, r.id, c, r.params) for r in rule_set.enabled() for fld, c in _expressions(r)]
    places += [(None, f"care_states.{name}.when", name, s.when, {}) for name, s in rule_set.care_states.items()
               if s.when is not None]
    for rule_id, fld, name, compiled, params in places:
        for need in needs(compiled, params):
            keep = rule_set.keep_days[need.store]
            if need.days > keep:
                kept_by = origin[need.store]
                file = kept_by if kept_by != base_file else changed_by.get(name, base_file)
                raise RulesError(file, f"{need.expression} reads {need.days:g} days of {need.store} "
                                 f"rows, but history.keep_days.{need.store} keeps {keep}: raise it", rule_id, fld)
        for counted in row_needs(compiled, params):
            if counted.rows > rule_set.keep_max_per_kind:
                kept_by = origin[_MAX]
                file = kept_by if kept_by != base_file else changed_by.get(name, base_file)
                raise RulesError(file, f"{counted.expression} reads {counted.rows} {counted.store} rows, but "
                                 f"history.{_MAX} keeps {rule_set.keep_max_per_kind}: raise it", rule_id, fld)
