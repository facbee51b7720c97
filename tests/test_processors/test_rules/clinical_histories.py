"""The clinical scenario suite (issue 12): one synthetic patient history per clinical situation, with what the
worker must hold and send at the end of it.

Each builder returns a :class:`History`: records and care-state changes, the time it ends, the alerts that must
be ACTIVE then (category, severity, contributing rules), the rules that must never have raised a finding, and
a notification budget (the most notifications `respmon evaluate --alerts` may send for it).
`test_clinical_suite.py` runs them through the same code as `respmon evaluate --alerts`; the year-long cohort
(`bench/cohort_alerts.py`) measures alert volume on noisier data.

Histories are deterministic (no randomness, no wall clock) and lie in the past (ingest refuses the future).
Lung-function sessions carry demographics (male, 60 y, 175 cm) unless a history is about their absence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from processors.metrics.spirometry import gli_global_fvc
from schemas import AlsfrsR, CareStateChange, NivNight, OximetryNight, SpirometrySession
from tests.scenarios import START, day, gas, tcco2_night
from tests.test_processors.test_rules.clinical_files import Pattern, block, dips, sawtooth, steady

PRED_L = gli_global_fvc("male", 60, 175).predicted_l
"""GLI Global predicted FVC of the suite's patient: SVC % predicted is computed with it (no SVC equation)."""

AlertSpec = tuple[str, str, frozenset[str]]
"""(category, severity, contributing rules) of an alert."""


def alert(category: str, severity: str, *rules: str) -> AlertSpec:
    return (category, severity, frozenset(rules))


@dataclass(frozen=True)
class History:
    """One clinical situation and what the alerts must be after it."""

    name: str
    patient_id: str
    records: list[Any]
    as_of: datetime
    active: frozenset[AlertSpec]
    """Exactly the alerts active at the end (info alerts included: they are kept for the team's view)."""
    silent: frozenset[str]
    """Rules that must never open a finding in this history."""
    budget: int
    """The most notifications the worker may send for the whole history."""
    care_states: tuple[CareStateChange, ...] = ()
    now: datetime | None = None
    """None: each record arrives when recorded (live monitoring); a time: all arrive then (a backfill)."""
    notes: str = ""

    @property
    def items(self) -> list[Any]:
        """What a replay takes: records and care-state changes."""
        return [*self.records, *self.care_states]


# ----------------------------------------------------------------------------------------------- builders
def night(d: int) -> date:
    return START + timedelta(days=d)


def litres(pct: float) -> float:
    """Litres that are `pct` % of the suite patient's GLI Global prediction."""
    return round(PRED_L * pct / 100, 3)


def session(pid: str, d: int, vc: float | None = None, *, fvc_l: float | None = None, svc_pct: float | None = None,
            grade: str | None = "A", demographics: bool = True, posture: str = "sitting", hour: int = 10,
            snip: float | None = None, mip: float | None = None, mep: float | None = None, pcf: float | None = None,
            assisted: bool = False) -> SpirometrySession:
    """A session on day `d`: FVC `vc` % predicted as reported (litres from a 4.0 L prediction), SVC as litres
    of `svc_pct` % of the GLI prediction (its % predicted is computed), muscle and cough tests."""
    if fvc_l is None and vc is not None:
        fvc_l = round(4.0 * vc / 100, 3)
    demo: dict[str, Any] = {"sex": "male", "age_years": 60, "height_cm": 175} if demographics else {}
    return SpirometrySession(
        patient_id=pid, taken_at=day(d, hour), posture=posture, fvc_l=fvc_l, fvc_pct_pred=vc,
        svc_l=None if svc_pct is None else litres(svc_pct), snip_cmh2o=snip, mip_cmh2o=mip, mep_cmh2o=mep,
        pcf_lpm=pcf, pcf_assisted=assisted, grade=grade, **demo)


def oxi(pid: str, d: int, pattern: Pattern | None = None, *, hours: float = 8.0, o2_lpm: float | None = None,
        interval_s: int = 4) -> OximetryNight:
    """The oximetry night of day `d` from 22:00 UTC, SpO2 second by second from `pattern` (95 % steady);
    `o2_lpm` records supplemental oxygen (0 = room air said)."""
    shape = pattern or steady()
    n = round(hours * 3600 / interval_s)
    spo2: list[float | None] = [float(shape(i * interval_s)) for i in range(n)]
    return OximetryNight(patient_id=pid, start=datetime.combine(night(d), time(22), tzinfo=UTC),
                         interval_s=interval_s, spo2=spo2, pulse=[70.0] * n,
                         supplemental_o2=None if o2_lpm is None else o2_lpm > 0, o2_lpm=o2_lpm)


def niv(pid: str, d: int, usage: float = 8.0, *, leak: float | None = 10.0, leak_kind: str = "unintentional",
        ahi: float | None = 2.0, rr: float | None = 16.0, mv: float | None = 7.0, spo2_t90: float | None = None,
        o2_lpm: float | None = None) -> NivNight:
    """The NIV device summary of night `d` (ResMed-like: unintentional leak unless said)."""
    return NivNight(patient_id=pid, night_date=night(d), usage_hours=usage, leak_p95_lpm=leak, leak_kind=leak_kind,
                    ahi=ahi, resp_rate=rr, minute_vent_lpm=mv,
                    tidal_volume_ml=None if mv is None or not rr else round(mv / rr * 1000, 1),
                    spo2_t90_pct=spo2_t90, o2_lpm=o2_lpm)


