"""Issue 12, clinical corrections: each reproduction of a wrong or missing alert, backtested the way
`respmon evaluate FILE...` runs (ingest's parsers, then the default rules), for an alert raised and one
not raised. Files are built by `clinical_files`; one test runs the command itself."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from processors.metrics.spirometry import gli_global_fvc
from processors.rules import load_rules
from respmon.cli import main
from respmon.evaluate import evaluate_files
from schemas import Finding
from tests.test_processors.test_rules.clinical_files import (
    DEMOGRAPHICS,
    P,
    alsfrs_json,
    block,
    dips,
    night,
    nights,
    niv_csv,
    oxi_csv,
    sawtooth,
    session,
    spiro_csv,
    steady,
)

PRED_L = gli_global_fvc("male", 60, 175).predicted_l
assert DEMOGRAPHICS == {"sex": "male", "age_years": 60, "height_cm": 175}


def litres(pct: float) -> float:
    """Litres that are `pct` % of the GLI Global prediction for the test patient (male, 60 y, 175 cm)."""
    return round(PRED_L * pct / 100, 3)


def run(*files: Path) -> list[Finding]:
    return evaluate_files(list(files), patient_id=P)


def opened(findings: Sequence[Finding]) -> dict[str, list[str]]:
    """Rule id -> the severities it opened (or changed to), in order."""
    out: dict[str, list[str]] = {}
    for f in findings:
        if f.state == "open":
            out.setdefault(f.rule_id, []).append(f.severity)
    return out


def still_open(findings: Sequence[Finding]) -> set[str]:
    last: dict[str, str] = {}
    for f in findings:
        last[f.rule_id] = f.state
    return {rule for rule, state in last.items() if state == "open"}


def first(findings: Sequence[Finding], rule: str) -> Finding:
    return next(f for f in findings if f.rule_id == rule)


# ---------------------------------------------------------------------------------- nocturnal oximetry
def test_sawtooth_desaturation_raises_though_no_run_lasts_5_minutes(tmp_path: Path) -> None:
    """100-s dips to 86 % with 20-s recoveries for 8.5 h: ~7 h <= 88 %, longest run 1.7 min. Was silent."""
    findings = run(oxi_csv(tmp_path, 0, sawtooth(), hours=8.5))
    assert opened(findings) == {"NS-OXI88": ["warn"]}
    values = first(findings, "NS-OXI88").evidence["values"]
    assert values["t88_min"] >= 400 and values["longest_le88_min"] < 5


@pytest.mark.parametrize(("pattern", "raised"), [
    (dips(6), True),        # six separate 1-min dips: 6 min <= 88 % in all (CMS current wording)
    (dips(4), False),       # 4 min in all
    (block(11), True),      # T90 11 % on one night, never <= 88 % (ACI12)
    (block(9), False),
])
def test_cumulative_t88_or_one_night_of_t90(tmp_path: Path, pattern: Any, raised: bool) -> None:
    assert ("NS-OXI88" in opened(run(oxi_csv(tmp_path, 0, pattern)))) is raised


def test_oxygen_nights_count_and_desaturation_on_oxygen_is_worse(tmp_path: Path) -> None:
    """The oximetry CSV's o2_lpm column: once refused as an unknown column, and oxygen nights dropped."""
    on_o2 = opened(run(oxi_csv(tmp_path, 0, sawtooth(), o2_lpm=2)))
    assert on_o2 == {"NS-OXI88": ["high"], "NS-O2NONIV": ["warn"]}
    recurring = [oxi_csv(tmp_path, d, dips(6), o2_lpm=2) for d in range(3)]
    assert opened(run(*recurring))["NS-OXI88"] == ["high", "urgent"]


def test_home_oxygen_without_niv_is_flagged_and_not_for_a_niv_user(tmp_path: Path) -> None:
    assert opened(run(oxi_csv(tmp_path, 0, steady(), o2_lpm=1))) == {"NS-O2NONIV": ["warn"]}
    assert opened(run(oxi_csv(tmp_path, 0, steady(), o2_lpm=0))) == {}  # room air said explicitly
    (tmp_path / "niv").mkdir()
    on_niv = run(niv_csv(tmp_path / "niv", nights(0, [7.0] * 3)), oxi_csv(tmp_path, 2, steady(), o2_lpm=1))
    assert "NS-O2NONIV" not in opened(on_niv)


