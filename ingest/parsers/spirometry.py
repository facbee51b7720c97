"""Spirometry JSON: a SpirometrySession object (or a list of them) as our apps and the clinic portal write it."""

from __future__ import annotations

from typing import Any

from ingest.parsers.common import Context, aware_iso, build
from ingest.parsers.jsonfile import as_objects, load_json, where
from schemas import SpirometrySession


def parse_spirometry_json(data: bytes, ctx: Context) -> list[SpirometrySession]:
    items = as_objects(load_json(data, ctx), ctx, "spirometry session")
    records = []
    for index, item in enumerate(items):
        loc = where(index, len(items))
        values: dict[str, Any] = dict(item)
        values["patient_id"] = ctx.patient_for(item.get("patient_id"), loc)
        if "taken_at" in values:
            values["taken_at"] = aware_iso(values["taken_at"], ctx.tz)
        records.append(build(SpirometrySession, values, ctx, loc))
    return records
