"""Paths and the golden-file helper shared by the parser tests.

Regenerate goldens after an intended parser change, then review the diff like code:
    RESPMON_REGEN_GOLDEN=1 python -m pytest tests/test_ingest/test_parsers_resmed.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

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


ROW_BREAKS = ("blank", "extra", "short", "backwards", "crlf")
"""Ways to break one row of a CSV that whole-file readers must leave to the row parser."""


def break_row(rows: list[str], at: int, kind: str) -> None:
    """Break `rows` in place at row `at` in one of the `ROW_BREAKS` ways."""
    if kind == "blank":
        rows.insert(at, "")
    elif kind == "extra":
        rows[at] += ",1"
    elif kind == "short":
        rows[at] = rows[at].rsplit(",", 1)[0]
    elif kind == "backwards":
        rows.append(rows[0])
    elif kind == "crlf":
        rows[at] += "\r"
    else:
        raise ValueError(f"unknown row break {kind!r}")


def as_lists(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """A vectorised reader's record values with its series (arrays, NaN = no reading) as the row
    reader's lists, so both readers can be compared value by value."""
    from schemas.samples import Samples

    if values is None:
        return None
    return {k: Samples(v).tolist() if isinstance(v, np.ndarray) else v for k, v in values.items()}
