"""Synthetic patient trajectories made of canonical records, with the rule ids they should raise.

Used by the rules tests (``tests/test_processors/test_rules``) and reusable by the stream
integration test: each scenario function returns a :class:`Scenario` whose ``records`` can be
published as Envelopes, replayed with ``processors.rules.evaluator.replay`` (with ``as_of``), and
whose ``expected`` is the exact set of rule ids that open at least once under the default rules.

All builders are deterministic (no randomness, no wall clock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from schemas import AlsfrsR, BloodGas, CapnographyNight, CareStateChange, NivNight, OximetryNight, SpirometrySession

START = date(2025, 1, 6)
"""Day 0 of every scenario (a Monday): the longest scenario (18 months) must end before today, since
ingest refuses records dated in the future."""


def day(n: int, hour: int = 10) -> datetime:
    """Day ``n`` of a scenario at ``hour`` UTC."""
    return datetime.combine(START + timedelta(days=n), time(hour), tzinfo=UTC)


# ----------------------------------------------------------------------------------- builders
def spiro(
    pid: str,
    when: datetime,
    fvc_pct: float | None = None,
    *,
    fvc_l: float | None = None,
    posture: str = "sitting",
    grade: str | None = "A",
    snip: float | None = None,
    mip: float | None = None,
    pcf: float | None = None,
    pcf_assisted: bool = False,
    svc_l: float | None = None,
    demographics: bool = True,
    source: str = "device",
) -> SpirometrySession:
    """A session; FVC litres default to ``fvc_pct`` % of a 4.0 L predicted value."""
    if fvc_l is None and fvc_pct is not None:
        fvc_l = round(4.0 * fvc_pct / 100.0, 3)
    demo: dict[str, Any] = {"sex": "male", "age_years": 60.0, "height_cm": 175.0} if demographics else {}
    return SpirometrySession(
        patient_id=pid, taken_at=when, posture=posture, fvc_l=fvc_l, fvc_pct_pred=fvc_pct, svc_l=svc_l,
        snip_cmh2o=snip, mip_cmh2o=mip, pcf_lpm=pcf, pcf_assisted=pcf_assisted, grade=grade, source=source,
        **demo,
    )


def oxi_night(
    pid: str,
    night: date,
    *,
    hours: float = 8.0,
    baseline: float = 95.0,
    t90_pct: float = 0.0,
    low_run_min: float = 0.0,
    interval_s: float = 4.0,
    on_o2: bool | None = None,
    on_niv: bool | None = None,
    source: str = "device",
) -> OximetryNight:
    """A night starting 22:00 UTC on ``night``: SpO2 at ``baseline``, a block at 89 % making
    ``t90_pct`` of the night, and one continuous run at 86 % of ``low_run_min`` minutes."""
    n = round(hours * 3600 / interval_s)
    spo2: list[float | None] = [baseline] * n
    k = round(t90_pct / 100.0 * n)
    for i in range(n // 8, min(n, n // 8 + k)):
        spo2[i] = 89.0
    m = round(low_run_min * 60 / interval_s)
    for i in range(n // 2, min(n, n // 2 + m)):
        spo2[i] = 86.0
    start = datetime.combine(night, time(22), tzinfo=UTC)
    return OximetryNight(
        patient_id=pid, start=start, interval_s=interval_s, spo2=spo2, pulse=[70.0] * n,
        supplemental_o2=on_o2, on_niv=on_niv, source=source,
    )


def niv_night(
    pid: str,
    night: date,
    usage: float = 8.0,
    *,
    leak: float | None = 10.0,
    leak_kind: str = "unintentional",
    ahi: float | None = 2.0,
    rr: float | None = 16.0,
    mv: float | None = 7.0,
    spo2_t90: float | None = None,
    source: str = "device",
) -> NivNight:
    return NivNight(
        patient_id=pid, night_date=night, usage_hours=usage, leak_p95_lpm=leak, leak_kind=leak_kind, ahi=ahi,
        resp_rate=rr, minute_vent_lpm=mv, tidal_volume_ml=None if mv is None or not rr else round(mv / rr * 1000, 1),
        spo2_t90_pct=spo2_t90, source=source,
    )


def alsfrs(pid: str, when: datetime, **items: int) -> AlsfrsR:
    """ALSFRS-R with every item 4 except those given as ``i2=3, i11=2`` ..."""
    scores = [4] * 12
    for key, value in items.items():
        scores[int(key.lstrip("i")) - 1] = value
    return AlsfrsR(patient_id=pid, taken_at=when, items=scores)


def gas(
    pid: str,
    when: datetime,
    pco2: float | None,
    *,
    sample: str = "arterial",
    bicarbonate: float | None = None,
    ph: float | None = None,
    source: str = "clinic",
) -> BloodGas:
    """A blood gas or spot CO2 reading, pCO2 in mmHg."""
    return BloodGas(patient_id=pid, taken_at=when, sample=sample, pco2_mmhg=pco2, bicarbonate_mmol_l=bicarbonate,
                    ph=ph, source=source)


def tcco2_night(
    pid: str,
    night: date,
    *,
    hours: float = 8.0,
    baseline: float = 42.0,
    peak: float = 57.0,
    peak_min: float = 0.0,
    interval_s: float = 60.0,
    source: str = "device",
) -> CapnographyNight:
    """A TcCO2 night starting 22:00 UTC on ``night``: ``baseline`` mmHg, with one block of ``peak_min``
    minutes at ``peak`` starting at the fourth hour."""
    n = round(hours * 3600 / interval_s)
    tc: list[float | None] = [baseline] * n
    first = round(3 * 3600 / interval_s)
    for i in range(first, min(n, first + round(peak_min * 60 / interval_s))):
        tc[i] = peak
    start = datetime.combine(night, time(22), tzinfo=UTC)
    return CapnographyNight(patient_id=pid, start=start, interval_s=interval_s, tcpco2=tc, source=source)


# ----------------------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    name: str
    patient_id: str
    records: list[Any]
    expected: frozenset[str]
    """Exact set of rule ids that open at least once under the default rules."""
    as_of: datetime
    notes: str = ""
    order: Sequence[tuple[str, str]] = field(default=())
    """(first, second): rule ``first`` must open before rule ``second``."""
    care_states: Sequence[CareStateChange] = field(default=())
    """The team's care-state changes (issue 12), replayed with the records (kept apart: they are no record)."""

    @property
    def items(self) -> list[Any]:
        """What a replay or the stream takes: the records and the care-state changes."""
        return [*self.records, *self.care_states]


