"""Send a folder of device exports (an SD-card copy, a folder of CSVs) through the real ingest path."""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
from tqdm import tqdm

CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json", ".edf": "application/octet-stream",
                 ".bin": "application/octet-stream", ".dat": "application/octet-stream"}
SKIPPED_SUFFIXES = {".crc", ".tgt"}
# Per-session ResMed files the pipeline does not use as records on a card (STR.edf summarises them).
SKIPPED_RESMED = ("_BRP.edf", "_EVE.edf", "_CSL.edf", "_PLD.edf")


def export_files(folder: Path) -> Iterator[Path]:
    """Files worth sending, in a stable order: STR.edf and oximetry sessions of a card, every export."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() in SKIPPED_SUFFIXES or path.name.startswith("."):
            continue
        if path.name.endswith(SKIPPED_RESMED):
            continue
        if path.suffix.lower() in CONTENT_TYPES:
            yield path


def backfill(folder: Path, url: str, token: str, progress: bool = True) -> tuple[Counter[str], list[str]]:
    """Upload every export; returns counts per outcome and one line per rejected file."""
    files = list(export_files(folder))
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    with httpx.Client(timeout=120) as client:
        for path in tqdm(files, unit="file", disable=not progress, desc="backfill"):
            response = client.post(
                f"{url.rstrip('/')}/v1/uploads", content=path.read_bytes(), params={"filename": path.name},
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": CONTENT_TYPES[path.suffix.lower()]},
            )
            outcome = _outcome(response)
            outcomes[outcome] += 1
            if outcome not in ("accepted", "duplicate"):
                reason = response.json().get("reason", response.text[:200]) if response.content else ""
                problems.append(f"{path}: HTTP {response.status_code}: {reason}")
    return outcomes, problems


def _outcome(response: httpx.Response) -> str:
    if response.status_code == 202:
        return "accepted"
    if response.status_code == 200 and response.json().get("duplicate"):
        return "duplicate"
    return "rejected"
