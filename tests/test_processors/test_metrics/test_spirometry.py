"""Spirometry session metrics and GLI Global 2022 against worked examples, the rspiro oracle and pyspiro.

Tolerances: the README of data/gli_global_2022 reports the oracle reproduced to a relative
1.5e-14 (z) and 4e-15 (pred, LLN); we assert 1e-9 relative. Worked examples are printed to
6 decimals (abs 1e-6); the Table E2 spot checks to 5 decimals (abs 1e-5).
"""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from processors.metrics.spirometry import (
    fvc_zscore,
    gli_global,
    gli_global_fvc,
    session_metrics,
    supine_drop_pct,
)
from schemas.spirometry import SpirometrySession

DATA = Path(__file__).parent / "data"
SEX = {"M": "male", "F": "female"}


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- GLI Global 2022


def test_package_data_is_the_documented_workbook_copy() -> None:
    data = resources.files("processors.metrics").joinpath("data")
    expected = {
        "gli_global_2022_splines.csv": "381bd07bfc026a773144b4351e9a5ca569e3f94c7693efcaa6742c1633327bba",
        "gli_global_2022_coefficients.csv": "e47dda385f9be37f3a13f9a2a78fa2fbdb291ee1ed19cf808d20a1cbd424fef1",
    }
    for name, sha in expected.items():
        assert hashlib.sha256(data.joinpath(name).read_bytes()).hexdigest() == sha


@pytest.mark.parametrize("row", _rows("worked_examples.csv"), ids=lambda r: f"{r['sex']}{r['age']}")
def test_worked_examples(row: dict[str, str]) -> None:
    sex, age, height = SEX[row["sex"]], float(row["age"]), float(row["height_cm"])
    fvc = float(row["FVC_measured_L"])
    p = gli_global_fvc(sex, age, height)
    assert p.predicted_l == pytest.approx(float(row["FVC_pred_L"]), abs=1e-6)
    assert p.lln_l == pytest.approx(float(row["FVC_LLN_L"]), abs=1e-6)
    assert p.uln_l == pytest.approx(float(row["FVC_ULN_L"]), abs=1e-6)
    assert p.l == pytest.approx(float(row["FVC_L"]), abs=1e-6)
    assert p.s == pytest.approx(float(row["FVC_S"]), abs=1e-6)
    assert p.pct_pred(fvc) == pytest.approx(float(row["FVC_pct_pred"]), abs=1e-6)
    assert fvc_zscore(sex, age, height, fvc) == pytest.approx(float(row["FVC_z"]), abs=1e-6)
    fev1 = gli_global("FEV1", sex, age, height)
    assert fev1.predicted_l == pytest.approx(float(row["FEV1_pred_L"]), abs=1e-6)
    assert fev1.lln_l == pytest.approx(float(row["FEV1_LLN_L"]), abs=1e-6)
    ratio = gli_global("FEV1FVC", sex, age, height)
    assert ratio.predicted_l == pytest.approx(float(row["FEV1FVC_pred"]), abs=1e-6)
    assert ratio.lln_l == pytest.approx(float(row["FEV1FVC_LLN"]), abs=1e-6)


def test_worked_example_spline_values_by_hand() -> None:
    # README: male 60 y FVC uses Mspline -0.0675033571, Sspline 0.0313140179 ->
    # M = exp(-12.629131 + 2.727421 ln 175 + 0.009174 ln 60 - 0.0675033571) = 4.168152
    import math

    m = math.exp(-12.629131 + 2.727421 * math.log(175) + 0.009174 * math.log(60) - 0.0675033571)
    s = math.exp(-2.195595 + 0.068466 * math.log(60) + 0.0313140179)
    p = gli_global_fvc("male", 60, 175)
    assert p.m == pytest.approx(m, rel=1e-9) and p.s == pytest.approx(s, rel=1e-9)


