"""Benchmark: how many notifications a year of a simulated ALS cohort sends, rules 0.1.0 (one alert per rule)
against the current rules and alert lifecycle (one alert per category, hysteresis, care states).

200 patients for 12 months (deterministic from --seed): stable, slow and rapid decliners (who start NIV when
it is indicated, or decline it), NIV users (adherent, poorly adherent, leaky mask, progressing to dependence),
invasive ventilation, bulbar, and nocturnal desaturation before NIV. Noise as home data have it: night-to-night
jitter of SpO2, NIV use, leak, AHI, respiratory rate; session-to-session variation of spirometry and pressures;
poor-quality sessions; short oximetry nights; missing nights and upload gaps.

* AFTER: the current rules (`processors/rules/default.yaml`) through `respmon.evaluate.notifications`, what
  `respmon evaluate --alerts` prints: one alert per (patient, category), notified when it opens or its
  severity rises, default routing (warn and worse), each record arriving when it was recorded.
* BEFORE: rules 0.1.0 (`git show 7a101b1:processors/rules/default.yaml`, read from git when this runs) loaded
  with the current loader; the one change is two lines in `history.keep_days` naming the CO2 stores the
  loader now requires (`gas`, `tcco2`: no 0.1.0 rule reads them). 0.1.0 set no `resolve_after` (the loader's
  default: resolve at once) and no care states (the team's changes are replayed but silence nothing). Its
  lifecycle kept one alert per (patient, rule) and notified every open and every severity change, and its
  default route took every severity: one notification per finding of state `open`. Also reported: the same
  count for warn and worse only (what 0.1.0 would send through today's default routing).

Neither side runs the worker's hourly timer between records (`respmon evaluate` does not): DQ-NOUPLOAD and
DQ-PFT6M are evaluated when a record arrives.

Usage: python bench/cohort_alerts.py [--seed 12] [--patients 200] [--months 12] [--jobs 2] [--quick]
writes bench/results/cohort_alerts.json (--quick: 24 patients for 4 months, written only with --out).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, write_result

from alerts.routing import Routing, default_routing
from processors.rules.evaluator import replay
from processors.rules.loader import RuleSet, load_rules
from respmon.evaluate import notifications
from schemas import (
    AlsfrsR,
    BloodGas,
    CareStateChange,
    Finding,
    NivNight,
    OximetryNight,
    SpirometrySession,
)

FIRST = date(2025, 6, 2)
"""Day 0 of the cohort (the year ends before today: ingest refuses the future)."""
OLD_COMMIT = "7a101b1"
OLD_PATH = "processors/rules/default.yaml"
HORIZON = timedelta(days=14)
ROUTING: Routing = default_routing("http://offline.invalid/")

MIX: dict[str, int] = {
    "stable": 30, "slow_decliner": 30, "rapid_decliner": 25, "nocturnal_desaturation": 10,
    "niv_adherent": 30, "niv_poor_adherence": 20, "niv_leaky_mask": 15, "niv_to_dependence": 15,
    "invasive_ventilation": 10, "bulbar": 15,
}
"""Patients of each kind in a cohort of 200 (scaled for another size)."""


# ------------------------------------------------------------------------------------------------ the patients
@dataclass
class Patient:
    """One simulated patient: the truth behind the data, and the data."""

    pid: str
    kind: str
    days: int
    rng: np.random.Generator
    fvc0: float = 85.0
    slope: float = 0.0
    """FVC % predicted points a month (negative: decline)."""
    niv_from: int | None = None
    """First NIV night (negative: on NIV before the year began); None = never."""
    nth: int = 0
    """Its rank among the patients of its kind (0, 1, ...): which of them decline NIV, are on oxygen ..."""
    records: list[Any] = field(default_factory=list)
    care: list[CareStateChange] = field(default_factory=list)

    def fvc(self, d: int) -> float:
        return self.fvc0 + self.slope * d / 30.44

    def at(self, d: int, hour: float = 10.0) -> datetime:
        return datetime.combine(FIRST + timedelta(days=d), datetime.min.time(), UTC) + timedelta(hours=hour)

    def on_niv(self, d: int) -> bool:
        return self.niv_from is not None and d >= self.niv_from


def build(kind: str, index: int, seed: int, days: int, nth: int = 0) -> Patient:
    """A patient of `kind`, the same for the same (seed, index) whatever else runs; `nth` of its kind."""
    rng = np.random.default_rng([seed, index])
    p = Patient(f"COH-{index:03d}-{kind}", kind, days, rng, nth=nth)
    u = rng.uniform
    if kind == "stable":
        p.fvc0, p.slope = u(82, 100), u(-0.4, 0.1)
    elif kind == "slow_decliner":
        p.fvc0, p.slope = u(68, 88), u(-1.6, -0.6)
    elif kind == "rapid_decliner":
        p.fvc0, p.slope = u(72, 90), u(-5.0, -3.0)
    elif kind == "nocturnal_desaturation":
        p.fvc0, p.slope = u(60, 75), u(-1.5, -0.5)
    elif kind == "bulbar":
        p.fvc0, p.slope = u(60, 80), u(-2.0, -1.0)
        p.niv_from = -int(u(30, 300)) if rng.random() < 0.5 else None
    elif kind == "invasive_ventilation":
        p.fvc0, p.slope, p.niv_from = u(15, 28), u(-0.5, 0.0), -400
    else:  # NIV users
        p.fvc0, p.slope, p.niv_from = u(35, 60), u(-2.0, -0.5), -int(u(30, 400))
    if p.niv_from is None and kind != "stable":
        indicated = next((d for d in range(days) if p.fvc(d) < 50 or hypoventilation(p, d) > 12), None)
        if indicated is not None:
            if kind == "rapid_decliner" and nth % 8 == 3:  # a few decline NIV
                p.care.append(change(p, "niv_declined", indicated + 20, "declined NIV at clinic"))
            else:
                p.niv_from = indicated + int(u(21, 45))
    simulate(p)
    return p


def change(p: Patient, state: str, d: int, note: str) -> CareStateChange:
    return CareStateChange(change_id=f"{p.pid}-{d}-{state}", patient_id=p.pid, state=state,
                           since=FIRST + timedelta(days=d), note=note, set_by="dr-cohort", set_at=p.at(d, 8))


def hypoventilation(p: Patient, d: int) -> float:
    """Minutes a night of sleep-related hypoventilation (SpO2 86-88 %) the patient truly has off NIV."""
    if p.kind == "nocturnal_desaturation":
        return max(0.0, (d - 40) * 0.25)
    return max(0.0, (58.0 - p.fvc(d)) * 1.5)


def simulate(p: Patient) -> None:
    """Every record of the year, with the noise of home data."""
    rng, days = p.rng, p.days
    spiro_days = clinic_days(rng, days, 90) if rng.random() < 0.6 else clinic_days(rng, days, 30)
    for d in spiro_days:
        p.records.append(spirometry(p, d))
    forms = clinic_days(rng, days, 90)
    if p.kind == "invasive_ventilation":  # ventilated through a tracheostomy before the year: on record at day 0
        forms = [0, *forms[1:]]
    for d in forms:
        p.records.append(alsfrs(p, d))
    for d in oximetry_days(p):
        p.records.append(oximetry(p, d))
    if p.niv_from is not None and p.niv_from < days:
        p.records += niv_nights(p)
    if p.kind == "rapid_decliner" and p.niv_from is not None:  # a capillary gas at the NIV assessment
        p.records.append(BloodGas(patient_id=p.pid, taken_at=p.at(max(0, p.niv_from - 14), 11), sample="capillary",
                                  pco2_mmhg=round(float(rng.normal(43.5, 2.5)), 1), source="clinic"))
    if p.kind == "invasive_ventilation" and p.nth % 2:
        p.care.append(change(p, "invasive_ventilation", 0, "tracheostomy ventilation"))
    if p.kind == "niv_to_dependence" and p.nth % 5 == 4 and days > 300:
        p.care.append(change(p, "end_of_life", 300, "comfort care"))
    if int(p.pid[4:7]) % 67 == 5 and days > 200:
        p.care.append(change(p, "left_service", 200, "moved away"))
        cut = p.at(200, 0)
        p.records = [r for r in p.records if _when(r) < cut]


def _when(r: Any) -> datetime:
    if isinstance(r, NivNight):
        return datetime.combine(r.night_date, datetime.min.time(), UTC)
    return r.start if isinstance(r, OximetryNight) else r.taken_at


def clinic_days(rng: np.random.Generator, days: int, every: int) -> list[int]:
    """Visits about every `every` days (+- a week or so), the first within the first month."""
    out, d = [], int(rng.integers(0, min(every, 30)))
    while d < days:
        out.append(d)
        d += every + int(rng.integers(-every // 6, every // 6 + 1))
    return out


def spirometry(p: Patient, d: int) -> SpirometrySession:
    """FVC with session-to-session variation (SD 3 points), a poor grade now and then, pressures and PCF with
    their own variation (SD 8-10 %)."""
    rng = p.rng
    fvc = max(8.0, p.fvc(d) + rng.normal(0, 3.0))
    grade = rng.choice(["A", "B", "C", "D", "E"], p=[0.55, 0.25, 0.1, 0.07, 0.03])
    strength = p.fvc(d) / 100
    bulbar_weak = p.kind == "bulbar" and d > 120
    snip = max(5.0, 95 * strength * rng.normal(1, 0.1))
    mip = max(5.0, 100 * strength * rng.normal(1, 0.1))
    pcf = max(60.0, 520 * strength * rng.normal(1, 0.08) * (0.7 if bulbar_weak else 1.0))
    return SpirometrySession(
        patient_id=p.pid, taken_at=p.at(d, float(rng.uniform(9, 16))), fvc_l=round(4.2 * fvc / 100, 2),
        fvc_pct_pred=round(fvc, 1), snip_cmh2o=round(snip), mip_cmh2o=round(mip), pcf_lpm=round(pcf),
        grade=str(grade), sex="male", age_years=62, height_cm=174, source="clinic")


def alsfrs(p: Patient, d: int) -> AlsfrsR:
    """Items from the truth: orthopnoea and dyspnoea as FVC falls, item 12 from NIV use, bulbar items falling."""
    fvc = p.fvc(d)
    items = [4] * 12
    items[10] = 4 if fvc >= 65 else 3 if fvc >= 50 else 2                  # 11 orthopnoea
    items[9] = 4 if fvc >= 60 else 3 if fvc >= 45 else 2                   # 10 dyspnoea
    if p.kind == "bulbar":
        lost = min(4, (d + 60) // 110)
        items[0], items[1], items[2] = max(1, 4 - lost), max(2, 4 - lost), max(1, 4 - lost)
    if p.kind == "invasive_ventilation":
        items[11] = 0
    elif p.on_niv(d):
        items[11] = 1 if daily_use(p, d) >= 20 else 2 if daily_use(p, d) >= 12 else 3
    return AlsfrsR(patient_id=p.pid, taken_at=p.at(d, 9), items=items)


def oximetry_days(p: Patient) -> Iterator[int]:
    """Off NIV: two nights every four weeks, weekly for the desaturation kind; a fifth of them hold home oxygen."""
    every = 7 if p.kind == "nocturnal_desaturation" else 28
    for start in range(int(p.rng.integers(0, every)), p.days, every):
        for d in (start, start + 1) if every == 28 else (start,):
            if d < p.days and not p.on_niv(d) and p.rng.random() > 0.1:
                yield d


def oximetry(p: Patient, d: int) -> OximetryNight:
    """8 h (a short night now and then) at 4 s: baseline 93-96 % with jitter, short dips, and the patient's
    hypoventilation as blocks at 86-88 % whose length varies night to night."""
    rng = p.rng
    hours = float(rng.uniform(2.5, 3.8)) if rng.random() < 0.06 else float(rng.uniform(6.5, 8.5))
    n = int(hours * 900)
    base = 95.0 - max(0.0, (70 - p.fvc(d)) * 0.05) + rng.normal(0, 0.4)
    spo2 = base + rng.normal(0, 0.5, n)
    for start in rng.integers(0, n - 20, size=int(rng.poisson(4 * hours))):  # short dips of 3-5 points
        spo2[start:start + int(rng.integers(5, 15))] -= rng.uniform(3, 5)
    minutes = hypoventilation(p, d) * rng.lognormal(0, 0.5)
    left = int(minutes * 15)
    while left > 0:
        k = min(left, int(rng.integers(30, 150)))
        a = int(rng.integers(0, n - k))
        spo2[a:a + k] = rng.uniform(86, 88.5) + rng.normal(0, 0.3, k)
        left -= k
    o2 = p.kind == "nocturnal_desaturation" and p.nth % 3 == 0 and d > 150
    values = np.round(np.clip(spo2, 70, 100)).tolist()
    start = datetime.combine(FIRST + timedelta(days=d), datetime.min.time(), UTC) + timedelta(hours=22)
    return OximetryNight(patient_id=p.pid, start=start, interval_s=4.0, spo2=values, pulse=[66.0] * n,
                         supplemental_o2=True if o2 else None, o2_lpm=1.0 if o2 else None)


def daily_use(p: Patient, d: int) -> float:
    """The patient's usual hours a day of ventilation on day `d`."""
    if p.kind == "niv_to_dependence":
        return min(21.5, 8.0 + 13.5 * max(0, d - 60) / 240)
    if p.kind == "invasive_ventilation":
        return 23.6
    if p.kind == "niv_poor_adherence":
        return 3.2
    return 7.5


