"""ALSFRS-R questionnaire JSON: ``{patient_id, taken_at, items: [12 scores]}`` or ``item_1 .. item_12`` keys."""

from __future__ import annotations

from typing import Any

from ingest.parsers.common import Context, aware_iso, build
from ingest.parsers.jsonfile import as_objects, load_json, where
from schemas import AlsfrsR

ITEM_KEYS = tuple(f"item_{n}" for n in range(1, 13))


def looks_like_alsfrs(obj: dict[str, Any]) -> bool:
    return "items" in obj or "item_1" in obj


def _items(item: dict[str, Any], ctx: Context, loc: str | None) -> Any:
    """Scores in form order; the flat style must have all 12 keys and no `items` list."""
    flat = [key for key in ITEM_KEYS if key in item]
    if not flat:
        return item.get("items")
    if "items" in item:
        raise ctx.error("give either 'items' or 'item_1'..'item_12', not both", loc)
    missing = [key for key in ITEM_KEYS if key not in item]
    if missing:
        raise ctx.error(f"field {missing[0]}: missing", loc)
    return [item[key] for key in ITEM_KEYS]


def parse_alsfrs_json(data: bytes, ctx: Context) -> list[AlsfrsR]:
    items = as_objects(load_json(data, ctx), ctx, "ALSFRS-R questionnaire")
    records = []
    for index, item in enumerate(items):
        loc = where(index, len(items))
        values = {k: v for k, v in item.items() if k not in ITEM_KEYS}
        values["items"] = _items(item, ctx, loc)
        values["patient_id"] = ctx.patient_for(item.get("patient_id"), loc)
        if "taken_at" in values:
            values["taken_at"] = aware_iso(values["taken_at"], ctx.tz)
        records.append(build(AlsfrsR, values, ctx, loc))
    return records