@pytest.mark.parametrize(
    "row", _rows("test_vectors_pft_rspiro_oracle.csv"), ids=lambda r: f"{r['sex']}{r['age']}-{r['height']}"
)
def test_rspiro_oracle(row: dict[str, str]) -> None:
    sex, age, height = SEX[row["sex"]], float(row["age"]), float(row["height"])
    for param, col in (("FEV1", "fev1"), ("FVC", "fvc"), ("FEV1FVC", "fev1fvc")):
        p = gli_global(param, sex, age, height)
        x = float(row[f"{col}_measured"])
        assert p.predicted_l == pytest.approx(float(row[f"{col}_pred_2022"]), rel=1e-9)
        assert p.lln_l == pytest.approx(float(row[f"{col}_lln_2022"]), rel=1e-9)
        assert p.zscore(x) == pytest.approx(float(row[f"{col}_zscore_2022"]), rel=1e-9)
        assert p.pct_pred(x) == pytest.approx(float(row[f"{col}_pctpred_2022"]), rel=1e-9)


@pytest.mark.parametrize(
    ("sex", "age", "param", "pred", "lln"),
    [
        ("male", 25, "FEV1", 3.89310, 3.04580),
        ("female", 25, "FEV1", 3.43367, 2.65032),
        ("male", 45, "FVC", 4.23915, 3.24460),
        ("female", 45, "FVC", 3.75921, 2.83731),
        ("male", 70, "FEV1", 2.74401, 2.00588),
        ("female", 70, "FEV1FVC", 0.78165, 0.65394),
    ],
)
def test_table_e2_spot_checks(sex: str, age: float, param: str, pred: float, lln: float) -> None:
    p = gli_global(param, sex, age, 170)  # type: ignore[arg-type]
    assert p.predicted_l == pytest.approx(pred, abs=1e-5)
    assert p.lln_l == pytest.approx(lln, abs=1e-5)


def test_between_nodes_uses_linear_interpolation() -> None:
    # README example: male 60.6 y, 175 cm, FVC 3.0 L. linear: pred 4.1504, LLN 3.1198,
    # %pred 72.28, z -1.838 (floor would give 4.1534 / 3.1223 / 72.23 / -1.842).
    p = gli_global_fvc("male", 60.6, 175)
    assert p.predicted_l == pytest.approx(4.1504, abs=5e-5)
    assert p.lln_l == pytest.approx(3.1198, abs=5e-5)
    assert p.pct_pred(3.0) == pytest.approx(72.28, abs=5e-3)
    assert p.zscore(3.0) == pytest.approx(-1.838, abs=5e-4)
    # continuity: nodes and the midpoint lie on the line
    lo, hi, mid = (gli_global_fvc("female", a, 160).m for a in (50.0, 50.25, 50.125))
    assert lo < 50 and min(lo, hi) <= mid <= max(lo, hi)


def test_pyspiro_expected_value() -> None:
    # PySpiro's own test: male, 40 y, 175 cm, FVC 4.5 L -> 95.77 % predicted (z -0.3002)
    p = gli_global_fvc("male", 40, 175)
    assert round(p.pct_pred(4.5), 2) == 95.77
    assert p.zscore(4.5) == pytest.approx(-0.3002, abs=5e-5)


@pytest.mark.parametrize(
    ("sex", "age", "height"),
    [(1, 60.6, 175), (0, 45.13, 162), (1, 72.9, 181.5), (0, 18.37, 158), (1, 94.9, 170), (0, 3.1, 100)],
)
def test_agrees_with_pyspiro_between_nodes(sex: int, age: float, height: float) -> None:
    # pyspiro 1.0 interpolates the splines linearly and uses the actual age, as we do, so the
    # two agree everywhere, not only at nodes (older pyspiro snapped to the nearest node).
    pyspiro = pytest.importorskip("pyspiro")
    ref = pyspiro.BOWERMAN_2022()
    for param, code in (("FVC", 2), ("FEV1", 1), ("FEV1FVC", 3)):
        lam, m, s = ref.lms(sex, age, height, parameter=code, value=1.0)
        p = gli_global(param, "male" if sex else "female", age, height)  # type: ignore[arg-type]
        assert p.l == pytest.approx(float(lam), rel=1e-12)
        assert p.m == pytest.approx(float(m), rel=1e-12)
        assert p.s == pytest.approx(float(s), rel=1e-12)


