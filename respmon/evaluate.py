"""`respmon evaluate`: history files parsed by ingest's parsers, replayed through the same metrics and
rules as the stream. It lives in the top layer because it joins two services' packages."""

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.parsers import parse_path
from processors.rules.evaluator import replay
from processors.rules.loader import load_rules
from schemas import Finding


def load_records(paths: Sequence[Path | str], patient_id: str | None = None) -> list[Any]:
    """Parse history files with the ingest parsers (format detected from content/extension)."""
    records: list[Any] = []
    for path in paths:
        records.extend(parse_path(Path(path), patient_id=patient_id))
    if patient_id is not None:
        records = [r for r in records if r.patient_id == patient_id]
    return records


def evaluate_files(
    paths: Sequence[Path | str],
    *,
    rules_path: Path | str | None = None,
    overrides: Path | str | None = None,
    as_of: datetime | None = None,
    patient_id: str | None = None,
) -> list[Finding]:
    """What ``respmon evaluate FILE... [--rules F] [--as-of DATE] [--patient ID]`` runs."""
    rules = load_rules(rules_path, overrides)
    return replay(load_records(paths, patient_id), rules, as_of)
