"""The shape of a rules file and of a site overrides file, as pydantic models.

YAML guesses types (a bare ``0.1`` is a number, ``yes`` may be text), so the models are strict:
nothing is coerced, and a wrong value fails with the one-line message the loader shows a rule author
(``site.yaml: rule NS-FVC50: field 'params': ...``); :func:`locate` and :func:`message` turn a
pydantic error into that rule id, field path and message. Expressions stay text here: the loader
compiles them, and checks what needs both files (a site's param against the default's type).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, NoReturn

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from processors.rules.expr.types import param_kind
from processors.rules.history import KEEP_MAX_PER_KIND, STORES
from schemas.carestate import CARE_STATES
from schemas.findings import CATEGORIES, SEVERITIES

__all__ = [
    "IMMEDIATE",
    "CareStateKeeps",
    "CareStateSpec",
    "CitationSpec",
    "History",
    "ResolveAfter",
    "RuleChange",
    "RuleSpec",
    "RulesFile",
    "SiteFile",
    "SiteHistory",
    "TierSpec",
    "locate",
    "message",
    "param_kind",
    "tiers_problem",
]

MAX_ROWS = 100_000
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_ERROR = "rules"
"""The pydantic error type of every message written here (any other type is pydantic's own)."""


# ------------------------------------------------------------------------------------ messages
def _error(text: str) -> PydanticCustomError:
    return PydanticCustomError(_ERROR, text)


def _fail(text: str, *loc: str | int) -> NoReturn:
    """Fail a validator with `text`, placed at `loc` below the value it validates."""
    raise ValidationError.from_exception_data(_ERROR, [InitErrorDetails(type=_error(text), loc=loc, input=None)])


def _says(text: str, *, whole: bool = False) -> WrapValidator:
    """Show `text` (``{got}`` = the value) when this value itself is wrong; a wrong item inside it
    (a list's, a mapping's) keeps its own message and place, unless `whole`."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if not whole and all(e["loc"] for e in exc.errors()):
                raise
            raise _error(text.replace("{got}", repr(value))) from None

    return WrapValidator(wrap)


def _choice(value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise _error(f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _one_of(choices: Sequence[str]) -> PlainValidator:
    return PlainValidator(lambda value: _choice(value, choices))


def message(error: ErrorDetails) -> str:
    """The loader's words for one pydantic error."""
    if error["type"] == _ERROR:
        return error["msg"]
    if error["type"] == "missing":
        return "is required"
    return error["msg"]


def locate(loc: Sequence[str | int], data: Any) -> tuple[str | None, str | None]:
    """(rule id, field path) of a pydantic error location in a file's `data`: a rule is named when its
    id is known (``rules[2].id`` otherwise), and the path reads as written (``severity[0].when``)."""
    parts = [p for p in loc if p != "[key]"]  # a bad mapping key: the path of its entry
    if len(parts) >= 2 and parts[0] == "rules" and isinstance(data, Mapping):
        rule_id = _rule_id(data.get("rules"), parts[1])
        if rule_id is not None:
            return rule_id, _path(parts[2:])
    return None, _path(parts)


def _rule_id(rules: Any, key: str | int) -> str | None:
    if isinstance(key, str):
        return key  # a site file's rules are keyed by id
    item = rules[key] if isinstance(rules, list) and 0 <= key < len(rules) else None
    rule_id = item.get("id") if isinstance(item, Mapping) else None
    return rule_id if isinstance(rule_id, str) and ID_RE.match(rule_id) else None


def _path(parts: Sequence[str | int]) -> str | None:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if out else str(p)
    return out or None


# ------------------------------------------------------------------------------------ values
def _params(params: dict[Any, Any]) -> dict[str, Any]:
    for name, value in params.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _error(f"param name {name!r} must be lower_case")
        if param_kind(value) == "invalid":
            raise _error(f"param '{name}' must be a number, yes/no, text or list, got {value!r}")
    return params


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("blank")
    return text


def _store(value: Any) -> str:
    if value not in STORES:
        raise _error(f"unknown record kind (known: {', '.join(STORES)})")
    return str(value)


def _every_store(days: dict[str, int]) -> dict[str, int]:
    missing = [s for s in STORES if s not in days]
    if missing:
        raise _error(f"missing {', '.join(missing)}")
    return days


RuleId = Annotated[StrictStr, StringConstraints(pattern=ID_RE.pattern),
                   _says("id {got} must be text of letters, digits, '.', '_' or '-'")]
Name = Annotated[StrictStr, StringConstraints(pattern=NAME_RE.pattern), _says("name must be lower_case")]
Expression = Annotated[StrictStr, _says("must be an expression in quotes, got {got}")]
"""Text of an expression; the loader compiles it."""
Prose = Annotated[StrictStr, AfterValidator(_one_line), _says("must be text")]
"""Text for people: YAML's folded lines joined."""
Flag = Annotated[StrictBool, _says("must be true or false")]
Category = Annotated[str, _one_of(CATEGORIES)]
Level = Annotated[str, _one_of(SEVERITIES)]
Params = Annotated[dict[Any, Any], _says("must be a mapping of name: value"), AfterValidator(_params)]
Named = Annotated[dict[Name, Expression], _says("must be a mapping of name: expression")]
Store = Annotated[str, PlainValidator(_store)]
Days = Annotated[StrictInt, Field(ge=1, le=3650), _says("must be a whole number of days from 1 to 3650, got {got}")]
DaysByStore = Annotated[dict[Store, Days], _says(f"must be a mapping of {', '.join(STORES)} to days")]
KeepMax = Annotated[StrictInt, Field(ge=1, le=MAX_ROWS),
                    _says(f"must be a whole number of rows from 1 to {MAX_ROWS}, got {{got}}")]


# ------------------------------------------------------------------------------------ models
class _Spec(BaseModel):
    """A mapping in the file. Subclasses set the message for a value of the wrong shape."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    shape: ClassVar[str] = "must be a mapping"
    """Message for a value that is no mapping, or (unless `_keys` says otherwise) has a key too many or
    misses a required one."""
    none_is_absent: ClassVar[tuple[str, ...]] = ()
    """Keys whose YAML empty value (``params:`` alone) means "not given"."""

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise _error(cls.shape)
        data = {k: v for k, v in data.items() if not (v is None and k in cls.none_is_absent)}
        return cls._keys(data)

    @classmethod
    def _keys(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        required = {name for name, f in cls.model_fields.items() if f.is_required()}
        if set(data) - set(cls.model_fields) or not required <= set(data):
            raise _error(cls.shape)
        return data


class TierSpec(_Spec):
    """One severity tier: a level, and the condition for it (none for the base level)."""

    shape = "must be {level: ..., when: ...} (when optional for the base level)"
    level: Level
    when: Expression | None = None


def tiers_problem(tiers: Sequence[TierSpec]) -> str | None:
    """What is wrong with a rule's tiers as a whole, if anything."""
    if sum(t.when is None for t in tiers) != 1:
        return "exactly one tier must have no 'when' (the level used when the rule holds)"
    if len({t.level for t in tiers}) != len(tiers):
        return "each level may appear once"
    return None


_TIER_LIST = TypeAdapter(list[TierSpec])


def _tiers(value: Any) -> tuple[TierSpec, ...]:
    """`severity`: a level, or a list of tiers (a bare level in the list is a base tier)."""
    if isinstance(value, str):
        value = [_choice(value, SEVERITIES)]
    if not isinstance(value, list) or not value:
        raise _error(f"must be a level ({', '.join(SEVERITIES)}) or a list of {{level, when}}")
    tiers = _TIER_LIST.validate_python([{"level": t} if isinstance(t, str) else t for t in value])
    problem = tiers_problem(tiers)
    if problem:
        raise _error(problem)
    return tuple(tiers)


Tiers = Annotated[tuple[TierSpec, ...], PlainValidator(_tiers)]


Evaluations = Annotated[StrictInt, Field(ge=0, le=1000), _says("must be a whole number from 0 to 1000, got {got}")]
DwellDays = Annotated[StrictInt, Field(ge=0, le=3650),
                      _says("must be a whole number of days from 0 to 3650, got {got}")]


class ResolveAfter(_Spec):
    """How long a rule's condition must stay clear (or at a lower severity) before its finding resolves
    (or is lowered): both figures, when both are given. A worse severity never waits. `evaluations`
    counts the evaluation that first sees the change and every later one on a new record of a kind the
    rule's condition reads; `days` counts from that first evaluation."""

    shape = "must be {evaluations: N} and/or {days: D}"
    evaluations: Evaluations = 0
    days: DwellDays = 0

    @model_validator(mode="after")
    def _some(self) -> ResolveAfter:
        if self.evaluations < 1 and self.days < 1:
            raise _error("needs evaluations >= 1 or days >= 1")
        return self


IMMEDIATE = ResolveAfter(evaluations=1)
"""Resolve at the first evaluation that finds the condition clear (a file that declares no persistence)."""
ByCategory = Annotated[dict[Category, ResolveAfter], _says(f"must be a mapping of {', '.join(CATEGORIES)} to "
                                                           "{evaluations: N} and/or {days: D}")]


StateName = Annotated[str, _one_of(CARE_STATES)]
StateNames = Annotated[list[StateName], _says(f"must be a list of care states ({', '.join(CARE_STATES)})")]
Targets = Annotated[list[StrictStr], _says("must be a list of 'all', categories or rule ids")]
"""What a care state silences or keeps: `all`, categories, rule ids (the loader checks they exist)."""


class CareStateSpec(_Spec):
    """`care_states.<state>` of a rules file: the rules it silences (their `applies` turns false, so an open
    finding resolves as no longer applying), those of them that still speak (`keeps`), and a condition
    under which the data alone put the patient in that state (`when`)."""

    shape = "must be a mapping with 'silences' (and optional 'keeps', 'when', 'notes')"
    silences: Targets
    keeps: Targets = Field(default_factory=list)
    when: Expression | None = None
    notes: Any = None


class CareStateKeeps(_Spec):
    """`care_states.<state>` of a site file: only the rules that still speak change."""

    shape = "must be a mapping with 'keeps' only"
    keeps: Targets


class AdviceSpec(_Spec):
    """A sentence appended to the action when its condition holds."""

    shape = "must have exactly 'when' and 'text'"
    when: Expression
    text: Prose


class CitationSpec(_Spec):
    """Where a rule comes from: ids of clinical-thresholds.md section 0, and words."""

    shape = "must be text or {sources: [ids], text: ...}"
    sources: Annotated[list[StrictStr], Field(min_length=1),
                       _says("must be a non-empty list of source ids", whole=True),
                       BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]
    text: Prose = ""

    @property
    def rendered(self) -> str:
        if not self.sources:
            return self.text
        return "; ".join(self.sources) + (f" — {self.text}" if self.text else "")


def _citation(value: Any) -> CitationSpec:
    if isinstance(value, str):
        return CitationSpec.model_construct(sources=[], text=_one_line(value))
    return CitationSpec.model_validate(value)


class RuleSpec(_Spec):
    """One rule as written: shapes, names and levels checked; expressions still text."""

    none_is_absent = ("params", "let", "evidence", "advice")
    required_fields: ClassVar[tuple[str, ...]] = ("category", "severity", "when", "action", "citation")
    """An empty value ("", [], nothing) of these is a missing one."""

    id: RuleId
    category: Category
    params: Params = Field(default_factory=dict)
    let: Named = Field(default_factory=dict)
    when: Expression
    applies: Expression | None = None
    severity: Tiers
    evidence: Named = Field(default_factory=dict)
    action: Prose
    advice: Annotated[list[AdviceSpec], _says("must be a list of {when, text}")] = Field(default_factory=list)
    citation: Annotated[CitationSpec, PlainValidator(_citation)]
    enabled: Flag = True
    title: Prose = ""
    resolve_after: ResolveAfter | None = None
    """None: the file's `resolve_after` for the rule's category."""
    keeps_speaking_when: StateNames = Field(default_factory=list)
    """Care states that silence the rule's category but not this rule: a safety rule."""
    notes: Any = None

    @classmethod
    def _keys(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        for key in data:
            if key not in cls.model_fields:
                raise _error(f"unknown field '{key}' (fields: {', '.join(sorted(cls.model_fields))})")
        return {k: v for k, v in data.items() if not (k in cls.required_fields and v in (None, "", []))}


def _unique_ids(rules: list[RuleSpec]) -> list[RuleSpec]:
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.id in seen:
            _fail("duplicate rule id", i, "id")
        seen.add(rule.id)
    return rules


class History(_Spec):
    """`history:` of a rules file: days of rows kept per record kind, and rows kept per kind at most."""

    shape = "must be a mapping with 'keep_days' (and optional 'keep_max_per_kind', 'notes')"
    keep_days: Annotated[DaysByStore, AfterValidator(_every_store)]
    keep_max_per_kind: KeepMax = KEEP_MAX_PER_KIND
    notes: Any = None


class SiteHistory(History):
    """`history:` of a site file: the kinds it names, or only `keep_max_per_kind`."""

    keep_days: DaysByStore = Field(default_factory=dict)


class _File(_Spec):
    """The top of a file: every unknown key is named at once."""

    none_is_absent = ("definitions",)

    @classmethod
    def _keys(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        unknown = set(data) - set(cls.model_fields)
        if unknown:
            raise _error(f"unknown top-level field(s): {', '.join(sorted(map(str, unknown)))}")
        return data


class RulesFile(_File):
    """A rules file: its version, shared definitions, history retention and rules."""

    shape = "must be a mapping with 'version' and 'rules'"

    version: Annotated[StrictStr, AfterValidator(_not_blank), _says('must be a quoted version string such as "0.1.0"')]
    history: History | None = None
    rules: Annotated[list[RuleSpec], Field(min_length=1), _says("must be a non-empty list of rules"),
                     AfterValidator(_unique_ids)]
    definitions: Named = Field(default_factory=dict)
    resolve_after: ByCategory = Field(default_factory=dict)
    """Per category, for rules that set none; a category not named resolves at once (IMMEDIATE)."""
    care_states: Annotated[dict[StateName, CareStateSpec], _says("must be a mapping of care state: {silences, ...}")
                           ] = Field(default_factory=dict)
    notes: Any = None


_OVERRIDABLE = ("enabled", "params", "resolve_after", "severity")
_REMAP = TypeAdapter(dict[StrictStr, Level])


def _severity_change(value: Any) -> tuple[TierSpec, ...] | dict[str, str]:
    """A site's `severity`: a level, a list of tiers, or {old level: new level} (remapped by the loader)."""
    return _REMAP.validate_python(value) if isinstance(value, Mapping) else _tiers(value)


class RuleChange(_Spec):
    """What a site changes of one rule: numbers, levels, on/off; never an expression."""

    shape = "override must be a mapping (params, severity, enabled, resolve_after)"
    params: Params = Field(default_factory=dict)
    severity: Annotated[tuple[TierSpec, ...] | dict[str, str], PlainValidator(_severity_change)] = ()
    enabled: Flag = True
    resolve_after: ResolveAfter = IMMEDIATE

    @classmethod
    def _keys(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        for key in data:
            if key not in cls.model_fields:
                _fail(f"cannot be overridden (a site may change {', '.join(_OVERRIDABLE)})", key)
        return data


_CHANGES = TypeAdapter(dict[str, RuleChange])


def _changes(value: Any) -> dict[str, RuleChange]:
    """A site's `rules`: {id: changes}, or a list of changes with an `id` each."""
    if value is None:
        return {}
    if isinstance(value, list):
        value = _by_id(value)
    if not isinstance(value, Mapping):
        raise _error("must be a mapping of rule id -> changes")
    return _CHANGES.validate_python({str(k): v for k, v in value.items()})


def _by_id(items: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "id" not in item:
            _fail("each override needs an 'id'", i)
        out[str(item["id"])] = {k: v for k, v in item.items() if k != "id"}
    return out


class SiteFile(_File):
    """A site overrides file: a site version, definitions replaced, retention and rules changed."""

    shape = "must be a mapping with 'rules' (and optional 'version', 'definitions')"

    version: Annotated[StrictStr, _says("must be a quoted string")] | None = None
    history: SiteHistory | None = None
    definitions: Named = Field(default_factory=dict)
    resolve_after: ByCategory = Field(default_factory=dict)
    care_states: Annotated[dict[StateName, CareStateKeeps], _says("must be a mapping of care state: {keeps: [...]}")
                           ] = Field(default_factory=dict)
    rules: Annotated[dict[str, RuleChange], PlainValidator(_changes)] = Field(default_factory=dict)
    notes: Any = None

