"""Spirometry session metrics and the GLI Global 2022 (race-neutral) reference equations.

GLI Global 2022 (Bowerman et al., AJRCCM 2023;207:768), height in cm, age in years::

    M = exp(a0 + a1*ln(height) + a2*ln(age) + Mspline(age))     predicted (median)
    S = exp(p0 + p1*ln(age) + Sspline(age))
    L = q0 + q1*ln(age)                                         (Lspline is 0 everywhere)
    z = ((X/M)**L - 1) / (L*S);  LLN = M*(1 - 1.645*L*S)**(1/L);  %pred = 100*X/M

Spline tables: ``data/gli_global_2022_splines.csv`` (GLI workbook
``gli_global_lookuptables_dec6.xlsx``, 0.25-year nodes from 3 to 95 y). **Interpolation
convention**: Mspline and Sspline are interpolated *linearly* between the two bracketing
quarter-year nodes and the *actual* age is used in the ln(age) terms (GLI SAS macro lineage,
pft, and pyspiro >= 1.0). rspiro floors to the lower node instead; results agree exactly at
whole and quarter years and differ by up to ~0.3 % of M in adults between nodes.

SVC: GLI has no VC equation; as in clinical practice, ``svc_pct_pred`` applies the GLI Global
FVC equation to the measured SVC (``svc_pct_pred_source = "gli_global_2022_fvc"``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Literal

from schemas.spirometry import Grade, Posture, SpirometrySession

__all__ = [
    "GLI_AGE_RANGE",
    "GliPrediction",
    "SpirometryMetrics",
    "fvc_zscore",
    "gli_global",
    "gli_global_fvc",
    "session_metrics",
    "supine_drop_pct",
]

GLI_AGE_RANGE = (3.0, 95.0)
_AGE_STEP = 0.25
_Z_LLN = 1.645  # 5th centile
USABLE_GRADES = frozenset({"A", "B", "C"})
"""ATS/ERS grades a session is used at full weight with (an ungraded session too); D-F and U are poor."""


def usable(grade: str | None) -> bool:
    """Whether a session of this grade counts as usable (the rules' `spiro.usable`, the web view's trends)."""
    return grade is None or grade in USABLE_GRADES

GliParam = Literal["FVC", "FEV1", "FEV1FVC"]


@dataclass(frozen=True, slots=True)
class GliPrediction:
    """LMS values for one person and parameter. ``predicted_l`` is M (litres; a ratio for FEV1FVC)."""

    predicted_l: float
    lln_l: float
    l: float  # LMS notation (lambda)
    m: float
    s: float
    uln_l: float

    def zscore(self, measured: float) -> float:
        return ((measured / self.m) ** self.l - 1.0) / (self.l * self.s)

    def pct_pred(self, measured: float) -> float:
        return 100.0 * measured / self.m


@dataclass(frozen=True, slots=True)
class SpirometryMetrics:
    """Metrics of one session. ``fvc_pct_pred_source`` says where ``fvc_pct_pred`` came from."""

    taken_at: datetime
    posture: Posture
    fvc_l: float | None
    fvc_pct_pred: float | None
    fvc_pct_pred_source: Literal["device", "gli_global_2022"] | None
    svc_l: float | None
    svc_pct_pred: float | None
    fev1_l: float | None
    mip_cmh2o: float | None
    mep_cmh2o: float | None
    snip_cmh2o: float | None
    pcf_lpm: float | None
    pcf_assisted: bool
    grade: Grade | None
    usable: bool
    fvc_z: float | None = None
    svc_pct_pred_source: Literal["gli_global_2022_fvc"] | None = None


@cache
def _tables() -> tuple[
    dict[tuple[str, str], tuple[float, ...]], dict[tuple[str, str], tuple[list[float], list[float]]]
]:
    data = resources.files("processors.metrics").joinpath("data")
    coeffs: dict[tuple[str, str], tuple[float, ...]] = {}
    # Traversable.open takes no `newline`; the tables are plain ASCII numbers, one row per line
    for row in csv.DictReader(data.joinpath("gli_global_2022_coefficients.csv").read_text().splitlines()):
        coeffs[(row["param"], row["sex"])] = tuple(
            float(row[k]) for k in ("a0", "a1", "a2", "p0", "p1", "q0", "q1")
        )
    nodes: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for row in csv.DictReader(data.joinpath("gli_global_2022_splines.csv").read_text().splitlines()):
        nodes.setdefault((row["param"], row["sex"]), []).append(
            (float(row["age"]), float(row["Mspline"]), float(row["Sspline"]))
        )
    n_nodes = round((GLI_AGE_RANGE[1] - GLI_AGE_RANGE[0]) / _AGE_STEP) + 1
    splines: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for key, rows in nodes.items():
        rows.sort()
        ages = [r[0] for r in rows]
        expected = [GLI_AGE_RANGE[0] + k * _AGE_STEP for k in range(n_nodes)]
        if ages != expected:
            raise ValueError(f"GLI spline table {key} does not hold the 369 quarter-year nodes")
        splines[key] = ([r[1] for r in rows], [r[2] for r in rows])
    return coeffs, splines


def _sex_code(sex: str) -> str:
    code = {"male": "M", "m": "M", "female": "F", "f": "F"}.get(str(sex).strip().lower())
    if code is None:
        raise ValueError(f"sex must be 'male' or 'female' (sex at birth), got {sex!r}")
    return code


def gli_global(param: GliParam, sex: str, age_years: float, height_cm: float) -> GliPrediction:
    """GLI Global 2022 LMS prediction for FVC, FEV1 or FEV1FVC (linear spline interpolation).

    :raises ValueError: sex not male/female, age outside 3-95 y, or height not positive.
    """
    coeffs, splines = _tables()
    key = (param, _sex_code(sex))
    if key not in coeffs:
        raise ValueError(f"unknown GLI Global parameter {param!r}")
    age = float(age_years)
    height = float(height_cm)
    if not (GLI_AGE_RANGE[0] <= age <= GLI_AGE_RANGE[1]):
        raise ValueError(f"GLI Global 2022 covers ages 3-95 y, got {age_years!r}")
    if not (height > 0 and math.isfinite(height)):
        raise ValueError(f"height must be a positive number of cm, got {height_cm!r}")
    a0, a1, a2, p0, p1, q0, q1 = coeffs[key]
    m_nodes, s_nodes = splines[key]
    pos = (age - GLI_AGE_RANGE[0]) / _AGE_STEP
    j = min(math.floor(pos), len(m_nodes) - 2)
    w = pos - j
    mspline = m_nodes[j] if w == 0 else (1 - w) * m_nodes[j] + w * m_nodes[j + 1]
    sspline = s_nodes[j] if w == 0 else (1 - w) * s_nodes[j] + w * s_nodes[j + 1]
    ln_age = math.log(age)
    m = math.exp(a0 + a1 * math.log(height) + a2 * ln_age + mspline)
    s = math.exp(p0 + p1 * ln_age + sspline)
    lam = q0 + q1 * ln_age
    lln = m * (1 - _Z_LLN * lam * s) ** (1 / lam)
    uln = m * (1 + _Z_LLN * lam * s) ** (1 / lam)
    return GliPrediction(predicted_l=m, lln_l=lln, l=lam, m=m, s=s, uln_l=uln)


def gli_global_fvc(sex: str, age_years: float, height_cm: float) -> GliPrediction:
    """GLI Global 2022 FVC prediction (litres). Sex is sex at birth: 'male'/'female' (or M/F)."""
    return gli_global("FVC", sex, age_years, height_cm)


def fvc_zscore(sex: str, age_years: float, height_cm: float, fvc_l: float) -> float:
    """GLI Global 2022 z-score of a measured FVC (litres)."""
    return gli_global_fvc(sex, age_years, height_cm).zscore(fvc_l)


def supine_drop_pct(sitting_fvc_l: float, supine_fvc_l: float) -> float:
    """Fall of FVC from sitting to supine, as % of the sitting value (positive = lower supine)."""
    if not sitting_fvc_l > 0:
        raise ValueError("sitting FVC must be positive")
    return 100.0 * (sitting_fvc_l - supine_fvc_l) / sitting_fvc_l


def session_metrics(s: SpirometrySession) -> SpirometryMetrics:
    """Metrics of one session.

    ``fvc_pct_pred``: the device's value when supplied (``source='device'``), else GLI Global 2022
    from sex, age and height (``'gli_global_2022'``), else None. ``svc_pct_pred`` and ``fvc_z``
    are computed only from demographics. ``usable``: grade unknown or A-C.
    """
    pred = None
    if s.sex is not None and s.age_years is not None and s.height_cm is not None:
        pred = gli_global_fvc(s.sex, s.age_years, s.height_cm)
    fvc_pct: float | None = None
    source: Literal["device", "gli_global_2022"] | None = None
    if s.fvc_pct_pred is not None:
        fvc_pct, source = float(s.fvc_pct_pred), "device"
    elif s.fvc_l is not None and pred is not None:
        fvc_pct, source = pred.pct_pred(s.fvc_l), "gli_global_2022"
    svc_pct = pred.pct_pred(s.svc_l) if (pred is not None and s.svc_l is not None) else None
    return SpirometryMetrics(
        taken_at=s.taken_at,
        posture=s.posture,
        fvc_l=s.fvc_l,
        fvc_pct_pred=fvc_pct,
        fvc_pct_pred_source=source,
        svc_l=s.svc_l,
        svc_pct_pred=svc_pct,
        fev1_l=s.fev1_l,
        mip_cmh2o=s.mip_cmh2o,
        mep_cmh2o=s.mep_cmh2o,
        snip_cmh2o=s.snip_cmh2o,
        pcf_lpm=s.pcf_lpm,
        pcf_assisted=s.pcf_assisted,
        grade=s.grade,
        usable=usable(s.grade),
        fvc_z=pred.zscore(s.fvc_l) if (pred is not None and s.fvc_l is not None) else None,
        svc_pct_pred_source="gli_global_2022_fvc" if svc_pct is not None else None,
    )
