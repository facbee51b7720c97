"""The year-long cohort benchmark (`bench/cohort_alerts.py`) in its small size: it runs, is deterministic, and the
current rules and alert lifecycle send at least 3 times fewer notifications than rules 0.1.0 with one alert per
rule did (issue 12, alert burden). The full figures are in bench/results/cohort_alerts.json."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def bench() -> ModuleType:
    """bench/ is scripts, not a package: load the file as its own `python bench/cohort_alerts.py` would."""
    path = ROOT / "bench" / "cohort_alerts.py"
    spec = importlib.util.spec_from_file_location("cohort_alerts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cohort_alerts", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="the 0.1.0 rules are read from git history")
def test_quick_cohort_sends_at_least_3_times_fewer_notifications() -> None:
    cohort = bench()
    first = cohort.run(seed=12, patients=24, months=4, jobs=1)
    assert first["config"]["patients"] == 24 and len(first["config"]["mix"]) == len(cohort.MIX)
    assert first["after"]["notifications"] > 0
    assert first["ratio"] >= 3, first["ratio"]
    assert first["before"]["warn_and_worse"] <= first["before"]["notifications"]
    one = cohort.build("niv_poor_adherence", 5, 12, 120)
    assert one.records == cohort.build("niv_poor_adherence", 5, 12, 120).records  # deterministic from the seed
