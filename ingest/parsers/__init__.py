"""Device-export parsers: uploaded bytes or folders in, canonical `schemas` records out.

Public API (used by the HTTP ingest service and the CLI)::

    ParseError, FORMATS, detect_format(filename, data), parse_bytes(data, filename, ...),
    parse_path(path, ...), parse_bytes_with_notes(...), resmed_event_counts(data, filename)

Every failure caused by the input is a `ParseError` with a one-line message naming the file and,
where it helps, the line, signal or byte; no other exception escapes for bad bytes (an unforeseen
one becomes a `ParserFault`, a ParseError, rather than a crash that ingest would answer with 503).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ingest.parsers import co2, contec, fhir, generic_csv, lowenstein, resmed, wellue
from ingest.parsers.alsfrs import parse_alsfrs_json
from ingest.parsers.common import Context, Notes, Parser, resolve_tz
from ingest.parsers.detect import FORMATS, detect_format
from ingest.parsers.errors import ParseError, ParserFault, PatientMismatch, guard
from ingest.parsers.spirometry import parse_spirometry_json
from schemas import NivNight, OximetryNight

__all__ = [
    "FORMATS",
    "ParseError",
    "ParserFault",
    "PatientMismatch",
    "detect_format",
    "parse_bytes",
    "parse_bytes_with_notes",
    "parse_path",
    "resmed_event_counts",
]

log = logging.getLogger(__name__)

PARSERS: dict[str, Parser] = {
    "spirometry_json": parse_spirometry_json,
    "spirometry_csv": generic_csv.parse_spirometry_csv,
    "niv_csv": generic_csv.parse_niv_csv,
    "alsfrs_json": parse_alsfrs_json,
    "fhir_bundle": fhir.parse_fhir_bundle,
    "o2ring_csv": wellue.parse_csv,
    "o2ring_bin": wellue.parse_bin,
    "oximetry_csv": generic_csv.parse_oximetry_csv,
    "resmed_str": resmed.parse_str,
    "resmed_pld": resmed.parse_pld,
    "resmed_sad": resmed.parse_session_sad,
    "resmed_eve": resmed.parse_eve,
    "blood_gas_csv": co2.parse_blood_gas_csv,
    "tcco2_csv": co2.parse_tcco2_csv,
    "lowenstein_wmedf": lowenstein.parse,
    "contec_spo2": contec.parse_spo2,
}
assert set(PARSERS) == set(FORMATS)

SIDE_FILES = {".crc", ".tgt", ".md", ".txt"}
"""Files inside an export folder that carry no measurements (ResMed checksums, identification, notes)."""

resmed_event_counts = resmed.event_counts


def parse_bytes(
    data: bytes,
    filename: str,
    *,
    fmt: str | None = None,
    patient_id: str | None = None,
    tz: str = "UTC",
) -> list[BaseModel]:
    """Parse one uploaded file. `tz` is the zone of naive device clocks (oximeters, ResMed)."""
    records, _notes = parse_bytes_with_notes(data, filename, fmt=fmt, patient_id=patient_id, tz=tz)
    return records


def parse_bytes_with_notes(
    data: bytes,
    filename: str,
    *,
    fmt: str | None = None,
    patient_id: str | None = None,
    tz: str = "UTC",
    device_model: str | None = None,
    o2_lpm: float | None = None,
) -> tuple[list[BaseModel], list[str]]:
    """Like `parse_bytes`, plus what was skipped and why (e.g. unsupported FHIR codes).

    Notes name entries and (escaped, truncated) codes only, never values or identifiers; one log line
    per upload counts them. `o2_lpm` (the upload's `?o2_lpm=`): the oxygen flow the uploader says the
    recordings were made on, for the oximetry and NIV nights whose file does not say (issue 12).
    """
    ctx = Context(filename, patient_id, resolve_tz(tz, filename), device_model)
    records = _dispatch(data, ctx, fmt)
    if o2_lpm is not None:
        records = _with_oxygen(records, o2_lpm, filename)
    _log_skipped(ctx.notes)
    return records, ctx.notes.text


MAX_O2_LPM = 30.0
"""The records' own bound on an oxygen flow (L/min)."""


def _with_oxygen(records: list[BaseModel], o2_lpm: float, filename: str) -> list[BaseModel]:
    """Nights recorded on the uploader's stated oxygen flow (0 = room air); a file's own value wins, as
    the file was written at the time."""
    if not 0 <= o2_lpm <= MAX_O2_LPM:
        raise ParseError(filename, f"o2_lpm must be from 0 to {MAX_O2_LPM:g} L/min")
    out: list[BaseModel] = []
    for record in records:
        if isinstance(record, OximetryNight) and record.supplemental_o2 is None and record.o2_lpm is None:
            record = record.model_copy(update={"supplemental_o2": o2_lpm > 0, "o2_lpm": o2_lpm})
        elif isinstance(record, NivNight) and record.o2_lpm is None:
            record = record.model_copy(update={"o2_lpm": o2_lpm})
        out.append(record)
    return out


def _log_skipped(notes: Notes) -> None:
    """One line per upload, whatever the number of skipped entries (one line each flooded the logs).
    Neither the file name nor values: both come from the device and may name the patient."""
    if notes.total:
        log.warning("unsupported observations skipped",
                    extra={"count": notes.total, "reasons": dict(notes.counts), "codes": notes.codes})


def _dispatch(data: bytes, ctx: Context, fmt: str | None) -> list[BaseModel]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError(ctx.filename, "upload is not bytes")
    data = bytes(data)
    if fmt is None:
        fmt = detect_format(ctx.filename, data)
    elif fmt not in PARSERS:
        raise ParseError(ctx.filename, f"unknown format {str(fmt)[:40]!r}; known: {', '.join(FORMATS)}")
    if not data:
        raise ParseError(ctx.filename, "empty file")
    with guard(ctx.filename, f"{fmt} parser"):
        return list(PARSERS[fmt](data, ctx))


def parse_path(
    path: Path | str,
    *,
    patient_id: str | None = None,
    fmt: str | None = None,
    tz: str = "UTC",
) -> list[BaseModel]:
    """A file, a ResMed SD-card folder (STR.edf + DATALOG/), or a folder of exports (recursively).

    Inside folders, ResMed side files (.crc, Identification.*) and hidden files are skipped;
    every other file must parse. BRP (25 Hz flow) files are skipped on cards.
    """
    path = Path(path)
    zone = resolve_tz(tz, str(path))
    if path.is_file():
        card = resmed.find_card_root(path.parent)
        model = resmed.device_model(card) if card else None
        ctx = Context(str(path), patient_id, zone, model)
        return _dispatch(_read(path), ctx, fmt)
    if not path.is_dir():
        raise ParseError(str(path), "no such file or folder")
    return _walk(path, Context(str(path), patient_id, zone), fmt)


def _walk(folder: Path, ctx: Context, fmt: str | None) -> list[Any]:
    if resmed.is_card(folder):
        with guard(str(folder), "resmed card parser"):
            return resmed.parse_card(folder, ctx)
    records: list[Any] = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or child.suffix.lower() in SIDE_FILES or child.name.startswith("Identification."):
            continue
        if child.is_dir():
            records += _walk(child, ctx, fmt)
        elif child.is_file():
            sub = Context(str(child), ctx.patient_id, ctx.tz, None, ctx.notes)
            records += _dispatch(_read(child), sub, fmt)
    return records


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ParseError(str(path), f"cannot read file ({exc.strerror})") from None
