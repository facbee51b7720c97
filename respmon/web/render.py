"""Templates: one Jinja2 environment (autoescaped), the context every page gets, and small filters.

Every page shows the decision-support disclaimer and the member logged in; a request from htmx
(`HX-Request`) may be answered with a fragment of the same template instead of the whole page.
"""

import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from alerts.lifecycle import DISCLAIMER
from respmon.web.auth import CSRF_FIELD, Person

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


def number(value: Any, digits: int = 1, unit: str = "") -> str:
    """A value for a table cell: '—' when missing (None, NaN), else rounded, with its unit."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        text = f"{value:.{digits}f}" if digits > 0 else f"{round(value):d}"
        return f"{text}{unit}"
    return str(value)


def signed(value: Any, digits: int = 1, unit: str = "") -> str:
    """A change: '+1.2' / '−3.4' (a minus sign, not a hyphen), '—' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{'+' if value >= 0 else '−'}{abs(value):.{digits}f}{unit}"


def day(value: date | datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=number, signed=signed, day=day)
    env.globals.update(DISCLAIMER=DISCLAIMER, CSRF_FIELD=CSRF_FIELD)
    return env


ENV = _environment()


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def html(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a template (or a fragment template) to a response."""
    return HTMLResponse(ENV.get_template(template).render(**context), status_code=status)


def page(request: Request, template: str, person: Person | None, title: str, status: int = 200,
         **context: Any) -> HTMLResponse:
    """A whole page: the template extends base.html, which shows the member, logout and the disclaimer."""
    return html(template, status, request=request, person=person, title=title, **context)
