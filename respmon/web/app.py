"""The team service: the JSON team API (`alerts.api`) and the web view's pages in one process.

`respmon alerts-api` serves `create_app()`: `/v1/...` for services and scripts, the pages (`/`,
`/patients/...`, `/login`) for people, `/static/...` for the page assets (htmx, uPlot and their licences,
copied from the npm registry by `make install`). Pages send a Content-Security-Policy that allows no
inline script and no other origin.
"""

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.api import create_app as create_team_api
from alerts.sessions import COOKIE, login, logout
from respmon.core.settings import Settings, get_settings
from respmon.fhir.api import fhir_routes
from respmon.web.auth import CsrfRefused, LoginRequired, Person, csrf_dependency, person_dependency
from respmon.web.context import Web
from respmon.web.inbox import inbox_routes
from respmon.web.night import night_routes
from respmon.web.patient import patient_routes
from respmon.web.render import STATIC, is_htmx, page
from respmon.web.report import report_routes

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
       " font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class ContentSecurityPolicy:
    """Adds the CSP header to every answer (JSON included: it costs nothing and covers error pages)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", CSP.encode())]
            await send(message)

        await self.app(scope, receive, with_csp if scope["type"] == "http" else send)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path of this site only (never `//host` or `https://...`)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def session_pages(app: FastAPI, web: Web) -> None:
    """`GET/POST /login`, `POST /logout`: the same sessions as `POST /v1/session`."""
    settings = web.settings

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
        return page(request, "login.html", None, "Log in", next_url=safe_next(next), error=None, member_id="")

    @app.post("/login", response_model=None)
    async def login_submit(request: Request, member_id: Annotated[str, Form(max_length=200)],
                           password: Annotated[str, Form(max_length=1024)],
                           next: Annotated[str | None, Form()] = None) -> Response:
        client = request.client.host if request.client else None

        def attempt() -> Any:
            with web.pool.connection() as conn:
                return login(conn, member_id.replace("\x00", ""), password, settings, client)

        outcome = await run_in_threadpool(attempt)
        if outcome.token is None:
            error = ("Too many failed logins; try again later." if outcome.retry_after_s is not None
                     else "Unknown member or wrong password.")
            status = 429 if outcome.retry_after_s is not None else 401
            return page(request, "login.html", None, "Log in", status=status, next_url=safe_next(next),
                        error=error, member_id=member_id)
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(COOKIE, outcome.token, max_age=int(settings.session_max_hours * 3600), path="/",
                            httponly=True, samesite="strict", secure=settings.secure_cookies)
        return response

    @app.post("/logout")
    async def logout_submit(request: Request, who: Annotated[Person, Depends(web.posted)]) -> RedirectResponse:
        token = request.cookies.get(COOKIE, "")

        def end() -> None:
            with web.pool.connection() as conn:
                logout(conn, token)

        await run_in_threadpool(end)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=settings.secure_cookies)
        return response


def handle_errors(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        if is_htmx(request):  # htmx follows no 303 into a fragment: it navigates the whole page
            return Response(status_code=204, headers={"HX-Redirect": exc.next_url})
        return RedirectResponse(exc.next_url, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def page_error(request: Request, exc: StarletteHTTPException) -> Response:
        """A page's 403/404 is a page; the JSON API's stays JSON."""
        if request.url.path.startswith(("/v1/", "/static/")) or "text/html" not in request.headers.get("accept", ""):
            return await http_exception_handler(request, exc)
        return page(request, "error.html", None, "Not available", status=exc.status_code, message=str(exc.detail))

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return page(request, "error.html", None, "Refused", status=403,
                    message="This form has expired or did not come from respmon: reload the page and try again.")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = create_team_api(settings)
    pool = app.state.pool
    person = person_dependency(pool, settings)
    web = Web(pool, settings, person, csrf_dependency(person))
    app.state.web = web
    app.include_router(fhir_routes(pool, settings, app.state.member))  # /fhir/r4/... (read-only FHIR R4)
    handle_errors(app)
    session_pages(app, web)
    for routes in page_routers():
        app.include_router(routes(web))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(ContentSecurityPolicy)
    return app


def page_routers() -> list[Any]:
    """The page routers, each a function of `Web` returning an APIRouter (one module per page)."""
    return [inbox_routes, patient_routes, night_routes, report_routes]