def nivs(pid: str, first: int, usages: Iterable[float], **kw: Any) -> list[NivNight]:
    """Consecutive NIV nights from day `first`."""
    return [niv(pid, first + i, u, **kw) for i, u in enumerate(usages)]


def form(pid: str, d: int, **items: int) -> AlsfrsR:
    """ALSFRS-R on day `d` at 09:00: every item 4 except those given (`i11=2`)."""
    scores = [4] * 12
    for key, value in items.items():
        scores[int(key.lstrip("i")) - 1] = value
    return AlsfrsR(patient_id=pid, taken_at=day(d, 9), items=scores)


def state(pid: str, name: str, d: int, note: str = "") -> CareStateChange:
    """The team sets care state `name` from day `d` (set that morning)."""
    return CareStateChange(change_id=f"{pid}-{d}-{name}", patient_id=pid, state=name, since=night(d),
                           note=note or None, set_by="dr-suite", set_at=day(d, 8))


def t90(pct: float) -> Pattern:
    """A night whose SpO2 is 89 % (below 90, never <= 88) for `pct` % of 8 h."""
    return block(pct)


# ----------------------------------------------------------------------------------------------- the suite
ALL: list[Callable[[], History]] = []
NIV_START_RULES = frozenset({"NS-FVC50", "NS-FVC80-SYM", "NS-SUPINE", "NS-SNIP40", "NS-MIP60", "NS-OXI88",
                             "NS-T90", "NS-SLOPE", "NS-ORTHO", "NS-DROP10", "NS-VCDROP", "NS-O2NONIV"})
"""The NIV prompts from lung function and oximetry: silent for whoever is on NIV or ventilated invasively."""


def case(build: Callable[[], History]) -> Callable[[], History]:
    """Register a history builder in the suite (file order)."""
    ALL.append(build)
    return build


def pid_of(n: int) -> str:
    return f"SUITE-{n:02d}"


# -- lung function -------------------------------------------------------------------------------------------
@case
def fvc_below_50() -> History:
    """FVC 53 -> 47 % over six months (slow: no slope, no 10-point fall): FVC < 50 % alone."""
    p = pid_of(1)
    recs = [session(p, 0, 53.0, snip=70, mip=75, pcf=380), session(p, 90, 52.0), session(p, 180, 47.0)]
    return History("FVC < 50 % (FVC)", p, recs, day(181), frozenset({alert("NIV_START", "high", "NS-FVC50")}),
                   frozenset({"NS-SLOPE", "NS-DROP10", "NS-FVC80-SYM"}), 1)


@case
def svc_below_50() -> History:
    """A home device measuring SVC only (no FVC): SVC 58 -> 46 % of the GLI prediction."""
    p = pid_of(2)
    recs = [session(p, d, svc_pct=v) for d, v in ((0, 58.0), (90, 54.0), (180, 46.0))]
    return History("FVC < 50 % (via SVC)", p, recs, day(181), frozenset({alert("NIV_START", "high", "NS-FVC50")}),
                   frozenset({"NS-DROP10", "NS-SLOPE", "DQ-DEMOG", "NS-VCDROP"}), 1)


@case
def better_svc_hides_low_fvc() -> History:
    """FVC 46 % but SVC 58 % the same day: the better of the two is read (FVC or SVC), no NIV prompt."""
    p = pid_of(3)
    recs = [session(p, 0, 47.0, svc_pct=60.0), session(p, 60, 46.0, svc_pct=58.0)]
    return History("FVC < 50 % but SVC above it", p, recs, day(61), frozenset(), frozenset({"NS-FVC50"}), 0)


@case
def fvc_below_80_with_orthopnoea() -> History:
    """FVC 70 % and orthopnoea of ALSFRS-R item 11 = 3 (some difficulty, <= 2 pillows): not NS-ORTHO (<= 2)."""
    p = pid_of(4)
    recs = [session(p, 0, 71.0), form(p, 0), form(p, 58, i11=3), session(p, 60, 70.0)]
    return History("FVC < 80 % with orthopnoea", p, recs, day(61),
                   frozenset({alert("NIV_START", "high", "NS-FVC80-SYM")}), frozenset({"NS-ORTHO", "NS-FVC50"}), 1)


@case
def fvc_below_80_with_dyspnoea() -> History:
    """FVC 72 % with dyspnoea on eating or dressing (item 10 = 2)."""
    p = pid_of(5)
    recs = [session(p, 0, 74.0), form(p, 1), session(p, 60, 72.0), form(p, 61, i10=2)]
    return History("FVC < 80 % with dyspnoea", p, recs, day(62),
                   frozenset({alert("NIV_START", "high", "NS-FVC80-SYM")}), frozenset({"NS-ORTHO"}), 1)


@case
def fvc_below_80_without_symptoms() -> History:
    """FVC 72 % with no symptom on ALSFRS-R: CHEST23's 80 % criterion needs a symptom."""
    p = pid_of(6)
    recs = [session(p, 0, 74.0), form(p, 1), session(p, 60, 72.0), form(p, 61, i10=3)]
    return History("FVC < 80 % without symptoms", p, recs, day(62), frozenset(),
                   frozenset({"NS-FVC80-SYM", "NS-ORTHO"}), 0)


