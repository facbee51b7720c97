"""Send a folder of device exports (an SD-card copy, a folder of CSVs) through the real ingest path."""

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
from tqdm import tqdm

CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json", ".edf": "application/octet-stream",
                 ".bin": "application/octet-stream", ".dat": "application/octet-stream",
                 ".wmedf": "application/octet-stream", ".spo2": "application/octet-stream"}  # Löwenstein, Contec
SKIPPED_SUFFIXES = {".crc", ".tgt"}
RETRIED_STATUSES = {429, 503}  # "retry later": ingest or its Kafka/PostgreSQL is busy or down, or a quota

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


def backfill(folder: Path, url: str, token: str, progress: bool = True, tries: int = 6,
             backoff_s: float = 1.0) -> tuple[Counter[str], list[str]]:
    """Upload every export; returns counts per outcome and one line per file not stored.

    A "retry later" answer (503, 429) or a lost connection is retried with exponential backoff
    (`backoff_s` doubling, or the server's Retry-After), `tries` times in all; a file still not taken
    then counts as `unavailable`, never as `rejected`: running the backfill again sends it (what was
    stored already answers duplicate)."""
    files = list(export_files(folder))
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    with httpx.Client(timeout=120) as client:
        for path in tqdm(files, unit="file", disable=not progress, desc="backfill"):
            response = _post_with_retries(client, url, token, path, tries, backoff_s)
            outcome = _outcome(response)
            outcomes[outcome] += 1
            if outcome in ("accepted", "duplicate"):
                continue
            if response is None:
                problems.append(f"{path}: ingest unreachable after {tries} tries; run the backfill again later")
            elif outcome == "unavailable":
                problems.append(
                    f"{path}: HTTP {response.status_code} after {tries} tries; run the backfill again later")
            else:
                reason = response.json().get("reason", response.text[:200]) if response.content else ""
                problems.append(f"{path}: HTTP {response.status_code}: {reason}")
    return outcomes, problems


def _post_with_retries(client: httpx.Client, url: str, token: str, path: Path, tries: int,
                       backoff_s: float) -> httpx.Response | None:
    """The upload's last answer (None: never reached the service)."""
    response: httpx.Response | None = None
    for attempt in range(tries):
        if attempt:
            time.sleep(_wait_s(response, backoff_s * 2 ** (attempt - 1)))
        try:
            response = client.post(
                f"{url.rstrip('/')}/v1/uploads", content=path.read_bytes(), params={"filename": path.name},
                headers={"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPES[path.suffix.lower()]},
            )
        except httpx.TransportError:
            response = None
            continue
        if response.status_code not in RETRIED_STATUSES:
            return response
    return response


def _wait_s(response: httpx.Response | None, default: float) -> float:
    """The server's Retry-After (seconds, capped at 5 min) when it gave one, else the backoff."""
    header = response.headers.get("Retry-After", "") if response is not None else ""
    return min(300.0, float(header)) if header.isdigit() else min(300.0, default)


def _outcome(response: httpx.Response | None) -> str:
    if response is None or response.status_code in RETRIED_STATUSES:
        return "unavailable"
    if response.status_code == 202:
        return "accepted"
    if response.status_code == 200 and response.json().get("duplicate"):
        return "duplicate"
    return "rejected"
