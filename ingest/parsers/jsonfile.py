"""Reading JSON uploads safely (size, depth and syntax problems become ParseError)."""

from __future__ import annotations

import json
from typing import Any

from ingest.parsers.common import Context, decode_text


def load_json(data: bytes, ctx: Context) -> Any:
    text = decode_text(data, ctx)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ctx.error(f"invalid JSON ({exc.msg})", f"line {exc.lineno}") from None
    except ValueError:  # Python refuses integers of more than 4300 digits (a plain ValueError)
        raise ctx.error("invalid JSON (number too long)") from None
    except RecursionError:
        raise ctx.error("invalid JSON (nested too deeply)") from None


def as_objects(doc: Any, ctx: Context, what: str) -> list[dict[str, Any]]:
    """A JSON object or a list of objects; anything else is the wrong kind of file."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise ctx.error(f"empty list: no {what}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ctx.error(f"expected a JSON object ({what})", f"item {index}")
    return items


def where(index: int, count: int) -> str | None:
    """'item 3' inside a list, nothing for a single object."""
    return f"item {index}" if count > 1 else None