@case
def orthopnoea_alone() -> History:
    """FVC 92 % and item 11 = 2 (needs extra pillows): AAN09 orthopnoea alone -> consider NIV."""
    p = pid_of(7)
    recs = [session(p, 0, 92.0), form(p, 30, i11=2)]
    return History("orthopnoea alone", p, recs, day(31), frozenset({alert("NIV_START", "high", "NS-ORTHO")}),
                   frozenset({"NS-FVC80-SYM", "NS-FVC50"}), 1)


@case
def snip_below_40() -> History:
    p = pid_of(8)
    recs = [session(p, 0, 85.0, snip=52), session(p, 60, 84.0, snip=36)]
    return History("SNIP < 40", p, recs, day(61), frozenset({alert("NIV_START", "high", "NS-SNIP40")}),
                   frozenset({"NS-MIP60", "NS-FVC50"}), 1)


@case
def mip_below_60() -> History:
    """MIP 55 cmH2O (AAN09/CMS): high, without the CHEST23 sentence (that is below 40)."""
    p = pid_of(9)
    recs = [session(p, 0, 85.0, mip=72), session(p, 60, 84.0, mip=55)]
    return History("MIP < 60", p, recs, day(61), frozenset({alert("NIV_START", "high", "NS-MIP60")}),
                   frozenset({"NS-SNIP40"}), 1)


@case
def mip_and_snip_below_40() -> History:
    """MIP 35 and SNIP 38 in one session: one tier (high), one alert, one message."""
    p = pid_of(10)
    recs = [session(p, 0, 80.0, mip=35, snip=38)]
    return History("MIP < 40 and SNIP < 40", p, recs, day(1),
                   frozenset({alert("NIV_START", "high", "NS-MIP60", "NS-SNIP40")}), frozenset(), 1)


@case
def supine_drop() -> History:
    """Sitting FVC 75 %, supine 3.0 -> 2.2 L (27 % fall) the same day: diaphragm weakness."""
    p = pid_of(11)
    recs = [session(p, 0, 75.0), session(p, 0, 54.0, posture="supine", hour=11)]
    return History("sitting-to-supine drop", p, recs, day(1), frozenset({alert("NIV_START", "warn", "NS-SUPINE")}),
                   frozenset({"NS-FVC50"}), 1)


@case
def fall_of_10_points_in_3_months() -> History:
    """85 -> 74 % in 90 days: too slow to project 50 % within 90 days, fast enough to be told."""
    p = pid_of(12)
    recs = [session(p, 0, 85.0), session(p, 45, 80.0), session(p, 90, 74.0)]
    return History("rapid decline, 10 points in 3 months", p, recs, day(91),
                   frozenset({alert("NIV_START", "warn", "NS-DROP10")}), frozenset({"NS-SLOPE", "NS-FVC80-SYM"}), 1)


@case
def fall_in_litres_without_percent_predicted() -> History:
    """No % predicted and no demographics: 3.0 -> 2.3 L is watched in litres (and the demographics asked for)."""
    p = pid_of(13)
    recs = [session(p, d, fvc_l=v, demographics=False) for d, v in ((0, 3.0), (60, 2.7), (120, 2.3))]
    return History("decline in litres without % predicted", p, recs, day(121),
                   frozenset({alert("NIV_START", "warn", "NS-VCDROP"), alert("DATA_QUALITY", "warn", "DQ-DEMOG")}),
                   frozenset({"NS-FVC50", "NS-DROP10"}), 2)


@case
def slope_projection() -> History:
    """-3.2 points a month from 65 %: 50 % projected within 90 days at day 60; never 10 points in 92 days."""
    p = pid_of(14)
    recs = [session(p, d, v) for d, v in ((0, 65.0), (30, 61.8), (60, 58.6), (90, 55.4))]
    return History("slope projection", p, recs, day(91), frozenset({alert("NIV_START", "warn", "NS-SLOPE")}),
                   frozenset({"NS-DROP10", "NS-FVC50"}), 1)


@case
def poor_quality_session_below_50() -> History:
    """FVC 45 % at grade D: evidence at a lower severity (warn), asking for a repeat test, not silence."""
    p = pid_of(15)
    recs = [session(p, 0, 60.0), session(p, 30, 45.0, grade="D")]
    return History("poor-quality session below threshold", p, recs, day(31),
                   frozenset({alert("NIV_START", "warn", "NS-FVC50"), alert("DATA_QUALITY", "info", "DQ-SPIROQC")}),
                   frozenset({"NS-DROP10", "NS-SLOPE"}), 1)


@case
def rapid_decliner_starts_niv() -> History:
    """FVC falls 6 points a month; NIV_START opens at warn (10-point fall), rises to high (< 50 %), and resolves
    as no longer applying when NIV starts; no message after that."""
    p = pid_of(16)
    recs: list[Any] = [session(p, d, round(90.0 - 6.0 * d / 30.0, 1)) for d in range(0, 211, 14)]
    recs += nivs(p, 215, [7.5] * 20)
    return History("rapid decliner who starts NIV", p, recs, day(236), frozenset(), frozenset({"NE-ADH"}), 2)


