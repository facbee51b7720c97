"""HTTP hardening shared by ingest and the team API (issue 13), installed by `secure_responses(app, ...)`.

- A NUL byte in a query parameter, path parameter or header is a 422 naming it: PostgreSQL text refuses
  NUL, so such a value used to reach a query and come back as a 500 with a traceback.
- Validation errors are one JSON shape (`error`, `reason`, `errors[]`) that never echoes the input back.
- An unexpected exception is a generic JSON 500; the log line carries its type and code frames, never its
  message (a database error quotes the values it refused) nor the query string (it holds patient ids).
- Every answer carries nosniff, no-store (the bodies hold patient data), no-referrer and DENY framing.
- `/docs`, `/redoc` and `/openapi.json` answer only to a team token, and not at all with
  `RESPMON_API_DOCS=false` (production).
"""

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool
from pydantic import AfterValidator
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from respmon.core.settings import Settings
from respmon.core.tokens import active_holder

log = logging.getLogger("respmon.http")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_REPLACED = {name for name, _ in SECURITY_HEADERS} | {b"server"}
NUL_REASON = "must not contain a NUL byte"
# liveness and readiness answers (a 503 polled every few seconds during an outage) are not request errors
UNLOGGED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
FRAMES_LOGGED = 8
REFUSED_KEY = "respmon.refused"  # scope key: which parameters a 422 refused, for its log line

Authorize = Callable[[str], bool]


def refuse_nul(value: str) -> str:
    """Pydantic validator for text that ends up in PostgreSQL (text columns refuse NUL)."""
    if "\x00" in value:
        raise ValueError(NUL_REASON)
    return value


NulFree = Annotated[str, AfterValidator(refuse_nul)]