def test_desaturation_on_niv_despite_oxygen_is_urgent(tmp_path: Path) -> None:
    desat = nights(0, [6.0] * 7, spo2_t90_pct=8)
    assert opened(run(niv_csv(tmp_path, desat)))["NE-DESAT"] == ["high"]
    with_o2 = nights(0, [6.0] * 7, spo2_t90_pct=8, o2_lpm=2)
    assert opened(run(niv_csv(tmp_path, with_o2)))["NE-DESAT"] == ["urgent"]


# ---------------------------------------------------------------------------------- ALSFRS-R items 12 and 3
def test_item_12_zero_means_invasive_ventilation_already(tmp_path: Path) -> None:
    """Was: TD-DEP high and NE-ADH warn for a tracheostomy-ventilated patient (now the care state)."""
    files = [spiro_csv(tmp_path, [session(1, 40)]), niv_csv(tmp_path, nights(2, [1.0] * 20))]
    trach = opened(run(alsfrs_json(tmp_path, [(0, {12: 0})]), *files))
    assert not {r for r in trach if r.startswith(("NS-", "TD-")) or r in ("NE-ADH", "NE-USEDROP")}, trach
    continuous_bipap = opened(run(alsfrs_json(tmp_path, [(0, {12: 1})]), *files))
    assert continuous_bipap["TD-DEP"] == ["high"] and "NE-ADH" in continuous_bipap


def test_tube_feeding_alone_is_not_severe_bulbar_dysfunction(tmp_path: Path) -> None:
    """Was: TD-BULBAR on item 3 = 1 (supplemental tube feeding) alone."""
    niv = niv_csv(tmp_path, nights(0, [8.0] * 10))
    assert "TD-BULBAR" not in opened(run(niv, alsfrs_json(tmp_path, [(11, {3: 1})])))
    assert opened(run(niv, alsfrs_json(tmp_path, [(11, {3: 0})])))["TD-BULBAR"] == ["warn"]


# ---------------------------------------------------------------------------------- leak, NIV status
def test_leak_of_unknown_kind_is_never_compared_with_24(tmp_path: Path) -> None:
    """Was: a vented mask's normal total leak (40 L/min) in a CSV without leak_kind raised NE-LEAK."""
    assert "NE-LEAK" not in opened(run(niv_csv(tmp_path, nights(0, [8.0] * 7, leak_p95_lpm=40))))
    said = nights(0, [8.0] * 7, leak_p95_lpm=25, leak_kind="Unintentional")
    assert opened(run(niv_csv(tmp_path, said)))["NE-LEAK"] == ["warn"]


def test_nights_without_use_are_not_niv(tmp_path: Path) -> None:
    """Was: NS-FVC50 resolved (no longer applies) the night an unused device began reporting 0 h."""
    fvc = spiro_csv(tmp_path, [session(0, 45)])
    unused = run(fvc, niv_csv(tmp_path, nights(10, [0.0] * 10)))
    assert "NS-FVC50" in still_open(unused)
    used = run(fvc, niv_csv(tmp_path, nights(10, [6.0] * 10)))
    assert "NS-FVC50" not in still_open(used)
    assert first([f for f in used if f.state == "resolved"], "NS-FVC50").evidence["resolution"] == "no_longer_applies"


def test_an_established_user_whose_data_stopped_is_not_told_to_start_niv(tmp_path: Path) -> None:
    """Was: NS-FVC50 'discuss starting NIV' 41 days after 40 nights of use, when only uploads stopped."""
    established = opened(run(niv_csv(tmp_path, nights(0, [8.0] * 40)), spiro_csv(tmp_path, [session(80, 45)])))
    assert "NS-FVC50" not in established and "DQ-NOUPLOAD" in established
    (tmp_path / "short").mkdir()
    brief = opened(run(niv_csv(tmp_path / "short", nights(0, [8.0] * 10)), spiro_csv(tmp_path, [session(80, 45)])))
    assert brief["NS-FVC50"] == ["high"]