# -- cough --------------------------------------------------------------------------------------------------
@case
def cough_flow_falls_below_270_then_160() -> History:
    """PCF 240 then 150 L/min: one finding, one alert (warn, then worsened to high)."""
    p = pid_of(17)
    recs = [session(p, 0, 85.0, pcf=240), session(p, 60, 84.0, pcf=150)]
    return History("PCF < 270 then < 160 as one alert", p, recs, day(61),
                   frozenset({alert("NIV_ESCALATE", "high", "NE-PCF270")}), frozenset({"TD-COUGH"}), 2)


@case
def weak_expiratory_muscles_without_pcf() -> History:
    p = pid_of(18)
    recs = [session(p, 0, 85.0, mep=55), session(p, 60, 84.0, mep=35)]
    return History("MEP < 40 without PCF", p, recs, day(61), frozenset({alert("NIV_ESCALATE", "warn", "NE-MEP40")}),
                   frozenset({"NE-PCF270"}), 1)


@case
def ineffective_assisted_cough() -> History:
    """Assisted PCF 150 L/min (cough augmentation in place): tracheostomy discussion."""
    p = pid_of(19)
    recs = [session(p, 0, 60.0, pcf=150, assisted=True)]
    return History("ineffective assisted cough", p, recs, day(1),
                   frozenset({alert("TRACH_DISCUSS", "high", "TD-COUGH")}), frozenset({"NE-PCF270"}), 1)


# -- nocturnal oximetry ---------------------------------------------------------------------------------------
@case
def cumulative_desaturation() -> History:
    """Six separate 1-minute dips to 86 % a night (6 min <= 88 % in all, no 5-minute run), nights 3 to 6."""
    p = pid_of(20)
    recs = [session(p, 0, 85.0)] + [oxi(p, d, dips(6) if d >= 3 else None) for d in range(7)]
    return History("cumulative nocturnal desaturation", p, recs, day(8),
                   frozenset({alert("NIV_START", "high", "NS-OXI88")}), frozenset({"NS-T90", "NS-O2NONIV"}), 2,
                   notes="warn on the first night, high on the second of three (recurring)")


@case
def sawtooth_desaturation() -> History:
    """100-s dips to 86 % with 20-s recoveries at 92 % all night: no run lasts 5 min, T90 is 80 %."""
    p = pid_of(21)
    recs = [oxi(p, d, sawtooth(), hours=8.5) for d in range(3)]
    return History("sawtooth desaturation", p, recs, day(4),
                   frozenset({alert("NIV_START", "high", "NS-OXI88", "NS-T90")}), frozenset({"NS-O2NONIV"}), 2)


@case
def t90_above_10_on_one_night() -> History:
    """One night with T90 12 % (SpO2 89 %, never <= 88) among normal ones: ACI12 abnormal; NS-T90 needs 2 of 3."""
    p = pid_of(22)
    recs = [oxi(p, d, t90(12) if d == 3 else t90(2)) for d in range(6)]
    return History("T90 > 10 % on a single night", p, recs, day(7),
                   frozenset({alert("NIV_START", "warn", "NS-OXI88")}), frozenset({"NS-T90"}), 1)


@case
def desaturation_on_oxygen() -> History:
    """Home oxygen 2 L/min and still 6 min <= 88 % on nights 0-2: worse, not invalid (high, then urgent)."""
    p = pid_of(23)
    recs = [oxi(p, d, dips(6), o2_lpm=2.0) for d in range(3)]
    return History("desaturation on oxygen", p, recs, day(4),
                   frozenset({alert("NIV_START", "urgent", "NS-OXI88", "NS-O2NONIV")}), frozenset(), 2)


@case
def home_oxygen_without_niv() -> History:
    """Oximetry on 1 L/min oxygen, SpO2 95 %, not on NIV: oxygen alone can hide CO2 retention."""
    p = pid_of(24)
    recs = [oxi(p, d, o2_lpm=1.0) for d in range(3)]
    return History("home oxygen without NIV", p, recs, day(4), frozenset({alert("NIV_START", "warn", "NS-O2NONIV")}),
                   frozenset({"NS-OXI88", "NS-T90"}), 1)


@case
def short_oximetry_nights() -> History:
    """Three 2.5-h recordings in a week: too short to judge (the desaturation rules are blind)."""
    p = pid_of(25)
    recs = [oxi(p, d, hours=8.0 if d < 4 else 2.5) for d in range(7)]
    return History("oximetry nights too short", p, recs, day(8),
                   frozenset({alert("DATA_QUALITY", "warn", "DQ-OXINVALID")}), frozenset({"NS-OXI88"}), 1,
                   notes="info on the first short night (not sent), warn at three")


# -- NIV device data ------------------------------------------------------------------------------------------
@case
def poor_adherence() -> History:
    """3 h a night for 40 nights: below CMS's 4 h once the first 14 days are past."""
    p = pid_of(26)
    recs: list[Any] = [form(p, 0, i12=3), *nivs(p, 0, [3.0] * 40)]
    return History("NIV adherence < 4 h", p, recs, day(41), frozenset({alert("NIV_ESCALATE", "warn", "NE-ADH")}),
                   frozenset({"TD-INTOL", "NE-USEDROP"}), 1)