def secure_responses(app: FastAPI, pool: ConnectionPool[Any], settings: Settings) -> None:
    """Install the hardening on `app`; `pool` checks the team tokens that open the API docs."""
    def authorize(token: str) -> bool:
        with pool.connection() as conn:
            return active_holder(conn, "team_members", token) is not None

    docs = {p for p in (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p}
    app.add_exception_handler(RequestValidationError, validation_failed)  # type: ignore[arg-type]
    app.add_middleware(HardenedHTTP, router=app.router, docs_paths=frozenset(docs),
                       docs_enabled=settings.api_docs, authorize=authorize)


def problem(status: int, error: str, reason: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    """The JSON error shape of both services (`error`, `reason`), as ingest already answered it."""
    body: dict[str, Any] = {"error": error, "reason": reason}
    if errors is not None:
        body["errors"] = errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def invalid(errors: list[dict[str, str]]) -> JSONResponse:
    reason = "; ".join(f"{e['in']} parameter {e['parameter']!r} {e['reason']}" for e in errors)
    return problem(422, "invalid_request", reason, errors)


async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 without its `input` echo (a patient id, a note): where, which parameter, why."""
    errors = []
    for error in exc.errors():
        where, *name = [str(part) for part in error.get("loc", ())] or ["request"]
        reason = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        errors.append({"in": where, "parameter": ".".join(name) or where, "reason": reason})
    request.scope[REFUSED_KEY] = errors  # for the middleware's log line
    return invalid(errors)


def nul_parameter(scope: Scope, router: Router) -> dict[str, str] | None:
    """The first query, path or header parameter holding a NUL byte, or None."""
    query = scope.get("query_string", b"").decode("utf-8", "replace")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name + value:
            return {"in": "query", "parameter": name if "\x00" not in name else "(name)", "reason": NUL_REASON}
    if "\x00" in scope.get("path", ""):
        bad = [k for k, v in _matching(scope, router)[1].items() if "\x00" in str(v)]
        return {"in": "path", "parameter": bad[0] if bad else "(path)", "reason": NUL_REASON}
    for header, raw in scope.get("headers", []):
        if b"\x00" in raw:
            return {"in": "header", "parameter": header.decode("latin-1"), "reason": NUL_REASON}
    return None


def _matching(scope: Scope, router: Router) -> tuple[Any, dict[str, Any]]:
    """The route the router would pick and its path parameters, for answers given before routing."""
    for route in router.routes:
        match, child = route.matches(scope)
        if match is not Match.NONE:
            return route, dict(child.get("path_params", {}))
    return None, {}


def declared_names(router: Router) -> frozenset[str]:
    """Parameter names the code declares (query, path, header, body fields): safe to log. A name the
    client made up (`?<patient id>=...`) may be anything, so it is logged as `(undeclared)`."""
    names: set[str] = set()
    pending = [route.dependant for route in router.routes if hasattr(route, "dependant")]
    while pending:
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        for param in (*dependant.path_params, *dependant.query_params, *dependant.header_params,
                      *dependant.cookie_params, *dependant.body_params):
            names.update({param.name, param.alias, param.alias.replace("_", "-")})
            names.update(getattr(param.field_info.annotation, "model_fields", {}))
    return frozenset(names)


def _bearer(scope: Scope) -> str | None:
    for name, raw in scope.get("headers", []):
        if name == b"authorization":
            value = raw.decode("latin-1")
            if value.lower().startswith("bearer "):
                return value[7:].strip() or None
    return None


def _frames(error: BaseException) -> list[str]:
    """Where it failed (file, line, function), without the message or locals that may hold patient data."""
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_tb(error.__traceback__)
            ][-FRAMES_LOGGED:]


def _route_of(scope: Scope) -> str:
    """The route template (`/v1/alerts/{alert_id}`), never the concrete path or query."""
    return str(getattr(scope.get("route"), "path", "(no route)"))


class HardenedHTTP:
    """Pure ASGI middleware (inside Starlette's ServerErrorMiddleware, which would re-raise to uvicorn and
    have it print a traceback): refuses NUL parameters, guards the docs, adds the security headers, turns
    an unexpected exception into a generic 500 and logs every error answer as one JSON line."""

    def __init__(self, app: ASGIApp, router: Router, docs_paths: frozenset[str], docs_enabled: bool,
                 authorize: Authorize) -> None:
        self.app, self.router, self.docs_paths = app, router, docs_paths
        self.docs_enabled, self.authorize = docs_enabled, authorize
        self.declared = declared_names(router)  # built at the first request, once every route is there

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started: list[int] = []

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.append(message["status"])
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
                message = {**message, "headers": kept + list(SECURITY_HEADERS)}
            await send(message)

        try:
            await self._answer(scope, receive, secured)
        except Exception as error:  # noqa: BLE001 - the one place an unexpected error becomes a 500
            self._log(scope, 500, error)
            if not started:  # once the response has begun nothing else can be sent
                await problem(500, "internal_error", "unexpected error; it has been logged")(scope, receive, secured)
            return
        if started and started[0] >= 400:
            self._log(scope, started[0])

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = nul_parameter(scope, self.router)
        if refused is not None:
            scope.update({"route": _matching(scope, self.router)[0], REFUSED_KEY: [refused]})
            await invalid([refused])(scope, receive, send)
        elif scope.get("path") in self.docs_paths and not await self._docs_allowed(scope):
            scope["route"] = _matching(scope, self.router)[0]
            status = 401 if self.docs_enabled else 404
            reason = "missing or unknown team token" if self.docs_enabled else "not found"
            await problem(status, "unauthorized" if self.docs_enabled else "not_found", reason)(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _docs_allowed(self, scope: Scope) -> bool:
        token = _bearer(scope)
        return self.docs_enabled and token is not None and await run_in_threadpool(self.authorize, token)

    def _log(self, scope: Scope, status: int, error: BaseException | None = None) -> None:
        """One JSON line per error answer: method, route template, status; an exception's type and frames."""
        path = scope.get("path", "")
        if error is None and path in UNLOGGED_PATHS:
            return
        extra: dict[str, Any] = {"status": status, "method": scope.get("method"), "route": _route_of(scope)}
        if scope.get(REFUSED_KEY):
            extra["refused"] = [{**e, "parameter": e["parameter"] if e["parameter"] in self.declared
                                 else "(undeclared)"} for e in scope[REFUSED_KEY]]
        if error is not None:
            extra.update(error=type(error).__name__, where=_frames(error))
            log.error("unexpected error", extra=extra)
        elif status >= 500:
            log.error("request failed", extra=extra)
        else:
            log.info("request refused", extra=extra)