def test_niv_intolerance_needs_enough_nights(tmp_path: Path) -> None:
    """Was: TD-INTOL high on one 1-h night in its 14-day window."""
    fvc = spiro_csv(tmp_path, [session(36, 45)])
    assert "TD-INTOL" not in opened(run(niv_csv(tmp_path, [night(0, 1.0), night(35, 1.0)]), fvc))
    trial = [night(0, 1.0), *nights(29, [1.0] * 8)]
    assert opened(run(niv_csv(tmp_path, trial), fvc))["TD-INTOL"] == ["high"]


# ---------------------------------------------------------------------------------- severities, parity
def test_one_low_cough_flow_is_one_finding(tmp_path: Path) -> None:
    """Was: NE-PCF270 warn and NE-PCF160 high for the same PCF of 150."""
    assert opened(run(spiro_csv(tmp_path, [session(0, 90, pcf_lpm=150)]))) == {"NE-PCF270": ["high"]}
    assert opened(run(spiro_csv(tmp_path, [session(0, 90, pcf_lpm=200)]))) == {"NE-PCF270": ["warn"]}
    assert opened(run(spiro_csv(tmp_path, [session(0, 90, pcf_lpm=280)]))) == {}


def test_mip_below_40_is_the_tier_of_snip_below_40(tmp_path: Path) -> None:
    """Was: MIP 39 urgent, SNIP 39 high."""
    findings = run(spiro_csv(tmp_path, [session(0, 90, mip_cmh2o=39, snip_cmh2o=39)]))
    assert opened(findings) == {"NS-MIP60": ["high"], "NS-SNIP40": ["high"]}
    assert "CHEST 2023" in first(findings, "NS-MIP60").action
    assert opened(run(spiro_csv(tmp_path, [session(0, 90, mip_cmh2o=61, snip_cmh2o=41)]))) == {}


def test_vital_capacity_is_the_better_of_fvc_and_svc(tmp_path: Path) -> None:
    """Was: a session with only SVC (45 % predicted) raised nothing."""
    svc_only = run(spiro_csv(tmp_path, [session(0, None, svc_l=litres(45), demographics=True)]))
    assert opened(svc_only) == {"NS-FVC50": ["high"]}
    better_svc = run(spiro_csv(tmp_path, [session(0, 45, svc_l=litres(60), demographics=True)]))
    assert "NS-FVC50" not in opened(better_svc)
    svc_trend = [session(d, None, svc_l=litres(v), demographics=True) for d, v in ((0, 66), (30, 63), (60, 60),
                                                                                   (90, 57), (120, 54))]
    assert "NS-SLOPE" in opened(run(spiro_csv(tmp_path, svc_trend)))


# ---------------------------------------------------------------------------------- missing indications
def test_orthopnoea_alone_whatever_the_fvc(tmp_path: Path) -> None:
    fvc = spiro_csv(tmp_path, [session(1, 90)])
    assert opened(run(alsfrs_json(tmp_path, [(0, {11: 2})]), fvc)) == {"NS-ORTHO": ["high"]}
    assert opened(run(alsfrs_json(tmp_path, [(0, {11: 3})]), fvc)) == {}


def test_a_fall_of_10_points_in_3_months_whatever_the_projection(tmp_path: Path) -> None:
    assert opened(run(spiro_csv(tmp_path, [session(0, 85), session(40, 80), session(80, 74)]))) == {
        "NS-DROP10": ["warn"]}
    assert opened(run(spiro_csv(tmp_path, [session(0, 85), session(40, 80), session(80, 76)]))) == {}


def test_a_fall_in_litres_when_percent_predicted_cannot_be_computed(tmp_path: Path) -> None:
    fell = run(spiro_csv(tmp_path, [session(0, None, fvc_l=3.0), session(60, None, fvc_l=2.3)]))
    assert opened(fell) == {"DQ-DEMOG": ["warn"], "NS-VCDROP": ["warn"]}
    held = run(spiro_csv(tmp_path, [session(0, None, fvc_l=3.0), session(60, None, fvc_l=2.5)]))
    assert opened(held) == {"DQ-DEMOG": ["warn"]}


def test_mep_is_cough_evidence_when_pcf_is_absent(tmp_path: Path) -> None:
    assert opened(run(spiro_csv(tmp_path, [session(0, 90, mep_cmh2o=35)]))) == {"NE-MEP40": ["warn"]}
    assert opened(run(spiro_csv(tmp_path, [session(0, 90, mep_cmh2o=35, pcf_lpm=300)]))) == {}
    assert opened(run(spiro_csv(tmp_path, [session(0, 90, mep_cmh2o=45)]))) == {}