@case
def sudden_fall_in_use() -> History:
    """8 h for 30 nights then 3 h for 7: the 14-day mean (5.5 h) hides it, the patient's own month does not."""
    p = pid_of(27)
    recs = nivs(p, 0, [8.0] * 30 + [3.0] * 7)
    return History("sudden fall in NIV use", p, recs, day(38), frozenset({alert("NIV_ESCALATE", "warn", "NE-USEDROP")}),
                   frozenset({"NE-ADH"}), 1)


@case
def use_above_16_hours() -> History:
    """8 h for 30 nights, then 17 h: the UK dependence tier (high) without near-continuous use."""
    p = pid_of(28)
    recs: list[Any] = [form(p, 0, i2=2, i3=2), *nivs(p, 0, [8.0] * 30 + [17.0] * 14)]
    return History("NIV >= 16 h/day", p, recs, day(45), frozenset({alert("NIV_ESCALATE", "high", "NE-DAYUSE")}),
                   frozenset({"TD-DEP"}), 1)


@case
def use_above_20_hours() -> History:
    """10 h for 30 nights, then 21 h: NE-DAYUSE (high) and the tracheostomy discussion (TD-DEP)."""
    p = pid_of(29)
    recs = nivs(p, 0, [10.0] * 30 + [21.0] * 14)
    return History("NIV >= 20 h/day", p, recs, day(45),
                   frozenset({alert("NIV_ESCALATE", "high", "NE-DAYUSE"), alert("TRACH_DISCUSS", "high", "TD-DEP")}),
                   frozenset(), 2)


@case
def unintentional_leak() -> History:
    """ResMed unintentional leak 30 L/min (95th percentile) from night 7."""
    p = pid_of(30)
    recs = nivs(p, 0, [8.0] * 7) + nivs(p, 7, [8.0] * 7, leak=30.0)
    return History("unintentional leak", p, recs, day(15), frozenset({alert("NIV_ESCALATE", "warn", "NE-LEAK")}),
                   frozenset(), 1)


@case
def total_leak() -> History:
    """Philips-like total leak 40 L/min (the mask's vent flow included): normal, never compared with 24."""
    p = pid_of(31)
    recs = nivs(p, 0, [8.0] * 14, leak=40.0, leak_kind="total")
    return History("total leak", p, recs, day(15), frozenset(), frozenset({"NE-LEAK"}), 0)


@case
def leak_of_unknown_kind() -> History:
    """A source that does not say its leak kind (40 L/min): never compared with the unintentional limit."""
    p = pid_of(32)
    recs = nivs(p, 0, [8.0] * 14, leak=40.0, leak_kind="unknown")
    return History("leak of unknown kind", p, recs, day(15), frozenset(), frozenset({"NE-LEAK"}), 0)


@case
def residual_ahi() -> History:
    """Device AHI 3 for a week, then 14: the 7-night median passes 10 (warn) at once."""
    p = pid_of(33)
    recs = nivs(p, 0, [8.0] * 7) + nivs(p, 7, [8.0] * 10, ahi=14.0)
    return History("residual AHI", p, recs, day(18), frozenset({alert("NIV_ESCALATE", "warn", "NE-AHI")}),
                   frozenset(), 1)


@case
def desaturation_on_niv() -> History:
    """6 h of NIV a night and the device's SpO2 below 90 % for 8 % of the night: high."""
    p = pid_of(34)
    recs = nivs(p, 0, [6.0] * 10, spo2_t90=8.0)
    return History("desaturation on NIV", p, recs, day(11), frozenset({alert("NIV_ESCALATE", "high", "NE-DESAT")}),
                   frozenset(), 1)


@case
def desaturation_on_niv_and_oxygen() -> History:
    """The same with 2 L/min of oxygen bled into the circuit: urgent (hypoventilation likely masked)."""
    p = pid_of(35)
    recs = nivs(p, 0, [6.0] * 10, spo2_t90=8.0, o2_lpm=2.0)
    return History("desaturation on NIV despite oxygen", p, recs, day(11),
                   frozenset({alert("NIV_ESCALATE", "urgent", "NE-DESAT")}), frozenset(), 1)


@case
def adherence_recovers_after_a_poor_spell() -> History:
    """7.5 h a night, 25 nights of 2.5 h (a cold, a sore nose), then 7.5 h again for a month: the poor spell is
    told once; its end is adherence coming back, not rising daytime use (NE-DAYUSE's rise arm said so: fixed)."""
    p = pid_of(60)
    recs = nivs(p, 0, [7.5] * 30 + [2.5] * 25 + [7.5] * 30)
    return History("adherence recovers after a poor spell", p, recs, day(86), frozenset(),
                   frozenset({"NE-DAYUSE", "TD-INTOL"}), 1)


