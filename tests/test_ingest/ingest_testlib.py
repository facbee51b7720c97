"""Paths and the golden-file helper shared by the parser tests.

Regenerate goldens after an intended parser change, then review the diff like code:
    RESPMON_REGEN_GOLDEN=1 python -m pytest tests/test_ingest/test_parsers_resmed.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data"
SYN = DATA / "synthetic"
RESMED = DATA / "resmed"
GOLDEN = TESTS / "golden"
AIRSENSE = RESMED / "airsense10_autoset"
AIRCURVE = RESMED / "aircurve10_vauto"
AIRSENSE_DAY = AIRSENSE / "DATALOG" / "20241126"
AIRCURVE_DAY = AIRCURVE / "DATALOG" / "20250202"
REGEN = os.environ.get("RESPMON_REGEN_GOLDEN") == "1"


def check_golden(name: str, payload: Any) -> None:
    """Compare with tests/golden/<name>.json; RESPMON_REGEN_GOLDEN=1 rewrites it (review the diff!)."""
    path = GOLDEN / f"{name}.json"
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if REGEN:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path.name}: run with RESPMON_REGEN_GOLDEN=1"
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert json.loads(text) == expected, f"{path.name} differs from the parser output"


def dump(records: list[Any]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in records]