def test_16_hours_a_day_is_a_dependence_tier(tmp_path: Path) -> None:
    assert opened(run(niv_csv(tmp_path, nights(0, [17.0] * 7))))["NE-DAYUSE"] == ["high"]
    assert opened(run(niv_csv(tmp_path, nights(0, [15.0] * 7))))["NE-DAYUSE"] == ["warn"]


def test_a_sudden_fall_in_niv_use_against_the_patients_own_month(tmp_path: Path) -> None:
    """Mean use over 14 days stays 5.5 h (NE-ADH silent); the 7-night median halved."""
    dropped = opened(run(niv_csv(tmp_path, nights(0, [8.0] * 30 + [3.0] * 7))))
    assert dropped.get("NE-USEDROP") == ["warn"] and "NE-ADH" not in dropped
    assert "NE-USEDROP" not in opened(run(niv_csv(tmp_path, nights(0, [8.0] * 30 + [4.5] * 7))))


def test_bulbar_decline_whatever_the_niv_status(tmp_path: Path) -> None:
    fell = opened(run(alsfrs_json(tmp_path, [(0, {}), (150, {1: 3, 2: 3, 3: 3})])))
    assert fell.get("TD-BULBDEC") == ["warn"]
    assert "TD-BULBDEC" not in opened(run(alsfrs_json(tmp_path, [(0, {}), (150, {1: 3, 2: 3})])))


def test_a_poor_quality_session_is_evidence_to_confirm_not_silence(tmp_path: Path) -> None:
    """Was: FVC 45 % at grade D raised only DQ-SPIROQC."""
    findings = run(spiro_csv(tmp_path, [session(0, 45, grade="D")]))
    assert opened(findings) == {"NS-FVC50": ["warn"], "DQ-SPIROQC": ["info"]}
    assert "confirm with a repeat test" in first(findings, "NS-FVC50").action
    assert opened(run(spiro_csv(tmp_path, [session(0, 55, grade="D")]))) == {"DQ-SPIROQC": ["info"]}


# ---------------------------------------------------------------------------------- texts and citations
def test_action_texts_follow_a_sites_params(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("rules:\n  NS-FVC50:\n    params: {fvc_pct_pred: 45}\n  NE-PCF270:\n    params: {pcf_lpm: 250}\n")
    local = load_rules(overrides=site)
    assert "below 45 % of predicted" in local.get("NS-FVC50").action
    assert local.get("NE-PCF270").title == "Peak cough flow below 250 L/min"
    assert "below 50 % of predicted" in load_rules().get("NS-FVC50").action


def test_an_unknown_placeholder_is_refused_at_load(tmp_path: Path) -> None:
    from processors.rules import RulesError

    rules = tmp_path / "rules.yaml"
    text = (Path(__file__).parents[3] / "processors" / "rules" / "default.yaml").read_text()
    rules.write_text(text.replace("Sniff nasal inspiratory pressure is below {snip_cmh2o}",
                                  "Sniff nasal inspiratory pressure is below {snip}", 1))
    with pytest.raises(RulesError, match=r"rule NS-SNIP40: field 'action': '\{snip\}' is not a param"):
        load_rules(rules)


def test_citations_say_what_each_figure_rests_on() -> None:
    rules = load_rules()
    assert "not for this cut-off" in rules.get("NS-FVC50").citation
    assert "third arm" in rules.get("NS-FVC80-SYM").citation
    mip = rules.get("NS-MIP60").citation
    assert "60 cmH2O is AAN09" in mip and "40 cmH2O is CHEST23" in mip
    for rule in rules:
        assert rule.citation and rule.sources, rule.id
        assert "{" not in rule.action + rule.title, rule.id


def test_respmon_evaluate_command_backtests_the_sawtooth_night(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = oxi_csv(tmp_path, 0, sawtooth(), hours=8.5)
    assert main(["evaluate", "--json", "--patient", P, str(path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(f["rule_id"], f["severity"], f["state"]) for f in lines] == [("NS-OXI88", "warn", "open")]