def stable() -> Scenario:
    """Six months, nothing wrong: monthly lung function, weekly oximetry, normal ALSFRS-R."""
    pid = "SCN-STABLE"
    recs: list[Any] = []
    for i in range(0, 181, 30):
        recs.append(spiro(pid, day(i), 92.0 + (1 if i % 60 else -1), snip=85, mip=90, pcf=420))
    for i in range(0, 181, 7):
        recs.append(oxi_night(pid, START + timedelta(days=i), t90_pct=1.0))
    for i in (0, 90, 180):
        recs.append(alsfrs(pid, day(i, 11)))
    return Scenario("stable", pid, recs, frozenset(), day(181), "no finding at all")


def slow_decliner() -> Scenario:
    """FVC 84 -> 66 % over 18 months (-1 %/month): below 80 % early but no symptoms until month 15."""
    pid = "SCN-SLOW"
    recs: list[Any] = []
    for month in range(19):
        recs.append(spiro(pid, day(month * 30), 84.0 - month, snip=70, mip=75, pcf=350))
    for month in (*range(0, 15, 3), 15, 16, 17, 18):
        recs.append(alsfrs(pid, day(month * 30, 9), **({"i11": 3} if month >= 15 else {})))
    return Scenario("slow decliner", pid, recs, frozenset({"NS-FVC80-SYM"}), day(18 * 30 + 1),
                    "slope -1 %/month never raises NS-SLOPE; orthopnoea at month 15 raises NS-FVC80-SYM")


