"""Load and validate a versioned rules file, optionally with a site override file.

Every check happens here, at load time: YAML shape, field names and types, severity tiers, and
every expression (syntax, names, functions, types). A file that loads is a file that evaluates.
Errors are :class:`RulesError` whose message names the file, the rule and the field::

    site.yaml: rule NS-FVC50: field 'when': unknown name 'fvc'
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from processors.rules.expr import BOOL, LIST, NUM, STR, Compiled, ExprError, Scope, SeriesNode, compile_expr
from processors.rules.history import KEEP_DAYS, KEEP_MAX_PER_KIND, STORES
from processors.rules.lookback import needs, row_needs

__all__ = [
    "CATEGORIES",
    "DEFAULT_RULES",
    "SEVERITIES",
    "Rule",
    "RuleSet",
    "RulesError",
    "Tier",
    "load_rules",
]

DEFAULT_RULES = Path(__file__).with_name("default.yaml")
CATEGORIES = ("NIV_START", "NIV_ESCALATE", "TRACH_DISCUSS", "DATA_QUALITY")
SEVERITIES = ("info", "warn", "high", "urgent")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_RULE_FIELDS = {"id", "title", "category", "severity", "applies", "params", "let", "when", "evidence", "action",
                "advice", "citation", "enabled", "notes"}
_REQUIRED = ("id", "category", "severity", "when", "action", "citation")
_OVERRIDE_FIELDS = {"params", "severity", "enabled"}
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


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


def _param_kind(v: Any) -> str:
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, (int, float)):
        return NUM
    if isinstance(v, str):
        return STR
    if isinstance(v, list) and all(isinstance(i, (int, float, str)) and not isinstance(i, bool) for i in v):
        return LIST
    return "invalid"


class _Builder:
    def __init__(self, version: str, definitions: dict[str, Compiled]):
        self.version = version
        self.definitions = definitions
        self.def_types = {k: v.typ for k, v in definitions.items()}

    def build(self, raw: Mapping[str, Any], origin: Mapping[str, str], default_file: str) -> Rule:
        rid = raw.get("id")

        def err(fld: str | None, msg: str) -> RulesError:
            top = re.split(r"[.\[]", fld or "")[0]
            return RulesError(origin.get(top, default_file), msg, str(rid), fld)

        for key in raw:
            if key not in _RULE_FIELDS:
                raise err(None, f"unknown field '{key}' (fields: {', '.join(sorted(_RULE_FIELDS))})")
        for key in _REQUIRED:
            if raw.get(key) in (None, "", []):
                raise err(key, "is required")
        category = raw["category"]
        if category not in CATEGORIES:
            raise err("category", f"must be one of {', '.join(CATEGORIES)}, got {category!r}")

        params = raw.get("params") or {}
        if not isinstance(params, Mapping):
            raise err("params", "must be a mapping of name: value")
        for name, value in params.items():
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise err("params", f"param name {name!r} must be lower_case")
            if _param_kind(value) == "invalid":
                raise err("params", f"param '{name}' must be a number, yes/no, text or list, got {value!r}")

        def compile_field(fld: str, source: Any, lets: Mapping[str, Any], scalar: bool = True) -> Compiled:
            if isinstance(source, bool) or not isinstance(source, str):
                raise err(fld, f"must be an expression in quotes, got {source!r}")
            try:
                compiled = compile_expr(source, Scope(params, lets, self.def_types))
            except ExprError as exc:
                raise err(fld, str(exc)) from None
            if scalar and isinstance(compiled.node, SeriesNode):
                raise err(fld, f"'{compiled.source}' is a series; use latest(...), count(...) or another aggregate")
            return compiled

        # let: named sub-expressions, in order, usable by later lets, when, tiers, evidence, advice
        let_nodes: dict[str, Any] = {}
        lets: list[tuple[str, Compiled]] = []
        raw_lets = raw.get("let") or {}
        if not isinstance(raw_lets, Mapping):
            raise err("let", "must be a mapping of name: expression")
        for name, source in raw_lets.items():
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise err(f"let.{name}", "name must be lower_case")
            if name in self.def_types or name == "params":
                raise err(f"let.{name}", "name is already a definition")
            compiled = compile_field(f"let.{name}", source, let_nodes, scalar=False)
            let_nodes[name] = compiled.node
            lets.append((name, compiled))

        when = compile_field("when", raw["when"], let_nodes)
        if when.typ not in (BOOL, "any"):
            raise err("when", f"'{when.source}' must be a yes/no condition, it is {when.typ}")
        applies = None
        if raw.get("applies") is not None:
            applies = compile_field("applies", raw["applies"], let_nodes)
            if applies.typ not in (BOOL, "any"):
                raise err("applies", f"must be a yes/no condition, it is {applies.typ}")

        tiers = self._tiers(raw["severity"], let_nodes, compile_field, err)

        evidence: list[tuple[str, Compiled]] = []
        raw_ev = raw.get("evidence") or {}
        if not isinstance(raw_ev, Mapping):
            raise err("evidence", "must be a mapping of name: expression")
        for name, source in raw_ev.items():
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise err(f"evidence.{name}", "name must be lower_case")
            evidence.append((name, compile_field(f"evidence.{name}", source, let_nodes)))

        action = raw["action"]
        if not isinstance(action, str):
            raise err("action", "must be text")
        advice: list[tuple[Compiled, str]] = []
        raw_adv = raw.get("advice") or []
        if not isinstance(raw_adv, list):
            raise err("advice", "must be a list of {when, text}")
        for i, item in enumerate(raw_adv):
            if not isinstance(item, Mapping) or set(item) != {"when", "text"} or not isinstance(item["text"], str):
                raise err(f"advice[{i}]", "must have exactly 'when' and 'text'")
            advice.append((compile_field(f"advice[{i}].when", item["when"], let_nodes), " ".join(item["text"].split())))

        citation, sources = self._citation(raw["citation"], err)
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            raise err("enabled", "must be true or false")
        title = raw.get("title", "")
        if not isinstance(title, str):
            raise err("title", "must be text")
        return Rule(
            id=str(rid), category=category, tiers=tiers, when=when, params=dict(params), lets=tuple(lets),
            evidence=tuple(evidence), action=" ".join(action.split()), advice=tuple(advice), citation=citation,
            sources=sources, applies=applies, enabled=enabled, title=title, version=self.version,
        )

    @staticmethod
    def _tiers(raw: Any, lets: Mapping[str, Any], compile_field: Any, err: Any) -> tuple[Tier, ...]:
        if isinstance(raw, str):
            if raw not in SEVERITIES:
                raise err("severity", f"must be one of {', '.join(SEVERITIES)}, got {raw!r}")
            return (Tier(raw, None),)
        if not isinstance(raw, list) or not raw:
            raise err("severity", "must be a level (info, warn, high, urgent) or a list of {level, when}")
        tiers: list[Tier] = []
        for i, item in enumerate(raw):
            fld = f"severity[{i}]"
            if isinstance(item, str):
                item = {"level": item}
            if not isinstance(item, Mapping) or "level" not in item or set(item) - {"level", "when"}:
                raise err(fld, "must be {level: ..., when: ...} (when optional for the base level)")
            level = item["level"]
            if level not in SEVERITIES:
                raise err(fld, f"level must be one of {', '.join(SEVERITIES)}, got {level!r}")
            cond = None
            if item.get("when") is not None:
                cond = compile_field(f"{fld}.when", item["when"], lets)
                if cond.typ not in (BOOL, "any"):
                    raise err(f"{fld}.when", f"must be a yes/no condition, it is {cond.typ}")
            tiers.append(Tier(level, cond))
        bases = [t for t in tiers if t.when is None]
        if len(bases) != 1:
            raise err("severity", "exactly one tier must have no 'when' (the level used when the rule holds)")
        if len({t.level for t in tiers}) != len(tiers):
            raise err("severity", "each level may appear once")
        return tuple(sorted(tiers, key=lambda t: -_RANK[t.level]))

    @staticmethod
    def _citation(raw: Any, err: Any) -> tuple[str, tuple[str, ...]]:
        if isinstance(raw, str):
            return " ".join(raw.split()), ()
        if not isinstance(raw, Mapping) or set(raw) - {"sources", "text"} or "sources" not in raw:
            raise err("citation", "must be text or {sources: [ids], text: ...}")
        sources = raw["sources"]
        if isinstance(sources, str):
            sources = [sources]
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
            raise err("citation", "sources must be a non-empty list of source ids")
        text = " ".join(str(raw.get("text", "")).split())
        rendered = "; ".join(sources) + (f" — {text}" if text else "")
        return rendered, tuple(sources)


def _compile_definitions(raw: Any, origin: Mapping[str, str], default_file: str) -> dict[str, Compiled]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RulesError(default_file, "must be a mapping of name: expression", field="definitions")
    out: dict[str, Compiled] = {}
    for name, source in raw.items():
        fld = f"definitions.{name}"
        file = origin.get(fld, default_file)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise RulesError(file, "name must be lower_case", field=fld)
        if not isinstance(source, str):
            raise RulesError(file, f"must be an expression in quotes, got {source!r}", field=fld)
        try:
            compiled = compile_expr(source, Scope({}, {}, {k: v.typ for k, v in out.items()}, allow_params=False))
        except ExprError as exc:
            raise RulesError(file, str(exc), field=fld) from None
        if isinstance(compiled.node, SeriesNode):
            raise RulesError(file, "a definition must be a single value, not a series", field=fld)
        out[name] = compiled
    return out


def _override_entries(data: Any, label: str) -> dict[str, dict[str, Any]]:
    raw = data.get("rules", {}) if isinstance(data, Mapping) else None
    if raw is None:
        return {}
    entries: dict[str, dict[str, Any]] = {}
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping) or "id" not in item:
                raise RulesError(label, "each override needs an 'id'", field=f"rules[{i}]")
            entries[str(item["id"])] = {k: v for k, v in item.items() if k != "id"}
    elif isinstance(raw, Mapping):
        for rid, item in raw.items():
            if not isinstance(item, Mapping):
                raise RulesError(label, "override must be a mapping (params, severity, enabled)", str(rid))
            entries[str(rid)] = dict(item)
    else:
        raise RulesError(label, "must be a mapping of rule id -> changes", field="rules")
    return entries


def _apply_override(rid: str, base: dict[str, Any], change: Mapping[str, Any], label: str) -> set[str]:
    touched = set()
    for key, value in change.items():
        if key not in _OVERRIDE_FIELDS:
            raise RulesError(label, f"cannot be overridden (a site may change {', '.join(sorted(_OVERRIDE_FIELDS))})",
                             rid, key)
        if key == "params":
            if not isinstance(value, Mapping):
                raise RulesError(label, "must be a mapping of name: value", rid, "params")
            params = dict(base.get("params") or {})
            for name, v in value.items():
                if name not in params:
                    known = ", ".join(sorted(params)) or "none"
                    raise RulesError(label, f"unknown param '{name}' (params of this rule: {known})", rid, "params")
                if _param_kind(v) != _param_kind(params[name]):
                    raise RulesError(label, f"param '{name}' must be a {_param_kind(params[name])} like the default "
                                     f"({params[name]!r}), got {v!r}", rid, "params")
                params[name] = v
            base["params"] = params
            touched.add("params")
        elif key == "severity" and isinstance(value, Mapping):
            # {old_level: new_level}: remap the levels of a tiered rule, keeping its conditions
            tiers = base["severity"]
            tiers = [{"level": tiers}] if isinstance(tiers, str) else copy.deepcopy(tiers)
            levels = {t["level"] if isinstance(t, Mapping) else t for t in tiers}
            for old, new in value.items():
                if old not in levels:
                    raise RulesError(label, f"level '{old}' is not a level of this rule ({', '.join(sorted(levels))})",
                                     rid, "severity")
            for i, t in enumerate(tiers):
                t = {"level": t} if isinstance(t, str) else dict(t)
                t["level"] = value.get(t["level"], t["level"])
                tiers[i] = t
            base["severity"] = tiers
            touched.add("severity")
        else:
            base[key] = value
            touched.add(key)
    return touched


def load_rules(path: Path | str | None = None, overrides: Path | str | None = None) -> RuleSet:
    """Load a rules file (default: the packaged ``default.yaml``) and optionally a site override file.

    The override file may set ``version`` (appended to the rule version as ``+<site version>``),
    replace ``definitions``, and change ``params`` (same names and types), ``severity`` (a level, a
    list of tiers, or a mapping old level -> new level) and ``enabled`` of rules by id.
    """
    path = Path(path) if path is not None else DEFAULT_RULES
    label = str(path)
    data = _read_yaml(path)
    if not isinstance(data, Mapping):
        raise RulesError(label, "must be a mapping with 'version' and 'rules'")
    unknown = set(data) - {"version", "definitions", "history", "rules", "notes"}
    if unknown:
        raise RulesError(label, f"unknown top-level field(s): {', '.join(sorted(map(str, unknown)))}")
    keep_days = _keep_days(data.get("history"), {s: KEEP_DAYS for s in STORES}, label)
    keep_origin = {s: label for s in keep_days}
    keep_max = _keep_max(data.get("history"), KEEP_MAX_PER_KIND, label)
    keep_origin[_MAX] = label
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise RulesError(label, "must be a quoted version string such as \"0.1.0\"", field="version")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(label, "must be a non-empty list of rules", field="rules")
    raws: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, Mapping):
            raise RulesError(label, "must be a mapping", field=f"rules[{i}]")
        rid = raw.get("id")
        if not isinstance(rid, str) or not _ID_RE.match(rid):
            raise RulesError(label, f"id {rid!r} must be text of letters, digits, '.', '_' or '-'", field=f"rules[{i}].id")
        if rid in seen:
            raise RulesError(label, "duplicate rule id", rid, "id")
        seen.add(rid)
        raws.append(dict(raw))

    definitions_raw = dict(data.get("definitions") or {}) if isinstance(data.get("definitions"), Mapping) else data.get("definitions")
    def_origin: dict[str, str] = {}
    origins: dict[str, dict[str, str]] = {r["id"]: {} for r in raws}
    files = [label]
    if overrides is not None:
        opath = Path(overrides)
        olabel = str(opath)
        files.append(olabel)
        odata = _read_yaml(opath)
        if odata is None:
            odata = {}
        if not isinstance(odata, Mapping):
            raise RulesError(olabel, "must be a mapping with 'rules' (and optional 'version', 'definitions')")
        unknown = set(odata) - {"version", "definitions", "history", "rules", "notes"}
        if unknown:
            raise RulesError(olabel, f"unknown top-level field(s): {', '.join(sorted(map(str, unknown)))}")
        site_keep = _keep_days(odata.get("history"), keep_days, olabel, partial=True)
        keep_origin |= {s: olabel for s in site_keep if site_keep[s] != keep_days[s]}
        keep_days = site_keep
        site_max = _keep_max(odata.get("history"), keep_max, olabel)
        keep_origin[_MAX] = olabel if site_max != keep_max else keep_origin[_MAX]
        keep_max = site_max
        site_version = odata.get("version")
        if site_version is not None and not isinstance(site_version, str):
            raise RulesError(olabel, "must be a quoted string", field="version")
        version = f"{version}+{site_version or 'site'}"
        odefs = odata.get("definitions")
        if odefs is not None:
            if not isinstance(odefs, Mapping) or not isinstance(definitions_raw, Mapping):
                raise RulesError(olabel, "must be a mapping of name: expression", field="definitions")
            for name, source in odefs.items():
                if name not in definitions_raw:
                    raise RulesError(olabel, f"unknown definition '{name}' (known: "
                                     f"{', '.join(definitions_raw)})", field=f"definitions.{name}")
                definitions_raw[name] = source
                def_origin[f"definitions.{name}"] = olabel
        by_id = {r["id"]: r for r in raws}
        for rid, change in _override_entries(odata, olabel).items():
            if rid not in by_id:
                raise RulesError(olabel, "unknown rule id", rid)
            for fld in _apply_override(rid, by_id[rid], change, olabel):
                origins[rid][fld] = olabel

    definitions = _compile_definitions(definitions_raw, def_origin, label)
    builder = _Builder(version, definitions)
    rules = [builder.build(raw, origins[raw["id"]], label) for raw in raws]
    rule_set = RuleSet(version=version, rules=rules, definitions=definitions, files=tuple(files),
                       keep_days=keep_days, keep_max_per_kind=keep_max)
    changed_by = {rid: next(iter(o.values())) for rid, o in origins.items() if o}
    changed_by |= {name.removeprefix("definitions."): file for name, file in def_origin.items()}
    _check_windows_kept(rule_set, keep_origin, changed_by, label)
    return rule_set


_MAX = "keep_max_per_kind"
_HISTORY_FIELDS = {"keep_days", _MAX, "notes"}
_MAX_ROWS = 100_000


def _keep_days(raw: Any, base: Mapping[str, int], label: str, partial: bool = False) -> dict[str, int]:
    """`history: {keep_days: {spiro: 400, oxi: 120, niv: 120, alsfrs: 400}}`; a site file may name some,
    or none when it changes only `keep_max_per_kind`."""
    out = dict(base)
    if raw is None:
        return out
    if not isinstance(raw, Mapping) or set(raw) - _HISTORY_FIELDS:
        raise RulesError(label, "must be a mapping with 'keep_days' (and optional 'keep_max_per_kind', 'notes')",
                         field="history")
    if partial and "keep_days" not in raw:
        return out
    days = raw.get("keep_days")
    if not isinstance(days, Mapping):
        raise RulesError(label, f"must be a mapping of {', '.join(STORES)} to days", field="history.keep_days")
    missing = [s for s in STORES if s not in days]
    if missing and not partial:
        raise RulesError(label, f"missing {', '.join(missing)}", field="history.keep_days")
    for store, value in days.items():
        fld = f"history.keep_days.{store}"
        if store not in STORES:
            raise RulesError(label, f"unknown record kind (known: {', '.join(STORES)})", field=fld)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3650:
            raise RulesError(label, f"must be a whole number of days from 1 to 3650, got {value!r}", field=fld)
        out[store] = value
    return out


def _keep_max(raw: Any, base: int, label: str) -> int:
    """`history: {keep_max_per_kind: 1000}`: rows kept per kind at most (the newest); optional."""
    if not isinstance(raw, Mapping) or _MAX not in raw:
        return base  # a history that is no mapping is refused by _keep_days
    value = raw[_MAX]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ROWS:
        raise RulesError(label, f"must be a whole number of rows from 1 to {_MAX_ROWS}, got {value!r}",
                         field=f"history.{_MAX}")
    return value


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
