"""Small history files as devices and clinics upload them, for backtesting rules through `respmon evaluate`.

Issue 12 (clinical corrections): every correction is shown on files parsed by ingest's own parsers, the
way `respmon evaluate FILE...` reads them, for an alert raised and for one not raised.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.scenarios import START, day

P = "CC-1"
SPIRO_COLUMNS = ("patient_id", "taken_at", "fvc_l", "fvc_pct_pred", "svc_l", "mip_cmh2o", "mep_cmh2o",
                 "snip_cmh2o", "pcf_lpm", "grade", "sex", "age_years", "height_cm")
DEMOGRAPHICS = {"sex": "male", "age_years": 60, "height_cm": 175}


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def session(d: int, fvc: float | None = None, *, demographics: bool = False, **cells: Any) -> dict[str, Any]:
    """A sitting session on day `d`; FVC litres default to `fvc` % of 4.0 L, grade A."""
    row: dict[str, Any] = {"taken_at": day(d).isoformat(), "fvc_pct_pred": fvc, "grade": "A"}
    if fvc is not None:
        row["fvc_l"] = round(0.04 * fvc, 3)
    if demographics:
        row |= DEMOGRAPHICS
    return row | cells


def spiro_csv(folder: Path, sessions: Iterable[Mapping[str, Any]], name: str = "spirometry.csv") -> Path:
    lines = [",".join(SPIRO_COLUMNS)]
    for s in sessions:
        lines.append(",".join(_cell({"patient_id": P, **s}.get(c)) for c in SPIRO_COLUMNS))
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def night(d: int, usage: float, **cells: Any) -> dict[str, Any]:
    return {"night_date": (START + timedelta(days=d)).isoformat(), "usage_hours": usage, **cells}


def niv_csv(folder: Path, nights: Iterable[Mapping[str, Any]], name: str = "niv.csv") -> Path:
    """NIV nights; only the columns some night uses are written (no `leak_kind` column unless given)."""
    rows = [{"patient_id": P, **n} for n in nights]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = [",".join(columns)] + [",".join(_cell(r.get(c)) for c in columns) for r in rows]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def nights(first: int, usages: Iterable[float], **cells: Any) -> list[dict[str, Any]]:
    return [night(first + i, u, **cells) for i, u in enumerate(usages)]


def alsfrs_json(folder: Path, forms: Iterable[tuple[int, Mapping[int, int]]], name: str = "alsfrs.json") -> Path:
    """Questionnaires on (day, {item: score}); every other item scores 4."""
    out = []
    for d, scores in forms:
        items = [4] * 12
        for item, score in scores.items():
            items[item - 1] = score
        out.append({"patient_id": P, "taken_at": day(d, 9).isoformat(), "items": items})
    path = folder / name
    path.write_text(json.dumps(out))
    return path


Pattern = Callable[[int], float]
"""SpO2 at second `s` of the night."""


def steady(level: float = 95.0) -> Pattern:
    return lambda s: level


def sawtooth(dip_s: int = 100, recover_s: int = 20, low: float = 86.0, high: float = 92.0) -> Pattern:
    """Repeated dips to `low` for `dip_s` seconds, each followed by `recover_s` seconds at `high`."""
    return lambda s: low if s % (dip_s + recover_s) < dip_s else high


def dips(count: int, dip_s: int = 60, every_s: int = 1200, low: float = 86.0, base: float = 95.0) -> Pattern:
    """`count` separate dips to `low` of `dip_s` seconds, one every `every_s` seconds, else `base`."""
    return lambda s: low if s // every_s < count and s % every_s < dip_s else base


def block(pct_of_night: float, hours: float = 8.0, level: float = 89.0, base: float = 95.0) -> Pattern:
    """One block at `level` (below 90, above 88) making `pct_of_night` % of the recording."""
    end = hours * 3600 * pct_of_night / 100
    return lambda s: level if s < end else base


def oxi_csv(folder: Path, d: int, pattern: Pattern, *, hours: float = 8.0, interval_s: int = 4,
            o2_lpm: float | None = None) -> Path:
    """Generic oximetry CSV of the night of day `d` from 22:00 UTC; `o2_lpm` adds that column."""
    start = day(d, 22)
    header = "timestamp,spo2,pulse" + (",o2_lpm" if o2_lpm is not None else "")
    tail = "" if o2_lpm is None else f",{o2_lpm:g}"
    lines = [header]
    for s in range(0, round(hours * 3600), interval_s):
        stamp = (start + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{pattern(s):g},70{tail}")
    path = folder / f"oxi_{d}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