def test_gli_input_validation() -> None:
    for age in (2.99, 95.01):
        with pytest.raises(ValueError, match="3-95"):
            gli_global_fvc("male", age, 170)
    with pytest.raises(ValueError, match="sex"):
        gli_global_fvc("other", 50, 170)
    with pytest.raises(ValueError, match="height"):
        gli_global_fvc("female", 50, 0)
    assert gli_global_fvc("M", 95, 170) == gli_global_fvc("male", 95.0, 170)  # upper node is valid
    assert gli_global_fvc("f", 3, 100).m > 0


# --------------------------------------------------------------------------- sessions

TAKEN = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def session(**kw) -> SpirometrySession:
    return SpirometrySession(patient_id="p-001", taken_at=TAKEN, **kw)


def test_device_percent_predicted_wins() -> None:
    m = session_metrics(session(fvc_l=3.0, fvc_pct_pred=64.0, sex="male", age_years=60, height_cm=175))
    assert (m.fvc_pct_pred, m.fvc_pct_pred_source) == (64.0, "device")
    assert m.fvc_z == pytest.approx(-1.862822, abs=1e-6)  # GLI z still computed from demographics


def test_gli_percent_predicted_when_device_has_none() -> None:
    # worked example M 60 y 175 cm: 3.0 L -> 71.974334 %; SVC 2.5 L with the FVC equation:
    # 100 * 2.5 / 4.168152 = 59.978612 %
    m = session_metrics(session(fvc_l=3.0, svc_l=2.5, sex="male", age_years=60, height_cm=175))
    assert m.fvc_pct_pred_source == "gli_global_2022"
    assert m.fvc_pct_pred == pytest.approx(71.974334, abs=1e-6)
    assert m.svc_pct_pred == pytest.approx(100 * 2.5 / 4.168152, abs=1e-4)
    assert m.svc_pct_pred_source == "gli_global_2022_fvc"


def test_percent_predicted_not_computable() -> None:
    m = session_metrics(session(fvc_l=3.0, svc_l=2.9, sex="female", age_years=50))  # no height
    assert m.fvc_pct_pred is None and m.fvc_pct_pred_source is None
    assert m.svc_pct_pred is None and m.svc_pct_pred_source is None and m.fvc_z is None
    m2 = session_metrics(session(snip_cmh2o=38, sex="female", age_years=50, height_cm=160))  # no FVC
    assert m2.fvc_pct_pred is None and m2.fvc_pct_pred_source is None
    assert m2.snip_cmh2o == 38


@pytest.mark.parametrize(
    ("grade", "usable"),
    [(None, True), ("A", True), ("B", True), ("C", True), ("D", False), ("E", False), ("F", False), ("U", False)],
)
def test_usable_by_grade(grade: str | None, usable: bool) -> None:
    assert session_metrics(session(fvc_l=2.0, grade=grade)).usable is usable


def test_pass_through_values() -> None:
    m = session_metrics(
        session(posture="supine", fev1_l=1.8, mip_cmh2o=-45, mep_cmh2o=70, pcf_lpm=240, pcf_assisted=True)
    )
    assert (m.posture, m.fev1_l, m.mip_cmh2o, m.mep_cmh2o, m.pcf_lpm, m.pcf_assisted) == (
        "supine", 1.8, 45, 70, 240, True,
    )
    assert m.taken_at == TAKEN


def test_supine_drop_pct() -> None:
    assert supine_drop_pct(3.0, 2.4) == pytest.approx(20.0)  # (3.0 - 2.4) / 3.0
    assert supine_drop_pct(2.0, 1.85) == pytest.approx(7.5)
    assert supine_drop_pct(2.0, 2.1) == pytest.approx(-5.0)  # supine higher: negative drop
    with pytest.raises(ValueError):
        supine_drop_pct(0.0, 1.0)