def niv_nights(p: Patient) -> list[NivNight]:
    """Nightly summaries from the first NIV night: use as an AR(1) process around the usual hours (streaks of
    poorer nights), leak by device kind, AHI and respiratory rate jitter, missing nights and upload gaps."""
    rng = p.rng
    resmed = rng.random() < 0.7
    leak_median = 26.0 if p.kind == "niv_leaky_mask" else float(rng.uniform(4, 12))
    ahi_median = float(rng.uniform(4, 11)) if rng.random() < 0.15 else float(rng.uniform(0.8, 3.5))
    rr0, mv0 = float(rng.uniform(14, 19)), float(rng.uniform(6, 8.5))
    t90_module = rng.random() < 0.3
    t90_median = float(rng.uniform(2, 6)) if t90_module and rng.random() < 0.3 else 0.8
    out, dev, gap = [], 0.0, 0
    for d in range(max(0, p.niv_from or 0), p.days):
        usual = daily_use(p, d)
        dev = 0.7 * dev + rng.normal(0, 1.0 if usual < 20 else 0.3)
        if gap > 0:
            gap -= 1
            continue
        if rng.random() < 0.01:
            gap = int(rng.integers(2, 9))
        if rng.random() < 0.06:
            continue
        use = float(np.clip(usual + dev * (0.6 if p.kind == "niv_poor_adherence" else 1.0), 0, 24))
        if p.kind == "niv_poor_adherence" and rng.random() < 0.12:
            use = 0.0
        leak = leak_median * rng.lognormal(0, 0.35) if resmed else 38 * rng.lognormal(0, 0.15)
        out.append(NivNight(
            patient_id=p.pid, night_date=FIRST + timedelta(days=d), usage_hours=round(use, 2),
            leak_p95_lpm=round(float(leak), 1), leak_kind="unintentional" if resmed else "total",
            ahi=round(float(ahi_median * rng.lognormal(0, 0.35)), 1) if use > 0 else None,
            resp_rate=round(rr0 + rng.normal(0, 0.8), 1) if use > 0 else None,
            minute_vent_lpm=round(mv0 * rng.normal(1, 0.05), 2) if use > 0 else None,
            spo2_t90_pct=round(float(t90_median * rng.lognormal(0, 0.5)), 1) if t90_module and use > 0 else None))
    return out


