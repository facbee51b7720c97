"""Passwords and sessions for people on the team API (services keep bearer tokens).

A password is stored as argon2id. `POST /v1/session` trades a member id and password for a session cookie
(HttpOnly, SameSite=Strict, Secure behind https) that ends after `RESPMON_SESSION_IDLE_MINUTES` unused and
`RESPMON_SESSION_MAX_HOURS` after login. `RESPMON_LOGIN_MAX_FAILURES` wrong passwords in a row lock the id
for `RESPMON_LOGIN_LOCKOUT_S`, doubled at each new lockout; unknown ids are counted and locked alike, and
checked against a dummy hash, so neither the answers nor their timing tell which ids exist.
"""

import math
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Cookie, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

from respmon.core.httpsecurity import NulFree
from respmon.core.settings import Settings
from respmon.core.tokens import hash_token, new_token

COOKIE = "respmon_session"
MIN_PASSWORD = 12
MAX_LOCKOUT_DOUBLINGS = 10  # 1 min doubled 10 times: about 17 hours
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (t=3, 64 MiB, p=4)
_DUMMY = _HASHER.hash("respmon: no such member")


class PasswordError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise PasswordError(f"a password needs at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def set_password(conn: psycopg.Connection[Any], member_id: str, password: str) -> None:
    conn.execute("UPDATE team_members SET password_argon2 = %s, password_set_at = now() WHERE member_id = %s",
                 (hash_password(password), member_id))


def _verify(stored: str | None, password: str) -> bool:
    """Always runs one argon2 verification, against a dummy hash when there is no password."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Login:
    """The outcome: a session token (ok), or the seconds to wait (locked), or neither (refused)."""

    token: str | None = None
    retry_after_s: int | None = None


def login(conn: psycopg.Connection[Any], member_id: str, password: str, settings: Settings,
          client: str | None) -> Login:
    """Check the password under the id's throttle row lock (parallel guesses queue behind each other)."""
    cur = conn.cursor(row_factory=tuple_row)
    with conn.transaction():
        cur.execute("INSERT INTO login_throttle (member_id) VALUES (%s) ON CONFLICT DO NOTHING", (member_id,))
        failures, lockouts, wait = cur.execute(
            "SELECT failures, lockouts, extract(epoch FROM locked_until - now()) FROM login_throttle"
            " WHERE member_id = %s FOR UPDATE", (member_id,)).fetchone() or (0, 0, None)
        if wait is not None and wait > 0:
            return Login(retry_after_s=math.ceil(wait))
        row = cur.execute("SELECT password_argon2 FROM team_members WHERE member_id = %s AND active",
                          (member_id,)).fetchone()
        if not _verify(row[0] if row else None, password):
            _failed(conn, member_id, failures + 1, lockouts, settings)
            return Login()
        cur.execute("DELETE FROM login_throttle WHERE member_id = %s", (member_id,))
        return Login(token=_open_session(conn, member_id, settings, client))


def _failed(conn: psycopg.Connection[Any], member_id: str, failures: int, lockouts: int, settings: Settings) -> None:
    lock_s = None
    if failures >= settings.login_max_failures:
        lock_s = settings.login_lockout_s * 2 ** min(lockouts, MAX_LOCKOUT_DOUBLINGS)
        failures, lockouts = 0, lockouts + 1
    conn.execute("UPDATE login_throttle SET failures = %s, lockouts = %s, last_failure_at = now(),"
                 " locked_until = CASE WHEN %s::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => %s) END"
                 " WHERE member_id = %s", (failures, lockouts, lock_s, lock_s, member_id))


def _open_session(conn: psycopg.Connection[Any], member_id: str, settings: Settings, client: str | None) -> str:
    token = new_token()
    conn.execute("INSERT INTO team_sessions (session_sha256, member_id, expires_at, client)"
                 " VALUES (%s, %s, now() + make_interval(secs => %s), %s)",
                 (hash_token(token), member_id, settings.session_max_hours * 3600, client))
    return token


def session_member(conn: psycopg.Connection[Any], token: str, settings: Settings) -> str | None:
    """The member of a live session (not ended, not past its absolute end, used within the idle time);
    marks it used now."""
    row = conn.cursor(row_factory=tuple_row).execute(
        "UPDATE team_sessions s SET last_seen_at = now() FROM team_members m"
        " WHERE s.session_sha256 = %s AND s.ended_at IS NULL AND s.expires_at > now()"
        " AND s.last_seen_at > now() - make_interval(secs => %s) AND m.member_id = s.member_id AND m.active"
        " RETURNING s.member_id", (hash_token(token), settings.session_idle_minutes * 60)).fetchone()
    return str(row[0]) if row else None


def logout(conn: psycopg.Connection[Any], token: str) -> None:
    conn.execute("UPDATE team_sessions SET ended_at = now() WHERE session_sha256 = %s AND ended_at IS NULL",
                 (hash_token(token),))


class Credentials(BaseModel):
    member_id: NulFree = Field(min_length=1, max_length=200)
    password: NulFree = Field(min_length=1, max_length=1024)


def session_routes(pool: ConnectionPool[Any], settings: Settings) -> APIRouter:
    """`POST /v1/session` (log in) and `POST /v1/session/logout`."""
    router = APIRouter()

    @router.post("/v1/session")
    async def open_session(body: Credentials, request: Request, response: Response) -> dict[str, Any]:
        client = request.client.host if request.client else None

        def attempt() -> Login:
            with pool.connection() as conn:
                return login(conn, body.member_id, body.password, settings, client)

        outcome = await run_in_threadpool(attempt)
        if outcome.retry_after_s is not None:
            raise HTTPException(429, "too many failed logins; try again later",
                                headers={"Retry-After": str(outcome.retry_after_s)})
        if outcome.token is None:
            raise HTTPException(401, "unknown member or wrong password")
        response.set_cookie(COOKIE, outcome.token, max_age=int(settings.session_max_hours * 3600), path="/",
                            httponly=True, samesite="strict", secure=settings.secure_cookies)
        return {"member_id": body.member_id, "idle_minutes": settings.session_idle_minutes,
                "max_hours": settings.session_max_hours}

    @router.post("/v1/session/logout")
    async def close_session(response: Response,
                            respmon_session: Annotated[str | None, Cookie()] = None) -> dict[str, str]:
        if respmon_session:
            def end() -> None:
                with pool.connection() as conn:
                    logout(conn, respmon_session)

            await run_in_threadpool(end)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=settings.secure_cookies)
        return {"status": "logged out"}

    return router
