"""Loading rules: the default file, errors that name file/rule/field, and site overrides."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from processors.rules import PatientHistory, RulesError, evaluate, load_rules
from processors.rules.loader import DEFAULT_RULES
from tests.scenarios import day, spiro

GOOD_RULE = {
    "id": "X-FVC",
    "category": "NIV_START",
    "severity": "high",
    "params": {"threshold": 50},
    "when": "latest(spiro.fvc_pct_pred) < params.threshold",
    "action": "Do something.",
    "citation": {"sources": ["AAN09"], "text": "FVC < 50 %"},
}


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def rules_file(tmp_path: Path, **changes: object) -> Path:
    rule = {**GOOD_RULE, **changes}
    rule = {k: v for k, v in rule.items() if v is not None}
    return write(tmp_path, "rules.yaml", {"version": "1.0.0", "rules": [rule]})


def test_default_file_loads() -> None:
    rules = load_rules()
    assert rules.version == "0.2.1"
    assert rules.files == (str(DEFAULT_RULES),)
    assert len(rules.ids) == len(set(rules.ids)) >= 27
    assert all(r.version == "0.2.1" for r in rules)
    assert {"on_niv", "niv_indicated"} <= set(rules.definitions)


def test_good_minimal_file(tmp_path: Path) -> None:
    rules = load_rules(rules_file(tmp_path))
    assert rules.ids == ["X-FVC"]
    assert rules.get("X-FVC").citation == "AAN09 — FVC < 50 %"


BAD_WHEN = [
    ("latest(fvc) < 50", "unknown name 'fvc'"),
    ("latest(spiro.fvc_pct_pred < 50", "syntax error"),
    ("lastest(spiro.fvc_pct_pred) < 50", "unknown function 'lastest'"),
    ("latest(spiro.fvc_pct_pred) < params.treshold", "unknown param 'treshold'"),
    ("latest(spiro.fvc_pc_pred) < 50", "unknown field 'spiro.fvc_pc_pred'"),
    ("spiro.fvc_pct_pred < 50", "series"),
    ("count(oxi.t90_pct, nights=7) >= 3", "yes/no series"),
    ("count(oxi.t90_pct > 5, night=7) >= 3", "unknown keyword 'night'"),
    ("latest(spiro.fvc_pct_pred)", "must be a yes/no condition"),
    ("latest(spiro.grade) < 5", "cannot compare text with number"),
    ("__import__('os').system('true')", "unknown function '__import__'"),
    ("latest(spiro.fvc_pct_pred).__class__ == 1", "has no attribute '__class__'"),
    ("(lambda: 1)() == 1", "only named functions"),
    ("(lambda: 1) == 1", "uses Lambda, which rules may not use"),
    ("[x for x in (1, 2)] == 1", "ListComp"),
    ("latest(spiro.fvc_pct_pred)[0] < 1", "Subscript"),
    ("latest(spiro.fvc_pct_pred) == None", "missing(x)"),
    ("count(oxi.t90_pct > 5, where=spiro.fvc_l > 1) > 1", "cannot be matched"),
    ("latest(oxi.t90_pct > 5 and spiro.fvc_l > 1)", "cannot be matched"),
    ("slope(spiro.fvc_pct_pred).per_mnth < -3", "unknown attribute 'per_mnth'"),
    ("alsfrs.item(13) <= 3", "1-12"),
    ("params > 3", "params.<name>"),
]


@pytest.mark.parametrize(("when", "message"), BAD_WHEN)
def test_bad_expression_names_file_rule_and_field(tmp_path: Path, when: str, message: str) -> None:
    path = rules_file(tmp_path, when=when)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    text = str(err.value)
    assert text.startswith(f"{path}: rule X-FVC: field 'when': "), text
    assert message in text
    assert err.value.rule_id == "X-FVC" and err.value.field == "when"


def test_example_message_format(tmp_path: Path) -> None:
    path = rules_file(tmp_path, id="NS-FVC50", when="latest(fvc) < params.threshold")
    with pytest.raises(RulesError, match=r"rules\.yaml: rule NS-FVC50: field 'when': unknown name 'fvc'"):
        load_rules(path)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"whne": "x"}, None, "unknown field 'whne'"),
        ({"action": None}, "action", "is required"),
        ({"severity": "critical"}, "severity", "must be one of"),
        ({"category": "NIV"}, "category", "must be one of"),
        ({"severity": [{"level": "high", "when": "latest(spiro.fvc_pct_pred) < 40"}]}, "severity",
         "exactly one tier"),
        ({"severity": [{"level": "urgent", "when": "latest(spiro.fvc) < 40"}, {"level": "high"}]},
         "severity[0].when", "unknown field 'spiro.fvc'"),
        ({"applies": "not on_nv"}, "applies", "unknown name 'on_nv'"),
        ({"params": {"threshold": {"a": 1}}}, "params", "must be a number"),
        ({"let": {"x": "latest(spiro.fvc_pct_pred"}}, "let.x", "syntax error"),
        ({"evidence": {"v": "latest(nope.x)"}}, "evidence.v", "unknown name 'nope'"),
        ({"when": True}, "when", "must be an expression in quotes"),
        ({"advice": [{"when": "x", "txt": "a"}]}, "advice[0]", "exactly 'when' and 'text'"),
        ({"citation": {"text": "no sources"}}, "citation", "sources"),
        ({"enabled": "yes"}, "enabled", "true or false"),
    ],
)
def test_bad_rule_fields(tmp_path: Path, changes: dict, field: str | None, message: str) -> None:
    path = rules_file(tmp_path, **changes)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert err.value.file == str(path)
    assert err.value.rule_id == "X-FVC"
    assert err.value.field == field
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"severity": [{"level": "severe"}]}, "severity[0].level", "must be one of info, warn, high, urgent"),
        ({"severity": [{"level": "high", "if": "x"}]}, "severity[0]", "must be {level: ..., when: ...}"),
        ({"let": {"X": "1 > 0"}}, "let.X", "name must be lower_case"),
        ({"params": {"threshold": 50, "Bad": 1}}, "params", "param name 'Bad' must be lower_case"),
        ({"citation": {"sources": [1]}}, "citation.sources", "must be a non-empty list of source ids"),
        ({"citation": {"sources": ["AAN09"], "text": 5}}, "citation.text", "must be text"),
        ({"advice": [{"when": "latest(spiro.fvc_l) > 1", "text": ["a"]}]}, "advice[0].text", "must be text"),
        ({"title": 3}, "title", "must be text"),
        ({"category": 3}, "category", "must be one of NIV_START"),
        ({"when": ""}, "when", "is required"),
    ],
)
def test_shape_errors_name_the_path_as_written_in_one_line(tmp_path: Path, changes: dict, field: str,
                                                           message: str) -> None:
    """The file's shape is checked by pydantic models; their errors read like the loader's own."""
    path = rules_file(tmp_path, **changes)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    text = str(err.value)
    assert (err.value.file, err.value.rule_id, err.value.field) == (str(path), "X-FVC", field), text
    assert text == f"{path}: rule X-FVC: field '{field}': {err.value.reason}" and message in text
    assert "\n" not in text and "Input should" not in text and "pydantic" not in text


def test_rule_errors_before_the_rule_has_an_id_name_its_position(tmp_path: Path) -> None:
    no_id = {k: v for k, v in GOOD_RULE.items() if k != "id"}
    for rules, field, message in [([GOOD_RULE, no_id], "rules[1].id", "is required"),
                                  ([{**GOOD_RULE, "id": "a b"}], "rules[0].id", "id 'a b' must be text"),
                                  (["X-FVC"], "rules[0]", "must be a mapping")]:
        path = write(tmp_path, "rules.yaml", {"version": "1", "rules": rules})
        with pytest.raises(RulesError) as err:
            load_rules(path)
        assert err.value.rule_id is None and err.value.field == field and message in str(err.value)


def test_file_level_errors(tmp_path: Path) -> None:
    bad_yaml = write(tmp_path, "broken.yaml", "version: '1'\nrules: [\n  - id: a\n")
    with pytest.raises(RulesError, match=r"broken\.yaml: invalid YAML"):
        load_rules(bad_yaml)
    unquoted = write(tmp_path, "v.yaml", "version: 0.1\nrules: []\n")
    with pytest.raises(RulesError, match=r"v\.yaml: field 'version': must be a quoted version"):
        load_rules(unquoted)
    dup = write(tmp_path, "dup.yaml", {"version": "1", "rules": [GOOD_RULE, GOOD_RULE]})
    with pytest.raises(RulesError, match="rule X-FVC: field 'id': duplicate rule id"):
        load_rules(dup)
    with pytest.raises(RulesError, match="cannot read file"):
        load_rules(tmp_path / "missing.yaml")
    bad_def = write(tmp_path, "d.yaml", {"version": "1", "definitions": {"on_niv": "params.x > 1"},
                                         "rules": [GOOD_RULE]})
    with pytest.raises(RulesError, match="field 'definitions.on_niv': definitions cannot use params"):
        load_rules(bad_def)


# ------------------------------------------------------------------------------------ overrides
def fvc_verdict(rules, value: float) -> bool:  # type: ignore[no-untyped-def]
    h = PatientHistory("O-1")
    h.add(spiro("O-1", day(0), value))
    return {v.rule_id: v for v in evaluate(rules, h, day(0))}["NS-FVC50"].holds


def test_site_override_changes_a_threshold(tmp_path: Path) -> None:
    site = write(tmp_path, "site.yaml", textwrap.dedent("""
        version: "north-1"
        rules:
          NS-FVC50:
            params: {fvc_pct_pred: 45}
          NS-SUPINE:
            enabled: false
          NE-AHI:
            severity: {info: warn, warn: high}
          NS-SNIP40:
            severity: urgent
    """))
    base, local = load_rules(), load_rules(overrides=site)
    assert fvc_verdict(base, 47.0) is True
    assert fvc_verdict(local, 47.0) is False
    assert fvc_verdict(local, 44.0) is True
    assert local.version == "0.2.1+north-1"
    assert local.get("NS-FVC50").version == "0.2.1+north-1"
    assert local.get("NS-FVC50").params["fvc_pct_pred"] == 45
    assert base.get("NS-FVC50").params["fvc_pct_pred"] == 50  # default untouched
    assert not local.get("NS-SUPINE").enabled
    assert "NS-SUPINE" not in {r.id for r in local.enabled()}
    assert local.get("NE-AHI").severities == ("high", "warn")
    assert local.get("NS-SNIP40").severities == ("urgent",)
    assert local.files == (str(DEFAULT_RULES), str(site))


def test_override_definition(tmp_path: Path) -> None:
    site = write(tmp_path, "site.yaml", {"definitions": {"on_niv": "n(niv.usage_hours, days=14) > 0"},
                                         "rules": {}})
    rules = load_rules(overrides=site)
    assert rules.definitions["on_niv"].source == "n(niv.usage_hours, days=14) > 0"


@pytest.mark.parametrize(
    ("site", "message"),
    [
        ({"rules": {"NS-NOPE": {"enabled": False}}}, "site.yaml: rule NS-NOPE: unknown rule id"),
        ({"rules": {"NS-FVC50": {"params": {"fvc": 45}}}},
         "site.yaml: rule NS-FVC50: field 'params': unknown param 'fvc'"),
        ({"rules": {"NS-FVC50": {"params": {"fvc_pct_pred": "45"}}}},
         "site.yaml: rule NS-FVC50: field 'params': param 'fvc_pct_pred' must be a number"),
        ({"rules": {"NS-FVC50": {"when": "True"}}}, "site.yaml: rule NS-FVC50: field 'when': cannot be overridden"),
        ({"rules": {"NS-FVC50": {"severity": "severe"}}}, "site.yaml: rule NS-FVC50: field 'severity': must be one of"),
        ({"rules": {"NE-AHI": {"severity": {"urgent": "high"}}}}, "field 'severity': level 'urgent' is not a level"),
        ({"rules": {"NS-MIP60": {"severity": [{"level": "urgent", "when": "mip < params.urgnt"}, {"level": "high"}]}}},
         "site.yaml: rule NS-MIP60: field 'severity[0].when': unknown param 'urgnt'"),
        ({"definitions": {"on_nv": "True"}}, "site.yaml: field 'definitions.on_nv': unknown definition"),
        ({"definitions": {"on_niv": "latest(niv.usage) > 0"}}, "site.yaml: field 'definitions.on_niv': unknown field"),
        ({"version": 2}, "site.yaml: field 'version': must be a quoted string"),
        ({"rulez": {}}, "site.yaml: unknown top-level field"),
        ({"rules": {"NS-FVC50": {"enabled": "no"}}},
         "site.yaml: rule NS-FVC50: field 'enabled': must be true or false"),
        ({"rules": {"NE-AHI": {"severity": {"info": "severe"}}}},
         "site.yaml: rule NE-AHI: field 'severity.info': must be one of info, warn, high, urgent, got 'severe'"),
        ({"rules": {"NE-AHI": {"severity": {"info": "warn"}}}},
         "site.yaml: rule NE-AHI: field 'severity': each level may appear once"),
        ({"rules": [{"params": {"fvc_pct_pred": 40}}]}, "site.yaml: field 'rules[0]': each override needs an 'id'"),
        ({"rules": {"NS-FVC50": "off"}}, "site.yaml: rule NS-FVC50: override must be a mapping"),
    ],
)
def test_bad_overrides_name_the_site_file(tmp_path: Path, site: dict, message: str) -> None:
    path = write(tmp_path, "site.yaml", site)
    with pytest.raises(RulesError) as err:
        load_rules(overrides=path)
    assert message in str(err.value), str(err.value)
    assert str(err.value).startswith(str(path))


def test_override_list_form(tmp_path: Path) -> None:
    site = write(tmp_path, "site.yaml", {"rules": [{"id": "NS-FVC50", "params": {"fvc_pct_pred": 40}}]})
    rules = load_rules(overrides=site)
    assert rules.get("NS-FVC50").params["fvc_pct_pred"] == 40
    assert rules.version == "0.2.1+site"