# ------------------------------------------------------------------------------------------------ counting
def routed(severity: str, category: str) -> bool:
    return ROUTING.notify_routes(category, severity) != []


def before(findings: Iterable[Finding], *, warn_and_worse: bool = False) -> Counter[str]:
    """0.1.0's lifecycle: one alert per (patient, rule), a message for every finding that opened it or changed
    its severity (its default route took every severity, info included). Keyed by rule id."""
    return Counter(f.rule_id for f in findings
                   if f.state == "open" and (not warn_and_worse or routed(f.severity, f.category)))


def evaluate_patient(args: tuple[str, int, int, int, int]) -> dict[str, Any]:
    """Both rule sets on one patient (a process of the pool evaluates whole patients)."""
    p = build(*args)
    items = [*p.records, *p.care]
    as_of = p.at(p.days, 0)
    new, old = _rules()
    t0 = time.perf_counter()
    sent = notifications(items, new, ROUTING, HORIZON, as_of=as_of)
    t1 = time.perf_counter()
    old_found = replay(items, old, as_of)
    t2 = time.perf_counter()
    told_before = {f.category for f in old_found if f.state == "open" and routed(f.severity, f.category)}
    return {
        "pid": p.pid, "kind": p.kind, "records": len(p.records), "care_states": [c.state for c in p.care],
        "after": Counter(n.category for n in sent), "after_rules": Counter(r for n in sent for r in n.rules),
        "before": before(old_found), "before_warn": before(old_found, warn_and_worse=True),
        "told_before_not_after": sorted(told_before - {n.category for n in sent}),
        "seconds": (t1 - t0, t2 - t1),
    }