def rapid_decliner() -> Scenario:
    """FVC 90 % falling 6 points a month, fortnightly sessions for 8 months."""
    pid = "SCN-RAPID"
    recs = [spiro(pid, day(d), round(90.0 - 6.0 * d / 30.0, 1)) for d in range(0, 241, 14)]
    # issue 12: a fall of >= 10 points in 3 months (NS-DROP10) now speaks first, ~2 months before NS-SLOPE
    return Scenario("rapid decliner", pid, recs, frozenset({"NS-DROP10", "NS-SLOPE", "NS-FVC50"}), day(241),
                    "a 10-point fall raises NS-DROP10, the projected crossing of 50 % NS-SLOPE, both months "
                    "before FVC < 50 %", order=(("NS-DROP10", "NS-SLOPE"), ("NS-SLOPE", "NS-FVC50")))


def nocturnal_desaturation() -> Scenario:
    """Stable FVC 85 %; from night 30 the oximeter shows an 8-minute run <= 88 % every night."""
    pid = "SCN-NOCTURNAL"
    recs: list[Any] = [spiro(pid, day(i), 85.0, snip=70, mip=75, pcf=380) for i in (0, 30, 60)]
    for i in range(60):
        recs.append(oxi_night(pid, START + timedelta(days=i), low_run_min=8.0 if i >= 30 else 0.0))
    return Scenario("nocturnal desaturation", pid, recs, frozenset({"NS-OXI88"}), day(61),
                    "NS-OXI88 opens (warn, then high) while FVC is unchanged")


def niv_dependence() -> Scenario:
    """NIV user: 8 h/night for 40 nights, then use climbs steadily to 23 h/day by night 120."""
    pid = "SCN-NIVDEP"
    recs: list[Any] = []
    for i in range(121):
        usage = 8.0 if i < 40 else min(23.0, 8.0 + (i - 40) * 15.0 / 80.0)
        recs.append(niv_night(pid, START + timedelta(days=i), round(usage, 2)))
    for i in (0, 60, 120):
        recs.append(alsfrs(pid, day(i, 9), i12=3))  # intermittent BiPAP: on NIV from day 0
        recs.append(spiro(pid, day(i, 15), 45.0))
    return Scenario("NIV dependence", pid, recs, frozenset({"NE-DAYUSE", "TD-DEP"}), day(122),
                    "NE-DAYUSE (>= 12 h/day, MPV advice: bulbar preserved) then TD-DEP (>= 20 h/day)",
                    order=(("NE-DAYUSE", "TD-DEP"),))


def missing_data() -> Scenario:
    """NIV data for 40 nights and one lung-function session, then silence until day 200."""
    pid = "SCN-MISSING"
    recs: list[Any] = [spiro(pid, day(0), 70.0)]
    for i in range(40):
        recs.append(niv_night(pid, START + timedelta(days=i), 7.0))
    return Scenario("missing data", pid, recs, frozenset({"DQ-NOUPLOAD", "DQ-PFT6M"}), day(200),
                    "no NIV upload after night 39 and no spirometry for 200 days")


def flapping_oximetry() -> Scenario:
    """Stable FVC; from night 10, T90 above 10 % on every other night: NS-T90 (2 of the last 3 nights)
    holds one night and not the next. Issue 12: its `resolve_after` (3 nights) keeps it open."""
    pid = "SCN-FLAPOXI"
    recs: list[Any] = [spiro(pid, day(0), 85.0, snip=70, mip=75, pcf=380)]
    for i in range(60):
        recs.append(oxi_night(pid, START + timedelta(days=i), t90_pct=14.0 if i >= 10 and i % 2 else 2.0))
    # issue 12: one night with T90 > 10 % is abnormal (ACI12), so NS-OXI88 opens too (warn, then high: 2 of 3)
    return Scenario("flapping oximetry", pid, recs, frozenset({"NS-T90", "NS-OXI88"}), day(61),
                    "one NS-T90 finding (was 24 openings and 23 resolutions, night after night)")


def flapping_ahi() -> Scenario:
    """On NIV; from night 20 the device AHI alternates 12 and 8 a night: the 7-night median crosses the
    warn threshold (10) back and forth. The info level opens, warn follows, and warn persists."""
    pid = "SCN-FLAPAHI"
    recs: list[Any] = [alsfrs(pid, day(0, 9), i12=3)]
    for i in range(60):
        ahi = (12.0 if i % 2 else 8.0) if i >= 20 else 3.0
        recs.append(niv_night(pid, START + timedelta(days=i), 7.0, ahi=ahi))
    return Scenario("flapping AHI", pid, recs, frozenset({"NE-AHI"}), day(61),
                    "NE-AHI info then warn, once (was 34 severity changes)")


