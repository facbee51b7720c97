"""Who is looking at a page, and proof that a form was posted from one of our pages.

Pages are for people: the session cookie of `POST /v1/session` or of the login form (bearer tokens are
for services and open no page). A request without a live session is sent to the login page. Every form
carries a CSRF token derived from the session token (HMAC-SHA-256): it changes with each session, needs
no storage, and another site can neither read it (the cookie is HttpOnly and SameSite=Strict) nor guess it.
"""

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Cookie, Depends, Form, Request
from psycopg_pool import ConnectionPool

from alerts.sessions import COOKIE, session_member
from respmon.core.settings import Settings

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class LoginRequired(Exception):
    """No live session: the page answers 303 to the login form (htmx: an HX-Redirect)."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token: 403."""


@dataclass(frozen=True)
class Person:
    """A logged-in member and the CSRF token of their session."""

    member_id: str
    csrf: str


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"respmon-csrf/1", hashlib.sha256).hexdigest()


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def person_dependency(pool: ConnectionPool[Any], settings: Settings) -> Any:
    """The FastAPI dependency of every page: the session's member, or LoginRequired."""
    def person(request: Request, respmon_session: Annotated[str | None, Cookie()] = None) -> Person:
        member_id = None
        if respmon_session:
            with pool.connection() as conn:
                member_id = session_member(conn, respmon_session, settings)
        if member_id is None or respmon_session is None:
            raise LoginRequired(login_url(request))
        return Person(member_id, csrf_token(respmon_session))

    return person


def checked_csrf(person: Person, request: Request, posted: str | None) -> Person:
    """The person, once the form field (or htmx's header) carries their session's CSRF token."""
    given = posted or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), person.csrf.encode()):
        raise CsrfRefused()
    return person


def csrf_dependency(person_dep: Any) -> Any:
    """The dependency of every POST of the pages: the person, with the CSRF token checked."""
    def checked(request: Request, person: Annotated[Person, Depends(person_dep)],
                csrf: Annotated[str | None, Form()] = None) -> Person:
        return checked_csrf(person, request, csrf)

    return checked


__all__ = ["COOKIE", "CSRF_FIELD", "CsrfRefused", "LoginRequired", "Person", "csrf_dependency",
           "csrf_token", "person_dependency"]