def old_rules_text() -> str:
    """Rules 0.1.0 as committed, with `gas` and `tcco2` added to `history.keep_days` (the current loader asks
    every store to be named; no 0.1.0 rule reads them, so no finding changes)."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:{OLD_PATH}"], capture_output=True,
                          text=True, check=True).stdout
    anchor = "    alsfrs: 400    # questionnaires are a few a year\n"
    assert text.count(anchor) == 1 and 'version: "0.1.0"' in text, "not the 0.1.0 rules file"
    return text.replace(anchor, anchor + "    gas: 400\n    tcco2: 400\n")


_RULES: tuple[RuleSet, RuleSet] | None = None
_OLD_TEXT: str | None = None


def _rules() -> tuple[RuleSet, RuleSet]:
    """The current rules and 0.1.0's, loaded once per process."""
    global _RULES
    if _RULES is None:
        with tempfile.TemporaryDirectory() as tmp:
            old = Path(tmp) / "rules_0_1_0.yaml"
            old.write_text(_OLD_TEXT or old_rules_text())
            _RULES = (load_rules(), load_rules(old))
    return _RULES


def _init(text: str) -> None:
    """A pool process: take the 0.1.0 text read once by the parent (one git call per run)."""
    global _OLD_TEXT
    _OLD_TEXT = text


