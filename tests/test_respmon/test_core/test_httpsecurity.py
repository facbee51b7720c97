"""The parts of respmon/core/httpsecurity.py a real server cannot reach: a raw NUL in a header (uvicorn's
httptools parser refuses it before the app; h11 or another server might not), and the names of
parameters a client made up, which are never logged as they are."""

from alerts.api import create_app
from respmon.core.httpsecurity import declared_names, nul_parameter
from respmon.core.settings import Settings

APP = create_app(Settings(database_url="postgresql://unused@127.0.0.1:1/none"))  # its pool is never opened


def scope(path: str = "/v1/alerts", query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    return {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": headers or []}


def test_a_nul_in_a_header_value_is_named() -> None:
    found = nul_parameter(scope(headers=[(b"accept", b"*/*"), (b"idempotency-key", b"a\x00b")]), APP.router)
    assert found == {"in": "header", "parameter": "idempotency-key", "reason": "must not contain a NUL byte"}


def named(request: dict) -> str | None:
    found = nul_parameter(request, APP.router)
    return found["parameter"] if found else None


def test_query_path_and_clean_requests() -> None:
    assert named(scope(query=b"status=open&category=a%00b")) == "category"
    assert named(scope(query=b"x%00y=1")) == "(name)"
    assert named(scope("/v1/alerts/7\x00/resolve")) == "alert_id"
    assert nul_parameter(scope(query=b"status=open&patient_id=ALS-001"), APP.router) is None


def test_only_declared_names_are_loggable() -> None:
    names = declared_names(APP.router)
    assert {"status", "patient_id", "alert_id", "note", "authorization"} <= names
    assert "ALS-001" not in names and "x-thing" not in names