def starts_niv() -> Scenario:
    """FVC 45 % (NS-FVC50), then NIV from day 30: the NIV_START rule no longer applies."""
    pid = "SCN-STARTSNIV"
    recs: list[Any] = [spiro(pid, day(0), 45.0, snip=70, mip=75, pcf=380)]
    for i in range(30, 50):
        recs.append(niv_night(pid, START + timedelta(days=i), 7.0))
    return Scenario("starts NIV", pid, recs, frozenset({"NS-FVC50"}), day(50),
                    "NS-FVC50 resolves as no_longer_applies on the first NIV night")


def hypercapnia() -> Scenario:
    """FVC 70 % (no NIV_START from lung function): a venous gas screens positive (day 10), a capillary gas
    confirms hypercapnia (day 20), an overnight TcCO2 shows AASM hypoventilation (day 25); NIV from day
    30 ends the NIV_START findings; on NIV a TcCO2 night (day 45) and a gas (day 50) show CO2 uncorrected."""
    pid = "SCN-HYPERCAPNIA"
    recs: list[Any] = [spiro(pid, day(0), 70.0, snip=70, mip=75, pcf=380)]
    recs.append(gas(pid, day(10), 47.0, sample="venous", bicarbonate=28.0))
    recs.append(gas(pid, day(20), 48.0, sample="capillary", bicarbonate=29.0))
    recs.append(tcco2_night(pid, START + timedelta(days=25), peak_min=15.0))
    for i in range(30, 60):
        recs.append(niv_night(pid, START + timedelta(days=i), 7.0))
    recs.append(tcco2_night(pid, START + timedelta(days=45), peak_min=12.0))
    recs.append(gas(pid, day(50), 52.0, sample="arterial", bicarbonate=30.0))
    return Scenario("hypercapnia", pid, recs, frozenset({"NS-CO2SCREEN", "NS-PACO2", "NS-TCCO2", "NE-CO2"}),
                    day(60), "CO2 rules raise NIV_START before NIV and NE-CO2 on it",
                    order=(("NS-CO2SCREEN", "NS-PACO2"), ("NS-PACO2", "NS-TCCO2"), ("NS-TCCO2", "NE-CO2")))


def declines_niv() -> Scenario:
    """FVC 45 % (NS-FVC50); the patient declines NIV (care state from day 10): NS-FVC50 resolves as no longer
    applying and a falling FVC and SNIP raise no new NIV prompt, but hypercapnia (day 30, a safety rule) and
    a cough flow of 150 L/min (day 40) still speak."""
    pid = "SCN-DECLINES"
    recs: list[Any] = [spiro(pid, day(0), 45.0, snip=70, mip=75, pcf=380), spiro(pid, day(20), 42.0, snip=35)]
    recs.append(gas(pid, day(30), 50.0, sample="capillary"))
    recs.append(spiro(pid, day(40), 40.0, pcf=150))
    declined = CareStateChange(change_id="scn-declines-1", patient_id=pid, state="niv_declined",
                               since=START + timedelta(days=10), note="declined NIV at clinic", set_by="dr-scenario",
                               set_at=day(10, 11))
    return Scenario("declines NIV", pid, recs, frozenset({"NS-FVC50", "NS-PACO2", "NE-PCF270"}), day(41),
                    "NS-FVC50 resolves as no_longer_applies; only safety rules speak after the decline",
                    order=(("NS-FVC50", "NS-PACO2"), ("NS-PACO2", "NE-PCF270")), care_states=(declined,))


ALL: list[Callable[[], Scenario]] = [
    stable, slow_decliner, rapid_decliner, nocturnal_desaturation, niv_dependence, missing_data,
    flapping_oximetry, flapping_ahi, starts_niv, hypercapnia, declines_niv,
]


def all_scenarios() -> list[Scenario]:
    return [build() for build in ALL]