def cohort(n: int) -> list[str]:
    """`n` patients' kinds in MIX proportions, interleaved (so a smaller cohort keeps the mix)."""
    total = sum(MIX.values())
    quota = {k: max(1, round(v * n / total)) for k, v in MIX.items()}
    kinds: list[str] = []
    while len(kinds) < n and any(quota.values()):
        for k in MIX:
            if quota[k] > 0 and len(kinds) < n:
                kinds.append(k)
                quota[k] -= 1
    return kinds


def _total(rows: list[dict[str, Any]], key: str) -> int:
    return sum(sum(r[key].values()) for r in rows)


def _rate(count: int, patient_months: float) -> float:
    return round(count / patient_months, 3)


def run(seed: int = 12, patients: int = 200, months: int = 12, jobs: int = 2) -> dict[str, Any]:
    """Simulate and count; the figures of bench/results/cohort_alerts.json."""
    days = round(months * 30.44)
    kinds = cohort(patients)
    tasks = [(kind, i, seed, days, kinds[:i].count(kind)) for i, kind in enumerate(kinds)]
    t0 = time.perf_counter()
    if jobs > 1:
        with ProcessPoolExecutor(jobs, initializer=_init, initargs=(old_rules_text(),)) as pool:
            rows = list(pool.map(evaluate_patient, tasks, chunksize=4))
    else:
        rows = [evaluate_patient(t) for t in tasks]
    wall = time.perf_counter() - t0
    pm = len(rows) * days / 30.44
    after, old, old_warn = _total(rows, "after"), _total(rows, "before"), _total(rows, "before_warn")
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in MIX:
        if mine := [r for r in rows if r["kind"] == kind]:
            kpm = len(mine) * days / 30.44
            b, bw, a = _total(mine, "before"), _total(mine, "before_warn"), _total(mine, "after")
            by_kind[kind] = {"patients": len(mine), "before": b, "before_warn_and_worse": bw, "after": a,
                             "before_per_patient_month": _rate(b, kpm), "after_per_patient_month": _rate(a, kpm)}
    return {
        "config": {"seed": seed, "patients": len(rows), "months": months, "days": days,
                   "first_day": FIRST.isoformat(), "mix": dict(Counter(r["kind"] for r in rows)), "jobs": jobs,
                   "before_rules": f"{OLD_COMMIT}:{OLD_PATH} (+ keep_days gas, tcco2)",
                   "before_counting": "every finding that opened or changed severity (0.1.0 routed every severity)",
                   "after_rules": "processors/rules/default.yaml",
                   "after_counting": "respmon.evaluate.notifications: default routing (warn and worse), horizon "
                                     f"{HORIZON.days} d, each record arriving when recorded"},
        "records": sum(r["records"] for r in rows),
        "patient_months": round(pm, 1),
        "before": {"notifications": old, "per_patient_month": _rate(old, pm),
                   "warn_and_worse": old_warn, "warn_and_worse_per_patient_month": _rate(old_warn, pm),
                   "by_rule": dict(sum((r["before"] for r in rows), Counter()).most_common())},
        "after": {"notifications": after, "per_patient_month": _rate(after, pm),
                  "by_category": dict(sum((r["after"] for r in rows), Counter()).most_common()),
                  "rules_in_messages": dict(sum((r["after_rules"] for r in rows), Counter()).most_common())},
        "ratio": round(old / after, 2) if after else math.inf,
        "ratio_warn_and_worse": round(old_warn / after, 2) if after else math.inf,
        "by_kind": by_kind,
        "categories_told_before_never_after": {r["pid"]: r["told_before_not_after"] for r in rows
                                               if r["told_before_not_after"]},
        "care_states": dict(Counter(s for r in rows for s in r["care_states"])),
        "seconds": {"wall": round(wall, 1), "after_cpu": round(sum(r["seconds"][0] for r in rows), 1),
                    "before_cpu": round(sum(r["seconds"][1] for r in rows), 1)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="24 patients for 4 months (the unit test's size)")
    ap.add_argument("--out", type=Path, help="write the JSON here (default: bench/results/cohort_alerts.json)")
    args = ap.parse_args()
    patients, months = (24, 4) if args.quick else (args.patients, args.months)
    result = run(args.seed, patients, months, args.jobs)
    summary = {k: result[k] for k in ("patient_months", "ratio", "ratio_warn_and_worse", "seconds")}
    summary |= {"before": result["before"]["notifications"], "after": result["after"]["notifications"],
                "before_warn_and_worse": result["before"]["warn_and_worse"]}
    print(json.dumps(summary))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    elif not args.quick:
        print(write_result("cohort_alerts", result))


if __name__ == "__main__":
    main()