@case
def desaturation_on_niv_clears_and_returns() -> History:
    """Device T90 8 % for 20 nights (NE-DESAT, then TD-FAIL after 14 days), 16 clear nights (NE-DESAT resolves),
    20 nights of 8 % again: the desaturation is news again, the tracheostomy discussion is not (it re-raised
    with a 14-day dwell, which can never outlast the 14 days NE-DESAT must be open to raise it: fixed)."""
    p = pid_of(61)
    recs = nivs(p, 0, [6.0] * 20, spo2_t90=8.0) + nivs(p, 20, [6.0] * 16, spo2_t90=1.0) + nivs(
        p, 36, [6.0] * 20, spo2_t90=8.0)
    return History("desaturation on NIV clears and returns", p, recs, day(57),
                   frozenset({alert("NIV_ESCALATE", "high", "NE-DESAT"), alert("TRACH_DISCUSS", "high", "TD-FAIL")}),
                   frozenset(), 3)


@case
def nights_without_use() -> History:
    """FVC 45 %; the device reports 0 h for 20 nights: not NIV (the prompt stays), an adherence matter."""
    p = pid_of(36)
    recs: list[Any] = [session(p, 0, 45.0), *nivs(p, 10, [0.0] * 20)]
    return History("nights with 0 h are not NIV", p, recs, day(31),
                   frozenset({alert("NIV_START", "high", "NS-FVC50"), alert("NIV_ESCALATE", "warn", "NE-ADH")}),
                   frozenset({"TD-INTOL"}), 2)


@case
def established_user_uploads_stop() -> History:
    """40 nights of 8 h, then no uploads; a session at day 80 shows FVC 45 %: a data matter, not 'start NIV'."""
    p = pid_of(37)
    recs: list[Any] = [*nivs(p, 0, [8.0] * 40), session(p, 80, 45.0)]
    return History("established NIV user whose uploads stop", p, recs, day(81),
                   frozenset({alert("DATA_QUALITY", "warn", "DQ-NOUPLOAD")}), NIV_START_RULES, 1)


@case
def intolerance_needs_enough_nights() -> History:
    """Two 1-h nights 35 days apart, then FVC 45 % (after the second night's summary): no trial of NIV to call
    a failure, and a night of use in the last 30 days is NIV (no prompt to start it)."""
    p = pid_of(38)
    recs: list[Any] = [niv(p, 0, 1.0), niv(p, 35, 1.0), session(p, 36, 45.0, hour=13)]
    return History("TD-INTOL needs enough nights", p, recs, day(37), frozenset(),
                   frozenset({"TD-INTOL", "NE-ADH", "NS-FVC50"}), 0)


@case
def niv_not_tolerated() -> History:
    """A 1-h night at day 0, then eight 1-h nights from day 29, FVC 45 %: NIV not tolerated."""
    p = pid_of(39)
    recs: list[Any] = [niv(p, 0, 1.0), *nivs(p, 29, [1.0] * 8), session(p, 36, 45.0)]
    return History("NIV not tolerated", p, recs, day(38),
                   frozenset({alert("TRACH_DISCUSS", "high", "TD-INTOL"), alert("NIV_ESCALATE", "warn", "NE-ADH")}),
                   frozenset(), 2)


@case
def vital_capacity_below_30_on_niv() -> History:
    p = pid_of(40)
    recs: list[Any] = [*nivs(p, 0, [9.0] * 20), session(p, 19, 28.0)]
    return History("VC < 30 % on NIV", p, recs, day(21), frozenset({alert("TRACH_DISCUSS", "warn", "TD-VC30")}),
                   NIV_START_RULES, 1)


# -- ALSFRS-R -------------------------------------------------------------------------------------------------
@case
def bulbar_decline() -> History:
    """Speech, salivation and swallowing each lose a point within 3 months (not on NIV)."""
    p = pid_of(41)
    recs = [form(p, 0), form(p, 90, i1=3, i2=3, i3=3)]
    return History("bulbar decline", p, recs, day(91), frozenset({alert("TRACH_DISCUSS", "warn", "TD-BULBDEC")}),
                   frozenset({"TD-BULBAR"}), 1)


@case
def tube_feeding_alone() -> History:
    """On NIV; swallowing 2 -> 1 (gastrostomy, supplemental tube feeding): not severe bulbar dysfunction."""
    p = pid_of(42)
    recs: list[Any] = [form(p, 0, i3=2), *nivs(p, 0, [8.0] * 30), form(p, 20, i3=1)]
    return History("tube feeding alone", p, recs, day(31), frozenset(), frozenset({"TD-BULBAR", "TD-BULBDEC"}), 0)


@case
def nothing_by_mouth_on_niv() -> History:
    """On NIV; swallowing 1 -> 0 (nothing by mouth): severe bulbar dysfunction on NIV."""
    p = pid_of(43)
    recs: list[Any] = [form(p, 0, i3=1), *nivs(p, 0, [8.0] * 30), form(p, 20, i3=0)]
    return History("nothing by mouth on NIV", p, recs, day(31),
                   frozenset({alert("TRACH_DISCUSS", "warn", "TD-BULBAR")}), frozenset({"TD-BULBDEC"}), 1)


