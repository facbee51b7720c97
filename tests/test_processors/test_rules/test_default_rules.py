"""Table-driven: each default rule fires on a minimal history and does not fire just below its threshold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from processors.rules import PatientHistory, evaluate, load_rules
from processors.rules.history import event_time
from tests.scenarios import START, alsfrs, day, gas, niv_night, oxi_night, spiro, tcco2_night

P = "T-1"
RULES = load_rules()


def night(i: int) -> Any:
    return START + timedelta(days=i)


def nivs(usages: list[float], start: int = 0, **kw: Any) -> list[Any]:
    return [niv_night(P, night(start + i), u, **kw) for i, u in enumerate(usages)]


def nivs_with(n: int, start: int = 0, usage: float = 8.0, **per_night: list[Any]) -> list[Any]:
    """n NIV nights; keyword lists give a per-night value (e.g. ahi=[...])."""
    out = []
    for i in range(n):
        kw = {k: v[i] for k, v in per_night.items()}
        out.append(niv_night(P, night(start + i), usage, **kw))
    return out


def fvc_trend(per_month: float, start_value: float) -> list[Any]:
    return [spiro(P, day(d), round(start_value + per_month * d / 30.4, 3)) for d in (0, 30, 60, 90, 120)]


@dataclass
class Case:
    rule: str
    name: str
    records: Callable[[], list[Any]]
    severity: str | None
    """Expected severity; None = must not hold."""
    after: timedelta = timedelta(0)
    """as_of = newest event time + after."""
    prepare: Callable[[PatientHistory, datetime], None] | None = None
    action_contains: str | None = None


def _open_desat(days: float) -> Callable[[PatientHistory, datetime], None]:
    def prep(h: PatientHistory, as_of: datetime) -> None:
        h.open["NE-DESAT"] = {"severity": "high", "category": "NIV_ESCALATE",
                              "opened_at": (as_of - timedelta(days=days)).isoformat(),
                              "changed_at": (as_of - timedelta(days=days)).isoformat(), "rule_version": "0.1.0"}
    return prep


T = timedelta
CASES = [
    # ------------------------------------------------------------------ NIV_START
    Case("NS-FVC50", "fvc 49", lambda: [spiro(P, day(0), 49.0)], "high"),
    Case("NS-FVC50", "fvc 50", lambda: [spiro(P, day(0), 50.0)], None),
    Case("NS-FVC50", "grade unknown asks for repeat", lambda: [spiro(P, day(0), 49.0, grade=None)], "high",
         action_contains="repeat the test"),
    # issue 12: a poor-quality session below the threshold is evidence, not silence (round 1 expected None)
    Case("NS-FVC50", "grade F below: warn, confirm",
         lambda: [spiro(P, day(0), 60.0), spiro(P, day(1), 40.0, grade="F")], "warn",
         action_contains="confirm with a repeat test"),
    Case("NS-FVC50", "grade F above", lambda: [spiro(P, day(0), 60.0), spiro(P, day(1), 55.0, grade="F")], None),
    Case("NS-FVC50", "SVC better than FVC", lambda: [spiro(P, day(0), 45.0, svc_l=3.4)], None),
    Case("NS-FVC80-SYM", "poor session + orthopnoea",
         lambda: [alsfrs(P, day(0, 9), i11=3), spiro(P, day(1), 79.0, grade="D")], "warn"),
    Case("NS-FVC50", "on NIV", lambda: [*nivs([6.0]), spiro(P, day(2), 40.0)], None),
    Case("NS-FVC80-SYM", "fvc 79 + orthopnoea", lambda: [alsfrs(P, day(0, 9), i11=3), spiro(P, day(1), 79.0)], "high"),
    Case("NS-FVC80-SYM", "fvc 79 + dyspnoea", lambda: [alsfrs(P, day(0, 9), i10=2), spiro(P, day(1), 79.0)], "high"),
    Case("NS-FVC80-SYM", "fvc 80 + orthopnoea", lambda: [alsfrs(P, day(0, 9), i11=3), spiro(P, day(1), 80.0)], None),
    Case("NS-FVC80-SYM", "fvc 79, dyspnoea item 3", lambda: [alsfrs(P, day(0, 9), i10=3), spiro(P, day(1), 79.0)],
         None),
    Case("NS-FVC80-SYM", "symptom 100 d old", lambda: [alsfrs(P, day(0, 9), i11=3), spiro(P, day(99, 10), 79.0)],
         "high"),
    Case("NS-FVC80-SYM", "symptom 101 d old", lambda: [alsfrs(P, day(0, 9), i11=3), spiro(P, day(101, 10), 79.0)],
         None),
    Case("NS-SUPINE", "drop 20 %", lambda: [spiro(P, day(0, 10), 79.0, fvc_l=3.0),
                                            spiro(P, day(0, 11), None, fvc_l=2.4, posture="supine")], "warn"),
    Case("NS-SUPINE", "drop 19 %", lambda: [spiro(P, day(0, 10), 79.0, fvc_l=3.0),
                                            spiro(P, day(0, 11), None, fvc_l=2.43, posture="supine")], None),
    Case("NS-SUPINE", "drop 20 % but fvc 80", lambda: [spiro(P, day(0, 10), 80.0, fvc_l=3.0),
                                                       spiro(P, day(0, 11), None, fvc_l=2.4, posture="supine")], None),
    Case("NS-SNIP40", "snip 39", lambda: [spiro(P, day(0), 90.0, snip=39)], "high"),
    Case("NS-SNIP40", "snip 40", lambda: [spiro(P, day(0), 90.0, snip=40)], None),
    Case("NS-MIP60", "mip 59", lambda: [spiro(P, day(0), 90.0, mip=59)], "high"),
    # issue 12: MIP < 40 belongs to the tier of SNIP < 40 and FVC < 50 % (round 1 expected urgent)
    Case("NS-MIP60", "mip 39 high, CHEST23", lambda: [spiro(P, day(0), 90.0, mip=-39)], "high",
         action_contains="CHEST 2023"),
    Case("NS-MIP60", "mip 60", lambda: [spiro(P, day(0), 90.0, mip=60)], None),
    Case("NS-OXI88", "one night 5 min", lambda: [oxi_night(P, night(0), low_run_min=5.0)], "warn"),
    Case("NS-OXI88", "2 of 3 nights", lambda: [oxi_night(P, night(0), low_run_min=6.0), oxi_night(P, night(1)),
                                               oxi_night(P, night(2), low_run_min=6.0)], "high"),
    Case("NS-OXI88", "4.9 min", lambda: [oxi_night(P, night(0), low_run_min=4.9)], None),
    # issue 12: oxygen nights count and make it worse (round 1 dropped them: expected None)
    Case("NS-OXI88", "on oxygen", lambda: [oxi_night(P, night(0), low_run_min=8.0, on_o2=True)], "high",
         action_contains="supplemental oxygen"),
    Case("NS-OXI88", "2 of 3 nights on oxygen",
         lambda: [oxi_night(P, night(0), low_run_min=6.0, on_o2=True), oxi_night(P, night(1), on_o2=True),
                  oxi_night(P, night(2), low_run_min=6.0, on_o2=True)], "urgent"),
    Case("NS-OXI88", "T90 11 % one night", lambda: [oxi_night(P, night(0), t90_pct=11)], "warn"),
    Case("NS-OXI88", "T90 9.9 % one night", lambda: [oxi_night(P, night(0), t90_pct=9.9)], None),
    Case("NS-OXI88", "1.9 h recording", lambda: [oxi_night(P, night(0), hours=1.9, low_run_min=8.0)], None),
    Case("NS-T90", "2 of 3 nights 11 %", lambda: [oxi_night(P, night(0), t90_pct=11), oxi_night(P, night(1)),
                                                  oxi_night(P, night(2), t90_pct=11)], "warn"),
    Case("NS-T90", "2 of 3 nights 9.9 %", lambda: [oxi_night(P, night(0), t90_pct=9.9), oxi_night(P, night(1)),
                                                   oxi_night(P, night(2), t90_pct=9.9)], None),
    Case("NS-T90", "1 of 3 nights", lambda: [oxi_night(P, night(0)), oxi_night(P, night(1)),
                                             oxi_night(P, night(2), t90_pct=20)], None),
    Case("NS-SLOPE", "-3.1 %/month", lambda: fvc_trend(-3.1, 66.0), "warn"),
    Case("NS-SLOPE", "-2.9 %/month", lambda: fvc_trend(-2.9, 62.0), None),
    Case("NS-SLOPE", "-4 %/month but crossing in > 90 d", lambda: fvc_trend(-4.0, 90.0), None),
    Case("NS-SLOPE", "2 sessions", lambda: fvc_trend(-6.0, 70.0)[-2:], None),
    # a nearly flat line reaches 50 % after year 9999: no finding, and no OverflowError failing the patient
    Case("NS-SLOPE", "nearly flat, crossing beyond the calendar",
         lambda: [spiro(P, day(d), 66.0 - 1e-6 * d) for d in (0, 30, 60, 90, 120)], None),
    Case("NS-ORTHO", "orthopnoea item 11 = 2, FVC 90", lambda: [alsfrs(P, day(0), i11=2), spiro(P, day(1), 90.0)],
         "high"),
    Case("NS-ORTHO", "item 11 = 3", lambda: [alsfrs(P, day(0), i11=3), spiro(P, day(1), 90.0)], None),
    Case("NS-DROP10", "85 -> 74 in 80 d", lambda: [spiro(P, day(d), v) for d, v in ((0, 85.0), (40, 80.0), (80, 74.0))],
         "warn"),
    Case("NS-DROP10", "85 -> 76", lambda: [spiro(P, day(d), v) for d, v in ((0, 85.0), (40, 80.0), (80, 76.0))], None),
    Case("NS-VCDROP", "3.0 -> 2.3 L, no % pred",
         lambda: [spiro(P, day(0), None, fvc_l=3.0, demographics=False),
                  spiro(P, day(60), None, fvc_l=2.3, demographics=False)], "warn"),
    Case("NS-VCDROP", "3.0 -> 2.5 L", lambda: [spiro(P, day(0), None, fvc_l=3.0, demographics=False),
                                              spiro(P, day(60), None, fvc_l=2.5, demographics=False)], None),
    Case("NS-O2NONIV", "oxygen night, no NIV", lambda: [oxi_night(P, night(0), on_o2=True)], "warn"),
    Case("NS-O2NONIV", "oxygen night on NIV", lambda: [*nivs([8.0] * 3), oxi_night(P, night(2), on_o2=True)], None),
    # ------------------------------------------------------------------ NIV_ESCALATE
    Case("NE-ADH", "mean 3.9 h", lambda: nivs([6.0] * 14 + [3.9] * 14), "warn"),
    Case("NE-ADH", "mean 4.0 h", lambda: nivs([6.0] * 14 + [4.0] * 14), None),
    Case("NE-ADH", "first 14 days", lambda: nivs([1.0] * 10), None),
    Case("NE-DESAT", "device T90 6 % on 3/7", lambda: nivs_with(7, usage=6.0, spo2_t90=[6, 1, 6, 1, 6, 1, 1]), "high"),
    Case("NE-DESAT", "device T90 5 %", lambda: nivs_with(7, usage=6.0, spo2_t90=[5, 1, 5, 1, 5, 1, 1]), None),
    Case("NE-DESAT", "oximeter T90 6 % on 3 NIV nights",
         lambda: nivs([6.0] * 7) + [oxi_night(P, night(i), t90_pct=6, on_niv=True) for i in (1, 3, 5)], "high"),
    Case("NE-DESAT", "oximeter T90 6 % but 3.9 h use",
         lambda: nivs([3.9] * 7) + [oxi_night(P, night(i), t90_pct=6, on_niv=True) for i in (1, 3, 5)], None),
    Case("NE-AHI", "median 11", lambda: nivs_with(7, ahi=[11] * 7), "warn"),
    Case("NE-AHI", "median 6", lambda: nivs_with(7, ahi=[6] * 7), "info"),
    Case("NE-AHI", "median 5", lambda: nivs_with(7, ahi=[5] * 7), None),
    Case("NE-LEAK", "25 L/min on 3/7", lambda: nivs_with(7, leak=[25, 10, 25, 10, 25, 10, 10]), "warn"),
    Case("NE-LEAK", "24 L/min on 3/7", lambda: nivs_with(7, leak=[24, 10, 24, 10, 24, 10, 10]), None),
    Case("NE-LEAK", "total leak 40", lambda: nivs_with(7, leak=[40] * 7, leak_kind=["total"] * 7), None),
    Case("NE-DAYUSE", "median 12 h", lambda: nivs([12.0] * 7), "warn"),
    Case("NE-DAYUSE", "median 11.9 h", lambda: nivs([11.9] * 7), None),
    Case("NE-DAYUSE", "+4.5 h vs previous month", lambda: nivs([6.0] * 30 + [10.5] * 7), "warn"),
    Case("NE-DAYUSE", "+3.9 h vs previous month", lambda: nivs([6.0] * 30 + [9.9] * 7), None),
    Case("NE-DAYUSE", "MPV advice with preserved bulbar function",
         lambda: [alsfrs(P, day(0, 9), i12=3), *nivs([13.0] * 7)], "warn", action_contains="mouthpiece"),
    Case("NE-PCF270", "269", lambda: [spiro(P, day(0), 90.0, pcf=269)], "warn"),
    Case("NE-PCF270", "270", lambda: [spiro(P, day(0), 90.0, pcf=270)], None),
    Case("NE-PCF270", "assisted 200 is not unassisted", lambda: [spiro(P, day(0), 90.0, pcf=200, pcf_assisted=True)],
         None),
    # issue 12: NE-PCF160 merged into NE-PCF270's high tier (one low cough flow, one finding)
    Case("NE-PCF270", "159 high", lambda: [spiro(P, day(0), 90.0, pcf=159)], "high", action_contains="160 L/min"),
    Case("NE-PCF270", "160 warn", lambda: [spiro(P, day(0), 90.0, pcf=160)], "warn"),
    Case("NE-DESAT", "on oxygen: urgent",
         lambda: nivs([6.0] * 7) + [oxi_night(P, night(i), t90_pct=6, on_niv=True, on_o2=True) for i in (1, 3, 5)],
         "urgent"),
    Case("NE-DAYUSE", "median 16 h: dependence tier", lambda: nivs([16.0] * 7), "high", action_contains="back-up"),
    Case("NE-USEDROP", "7-night median 3 h vs 8 h", lambda: nivs([8.0] * 30 + [3.0] * 7), "warn"),
    Case("NE-USEDROP", "7-night median 4.5 h vs 8 h", lambda: nivs([8.0] * 30 + [4.5] * 7), None),
    Case("NE-MEP40", "mep 35, no PCF", lambda: [_mep(spiro(P, day(0), 90.0), 35)], "warn"),
    Case("NE-MEP40", "mep 35 with PCF", lambda: [_mep(spiro(P, day(0), 90.0, pcf=300), 35)], None),
    Case("NE-MEP40", "mep 40", lambda: [_mep(spiro(P, day(0), 90.0), 40)], None),
    Case("NE-RRDEV", "+20 % over 5 nights", lambda: nivs_with(45, rr=[15.0] * 40 + [18.0] * 5), "warn"),
    Case("NE-RRDEV", "+19.3 %", lambda: nivs_with(45, rr=[15.0] * 40 + [17.9] * 5), None),
    Case("NE-RRDEV", "too little baseline", lambda: nivs_with(15, rr=[15.0] * 10 + [20.0] * 5), None),
    Case("NE-MVDEV", "-20 % over 5 nights", lambda: nivs_with(45, mv=[8.0] * 40 + [6.4] * 5), "warn"),
    Case("NE-MVDEV", "-18.75 %", lambda: nivs_with(45, mv=[8.0] * 40 + [6.5] * 5), None),
    # ------------------------------------------------------------------ TRACH_DISCUSS
    Case("TD-DEP", "median 20 h", lambda: nivs([20.0] * 7), "high"),
    Case("TD-DEP", "median 19.9 h", lambda: nivs([19.9] * 7), None),
    Case("TD-DEP", "ALSFRS-R item 12 = 1", lambda: [alsfrs(P, day(0), i12=1)], "high"),
    # issue 12: item 3 = 1 is tube feeding, not in itself worse bulbar function (round 1 expected warn)
    Case("TD-BULBAR", "tube feeding alone", lambda: [*nivs([8.0] * 3), alsfrs(P, day(4), i3=1)], None),
    Case("TD-BULBAR", "nil by mouth", lambda: [*nivs([8.0] * 3), alsfrs(P, day(4), i3=0)], "warn"),
    Case("TD-BULBAR", "tube feeding + no speech", lambda: [*nivs([8.0] * 3), alsfrs(P, day(4), i3=1, i1=1)], "warn"),
    Case("TD-BULBAR", "swallowing 2", lambda: [*nivs([8.0] * 3), alsfrs(P, day(4), i3=2, i2=2)], None),
    Case("TD-COUGH", "assisted 159", lambda: [spiro(P, day(0), 60.0, pcf=159, pcf_assisted=True)], "high"),
    Case("TD-COUGH", "assisted 179 twice", lambda: [spiro(P, day(0), 60.0, pcf=179, pcf_assisted=True),
                                                    spiro(P, day(30), 60.0, pcf=179, pcf_assisted=True)], "high"),
    Case("TD-COUGH", "assisted 160 once", lambda: [spiro(P, day(0), 60.0, pcf=160, pcf_assisted=True)], None),
    Case("TD-VC30", "vc 29 on NIV", lambda: [*nivs([8.0] * 3), spiro(P, day(5), 29.0)], "warn"),
    Case("TD-VC30", "vc 30 on NIV", lambda: [*nivs([8.0] * 3), spiro(P, day(5), 30.0)], None),
    Case("TD-VC30", "vc 29, grade E", lambda: [*nivs([8.0] * 3), spiro(P, day(5), 29.0, grade="E")], "info",
         action_contains="confirm with a repeat test"),
    Case("TD-BULBDEC", "bulbar 12 -> 9 in 150 d", lambda: [alsfrs(P, day(0)), alsfrs(P, day(150), i1=3, i2=3, i3=3)],
         "warn"),
    Case("TD-BULBDEC", "bulbar 12 -> 10", lambda: [alsfrs(P, day(0)), alsfrs(P, day(150), i1=3, i2=3)], None),
    Case("TD-BULBDEC", "12 -> 9 over 200 d", lambda: [alsfrs(P, day(0)), alsfrs(P, day(200), i1=3, i2=3, i3=3)],
         None),
    Case("TD-INTOL", "1.9 h after 30 d with FVC 45", lambda: [*nivs([1.9] * 35), spiro(P, day(36), 45.0)], "high"),
    Case("TD-INTOL", "2.0 h", lambda: [*nivs([2.0] * 35), spiro(P, day(36), 45.0)], None),
    Case("TD-INTOL", "no indication left", lambda: [*nivs([1.0] * 35), spiro(P, day(36), 70.0)], None),
    Case("TD-FAIL", "NE-DESAT open 14 d", lambda: nivs([6.0] * 14), "high", prepare=_open_desat(14)),
    Case("TD-FAIL", "NE-DESAT open 13.9 d", lambda: nivs([6.0] * 14), None, prepare=_open_desat(13.9)),
    # ------------------------------------------------------------------ CO2 (issue 12)
    Case("NS-PACO2", "arterial 45", lambda: [gas(P, day(0), 45.0)], "urgent"),
    Case("NS-PACO2", "arterial 44.9", lambda: [gas(P, day(0), 44.9)], None),
    Case("NS-PACO2", "transcutaneous 46", lambda: [gas(P, day(0), 46.0, sample="transcutaneous")], "urgent"),
    Case("NS-PACO2", "venous 50 is the screen's", lambda: [gas(P, day(0), 50.0, sample="venous")], None),
    Case("NS-PACO2", "on NIV", lambda: [*nivs([6.0]), gas(P, day(2), 52.0)], None),
    Case("NS-CO2SCREEN", "venous 46", lambda: [gas(P, day(0), 46.0, sample="venous")], "warn"),
    Case("NS-CO2SCREEN", "venous 45", lambda: [gas(P, day(0), 45.0, sample="venous")], None),
    Case("NS-CO2SCREEN", "bicarbonate 27", lambda: [gas(P, day(0), None, sample="venous", bicarbonate=27.0)], "warn"),
    Case("NS-CO2SCREEN", "bicarbonate 26.9", lambda: [gas(P, day(0), 40.0, bicarbonate=26.9)], None),
    Case("NS-TCCO2", "12 min > 55", lambda: [tcco2_night(P, night(0), peak_min=12.0)], "high"),
    Case("NS-TCCO2", "rise to 53 for 10 min", lambda: [tcco2_night(P, night(0), peak=53.0, peak_min=10.0)], "high"),
    Case("NS-TCCO2", "9 min > 55", lambda: [tcco2_night(P, night(0), peak_min=9.0)], None),
    Case("NS-TCCO2", "rise to 51 from 42 (9 mmHg)", lambda: [tcco2_night(P, night(0), peak=51.0, peak_min=60.0)],
         None),
    Case("NS-TCCO2", "under 2 h of TcCO2", lambda: [tcco2_night(P, night(0), hours=1.9, peak_min=60.0)], None),
    Case("NS-TCCO2", "on NIV", lambda: [*nivs([6.0] * 3), tcco2_night(P, night(2), peak_min=30.0)], None),
    Case("NE-CO2", "arterial 50 on NIV", lambda: [*nivs([6.0] * 3), gas(P, day(3), 50.0)], "high"),
    Case("NE-CO2", "arterial 49 on NIV", lambda: [*nivs([6.0] * 3), gas(P, day(3), 49.0)], None),
    Case("NE-CO2", "gas from before NIV", lambda: [gas(P, day(0), 55.0), *nivs([6.0] * 3, start=1)], None),
    Case("NE-CO2", "TcCO2 night on NIV", lambda: [*nivs([6.0] * 3), tcco2_night(P, night(2), peak_min=12.0)],
         "high"),
    Case("NE-CO2", "TcCO2 night with 3 h of NIV", lambda: [*nivs([6.0, 6.0, 3.0]),
                                                           tcco2_night(P, night(2), peak_min=12.0)], None),
    Case("NE-CO2", "not on NIV", lambda: [gas(P, day(0), 55.0)], None),
    # ------------------------------------------------------------------ DATA_QUALITY
    Case("DQ-PFT6M", "184 d", lambda: [spiro(P, day(0), 80.0)], "warn", after=T(days=184)),
    Case("DQ-PFT6M", "93 d", lambda: [spiro(P, day(0), 80.0)], "info", after=T(days=93)),
    Case("DQ-PFT6M", "92 d", lambda: [spiro(P, day(0), 80.0)], None, after=T(days=92)),
    Case("DQ-PFT6M", "never tested, monitored 93 d", lambda: nivs([8.0]), "info", after=T(days=93)),
    Case("DQ-NOUPLOAD", "3 nights", lambda: nivs([8.0] * 3), "warn", after=T(days=3)),
    Case("DQ-NOUPLOAD", "2.9 nights", lambda: nivs([8.0] * 3), None, after=T(days=2.9)),
    Case("DQ-OXINVALID", "latest 3.9 h", lambda: [oxi_night(P, night(0), hours=3.9)], "info"),
    Case("DQ-OXINVALID", "3 of 7 invalid", lambda: [oxi_night(P, night(i), hours=3.0 if i in (0, 2, 4) else 8.0)
                                                    for i in range(7)], "warn"),
    Case("DQ-OXINVALID", "4 h", lambda: [oxi_night(P, night(0), hours=4.0)], None),
    Case("DQ-SPIROQC", "grade D", lambda: [spiro(P, day(0), 80.0, grade="D")], "info"),
    Case("DQ-SPIROQC", "grade C", lambda: [spiro(P, day(0), 80.0, grade="C")], None),
    Case("DQ-DEMOG", "no % pred, no demographics", lambda: [spiro(P, day(0), None, fvc_l=3.0, demographics=False)],
         "warn"),
    Case("DQ-DEMOG", "GLI computable", lambda: [spiro(P, day(0), None, fvc_l=3.0)], None),
    Case("DQ-DEMOG", "% pred supplied", lambda: [spiro(P, day(0), 75.0, demographics=False)], None),
]


def _mep(session: Any, mep: float) -> Any:
    """The scenario builder has no MEP: the same session with one."""
    return session.model_copy(update={"mep_cmh2o": mep})


def run_case(case: Case) -> Any:
    history = PatientHistory(P)
    records = case.records()
    for rec in sorted(records, key=event_time):
        history.add(rec)
    as_of = max(event_time(r) for r in records) + case.after
    if case.prepare:
        case.prepare(history, as_of)
    verdicts = {v.rule_id: v for v in evaluate(RULES, history, as_of)}
    return verdicts[case.rule]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}:{c.name}" for c in CASES])
def test_rule_case(case: Case) -> None:
    verdict = run_case(case)
    if case.severity is None:
        assert not verdict.holds, verdict.evidence
        assert verdict.severity is None
    else:
        assert verdict.holds, verdict.evidence
        assert verdict.severity == case.severity, verdict.evidence
        assert verdict.evidence["inputs"], "evidence must record the inputs"
        assert verdict.evidence["as_of"]
        if case.action_contains:
            assert case.action_contains in verdict.action


def test_every_default_rule_has_a_firing_and_a_quiet_case() -> None:
    firing = {c.rule for c in CASES if c.severity}
    quiet = {c.rule for c in CASES if c.severity is None}
    assert set(RULES.ids) == firing == quiet


def test_every_tier_level_is_exercised() -> None:
    seen = {(c.rule, c.severity) for c in CASES if c.severity}
    for rule in RULES:
        for level in rule.severities:
            assert (rule.id, level) in seen, (rule.id, level)


def test_required_rule_ids_present() -> None:
    required = {
        "NS-FVC50", "NS-FVC80-SYM", "NS-SUPINE", "NS-SNIP40", "NS-MIP60", "NS-OXI88", "NS-T90", "NS-SLOPE",
        # issue 12: NE-PCF160 merged into NE-PCF270 (two severity tiers)
        "NE-ADH", "NE-DESAT", "NE-AHI", "NE-LEAK", "NE-DAYUSE", "NE-PCF270", "NE-RRDEV", "NE-MVDEV",
        "TD-DEP", "TD-BULBAR", "TD-COUGH", "TD-VC30", "TD-INTOL", "DQ-PFT6M", "DQ-NOUPLOAD", "DQ-OXINVALID",
        "DQ-SPIROQC", "DQ-DEMOG",
    }
    assert required <= set(RULES.ids)
    for rule in RULES:
        assert rule.citation and rule.action
        if rule.category == "NIV_START":
            assert rule.applies is not None and rule.applies.source == "not on_niv"