@case
def item_12_zero_is_invasive_ventilation() -> History:
    """ALSFRS-R item 12 = 0: tracheostomy ventilation already. 23 h a night on the ventilator, FVC 25 %, SNIP 20:
    no NIV prompt, no dependence or tracheostomy discussion, no NIV-use rule; the cough still speaks."""
    p = pid_of(44)
    recs: list[Any] = [form(p, 0, i12=0), *nivs(p, 0, [23.0] * 20), session(p, 15, 25.0, snip=20, pcf=120)]
    return History("ALSFRS-R item 12 = 0", p, recs, day(21), frozenset({alert("NIV_ESCALATE", "high", "NE-PCF270")}),
                   NIV_START_RULES | {"TD-DEP", "TD-VC30", "TD-COUGH", "NE-DAYUSE", "NE-ADH", "NE-USEDROP"}, 1)


# -- care states ----------------------------------------------------------------------------------------------
@case
def niv_declined_keeps_safety_rules() -> History:
    """FVC 45 %; NIV declined from day 10: SNIP 35 raises nothing, hypercapnia (day 30), home oxygen (day 45)
    and a cough flow of 150 (day 40) still speak."""
    p = pid_of(45)
    recs: list[Any] = [session(p, 0, 45.0), session(p, 20, 44.0, snip=35), gas(p, day(30), 50.0, sample="capillary"),
                       session(p, 40, 43.0, pcf=150), *[oxi(p, d, o2_lpm=1.0) for d in (45, 46)]]
    return History("NIV declined", p, recs, day(47),
                   frozenset({alert("NIV_START", "urgent", "NS-PACO2", "NS-O2NONIV"),
                              alert("NIV_ESCALATE", "high", "NE-PCF270")}),
                   frozenset({"NS-SNIP40", "NS-MIP60"}), 3, (state(p, "niv_declined", 10, "declined at clinic"),))


@case
def team_sets_invasive_ventilation() -> History:
    """NIV use climbs to 21 h (NE-DAYUSE, TD-DEP); tracheostomy from day 40 (team): both end as no longer
    applying; 23.5 h ventilator nights raise nothing; a cough flow of 150 at day 50 still speaks."""
    p = pid_of(46)
    recs: list[Any] = [*nivs(p, 0, [10.0] * 30 + [21.0] * 10 + [23.5] * 20), session(p, 50, 25.0, pcf=150)]
    return History("invasive ventilation (team)", p, recs, day(61),
                   frozenset({alert("NIV_ESCALATE", "high", "NE-PCF270")}),
                   NIV_START_RULES | {"TD-VC30", "NE-ADH"}, 3,
                   (state(p, "invasive_ventilation", 40, "tracheostomy"),))


@case
def end_of_life() -> History:
    """FVC 45 % and PCF 150 raise their alerts; end of life from day 10: they end, and hypercapnia, SNIP 20 and
    FVC 35 % later raise nothing."""
    p = pid_of(47)
    recs: list[Any] = [session(p, 0, 45.0, pcf=150), session(p, 20, 35.0, snip=20, pcf=120),
                       gas(p, day(25), 55.0), *[oxi(p, d, dips(8)) for d in range(26, 30)]]
    return History("end of life", p, recs, day(31), frozenset(),
                   frozenset({"NS-SNIP40", "NS-PACO2", "NS-OXI88", "TD-COUGH"}), 2,
                   (state(p, "end_of_life", 10, "comfort care"),))


@case
def left_service() -> History:
    """The patient moved away from day 10: their alerts end and later data raise nothing (keeps nothing)."""
    p = pid_of(48)
    recs: list[Any] = [session(p, 0, 45.0), *nivs(p, 20, [2.0] * 20), session(p, 30, 30.0, pcf=140)]
    return History("left the service", p, recs, day(41), frozenset(),
                   frozenset({"NE-ADH", "NE-PCF270", "TD-VC30", "DQ-NOUPLOAD"}), 1,
                   (state(p, "left_service", 10, "moved to another region"),))


# -- CO2 ------------------------------------------------------------------------------------------------------
@case
def arterial_hypercapnia() -> History:
    """FVC 70 %, arterial pCO2 47 mmHg: chronic hypercapnic respiratory failure (urgent)."""
    p = pid_of(49)
    recs: list[Any] = [session(p, 0, 70.0), gas(p, day(10), 47.0, bicarbonate=26.0)]
    return History("hypercapnia: blood gas >= 45", p, recs, day(11),
                   frozenset({alert("NIV_START", "urgent", "NS-PACO2")}), frozenset({"NS-CO2SCREEN"}), 1)


@case
def venous_screen() -> History:
    """A venous gas of 47 mmHg (arterial unknown): a screen to confirm, not a diagnosis."""
    p = pid_of(50)
    recs: list[Any] = [session(p, 0, 70.0), gas(p, day(10), 47.0, sample="venous", bicarbonate=26.0)]
    return History("hypercapnia screen: venous gas", p, recs, day(11),
                   frozenset({alert("NIV_START", "warn", "NS-CO2SCREEN")}), frozenset({"NS-PACO2"}), 1)


@case
def capnography_aasm() -> History:
    """Overnight TcCO2: 15 minutes above 55 mmHg (AASM sleep-related hypoventilation)."""
    p = pid_of(51)
    recs: list[Any] = [session(p, 0, 70.0), tcco2_night(p, night(5), peak_min=15.0)]
    return History("hypercapnia: capnography AASM", p, recs, day(7),
                   frozenset({alert("NIV_START", "high", "NS-TCCO2")}), frozenset({"NS-PACO2", "NE-CO2"}), 1)


@case
def hypercapnia_persisting_on_niv() -> History:
    """On NIV for 40 nights, then a capillary gas of 52 mmHg: ventilation is not correcting CO2."""
    p = pid_of(52)
    recs: list[Any] = [*nivs(p, 0, [7.0] * 40), gas(p, day(39), 52.0, sample="capillary")]
    return History("hypercapnia on NIV", p, recs, day(41), frozenset({alert("NIV_ESCALATE", "high", "NE-CO2")}),
                   frozenset({"NS-PACO2"}), 1)


# -- alert burden ---------------------------------------------------------------------------------------------
@case
def backfilled_year() -> History:
    """A year of an SD card sent in one go: FVC 45 % before NIV, a month of high AHI, a fortnight of poor use, and
    a leak that began two months ago and still holds. Only the leak is news (announced once)."""
    p = pid_of(53)
    recs: list[Any] = [session(p, 0, 45.0)]
    for d in range(20, 366):
        ahi = 14.0 if 100 <= d < 130 else 3.0
        usage = 2.5 if 200 <= d < 225 else 7.5
        leak = 32.0 if d >= 305 else 12.0
        recs.append(niv(p, d, usage, ahi=ahi, leak=leak))
    recs += [session(p, d, 42.0) for d in (120, 240, 360)]
    return History("backfill of a year", p, recs, day(367), frozenset({alert("NIV_ESCALATE", "warn", "NE-LEAK")}),
                   frozenset(), 1, now=day(367), notes="everything else is history: stored, not sent")


@case
def flapping_oximetry() -> History:
    """T90 jitters around 10 % (9 or 11 %), one night in three above it, for 60 nights: one alert, no
    re-openings (0.1.0: NS-T90 and the desaturation rule opened and resolved night after night)."""
    p = pid_of(54)
    recs = [oxi(p, d, t90(11 if d % 3 == 2 else 9)) for d in range(60)]
    return History("flapping oximetry", p, recs, day(61), frozenset({alert("NIV_START", "warn", "NS-OXI88")}),
                   frozenset({"NS-T90"}), 1)


@case
def flapping_oximetry_every_other_night() -> History:
    """T90 14 % every other night: recurring (2 of 3 nights), so warn then high, and nothing after that."""
    p = pid_of(55)
    recs = [oxi(p, d, t90(14 if d % 2 else 2)) for d in range(60)]
    return History("flapping oximetry, every other night", p, recs, day(61),
                   frozenset({alert("NIV_START", "high", "NS-OXI88", "NS-T90")}), frozenset(), 2,
                   notes="the second message is the recurrence tier (2 of 3 nights), two nights after the first")


@case
def flapping_ahi() -> History:
    """On NIV; AHI 12 and 8 on alternate nights: the 7-night median crosses 10 back and forth."""
    p = pid_of(56)
    recs = nivs(p, 0, [8.0] * 14) + [niv(p, 14 + i, 8.0, ahi=12.0 if i % 2 else 8.0) for i in range(60)]
    return History("flapping AHI", p, recs, day(75), frozenset({alert("NIV_ESCALATE", "warn", "NE-AHI")}),
                   frozenset(), 1, notes="info (not routed) then warn, once")


@case
def stable_patient() -> History:
    """A year of a well patient: quarterly lung function, monthly oximetry, ALSFRS-R every 3 months."""
    p = pid_of(57)
    recs: list[Any] = []
    for d in range(0, 361, 90):
        recs += [session(p, d, 92.0 + (1 if d % 180 else -1), snip=85, mip=90, mep=100, pcf=420), form(p, d + 1)]
    recs += [oxi(p, d, t90(1)) for d in range(0, 361, 30)]
    return History("stable patient", p, recs, day(362), frozenset(), NIV_START_RULES, 0)


@case
def stable_niv_user() -> History:
    """Six months of adherent NIV (7-9 h) with ordinary night-to-night variation: nothing to tell."""
    p = pid_of(58)
    usage = [7.0, 8.5, 9.0, 7.5, 8.0, 7.2, 8.8]
    ahi = [2.0, 3.5, 1.5, 4.0, 2.5, 3.0, 1.0]
    leak = [8.0, 14.0, 20.0, 11.0, 26.0, 9.0, 12.0]
    recs: list[Any] = [form(p, 0, i12=3)]
    recs += [niv(p, d, usage[d % 7], ahi=ahi[d % 5], leak=leak[d % 7], rr=16.0 + d % 3) for d in range(180)]
    recs += [session(p, d, 60.0 - d / 60) for d in (0, 90, 179)]
    return History("stable NIV user", p, recs, day(181), frozenset(),
                   NIV_START_RULES | {"NE-ADH", "NE-LEAK", "NE-AHI", "NE-RRDEV", "NE-USEDROP"}, 0)


@case
def no_lung_function_for_six_months() -> History:
    p = pid_of(59)
    recs: list[Any] = [session(p, 0, 80.0), *[oxi(p, d) for d in range(0, 200, 30)]]
    return History("no lung function for 6 months", p, recs, day(200),
                   frozenset({alert("DATA_QUALITY", "warn", "DQ-PFT6M")}), frozenset(), 1)


def all_histories() -> list[History]:
    return [build() for build in ALL]


