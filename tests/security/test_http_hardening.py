"""HTTP hardening of ingest and the team API on the real services (issue 13): a NUL byte in any parameter
is a 422 naming it, an unexpected error a generic JSON 500 logged as a JSON line, the API docs only for
team tokens, security headers on every answer and no `server` header."""

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute

from respmon.core.settings import Settings
from respmon.launcher import service
from tests.conftest import free_port
from tests.security.conftest import SecuredPipeline

pytestmark = pytest.mark.timeout(180)

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store",
                    "referrer-policy": "no-referrer", "x-frame-options": "DENY"}
DOCS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


@pytest.fixture(scope="module")
def team(secured: SecuredPipeline) -> dict[str, str]:
    return {"Authorization": f"Bearer {secured.team_member(f'hdr-nurse-{uuid.uuid4().hex[:6]}')}"}


@pytest.fixture(scope="module")
def device(secured: SecuredPipeline) -> tuple[str, str]:
    patient = f"HDR-{uuid.uuid4().hex[:8]}"
    return patient, secured.device(f"dev-{patient}", patient)


@pytest.fixture(scope="module")
def alert_id(secured: SecuredPipeline) -> int:
    """An open alert of a patient of the `team` member's care team, so that acknowledge and resolve reach
    the database with the note."""
    from alerts.careteams import assign

    patient = f"HDR-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(secured.db_url, autocommit=True) as db:
        assign(db, patient, "respiratory", "tests")
        row = db.execute(
            "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, evidence, action, citation,"
            " finding_at) VALUES (%s, 'hdr-test', '1', 'TEST', 'warn', '{}', 'none', 'none', now()) RETURNING alert_id",
            (patient,)).fetchone()
    assert row is not None
    return int(row[0])


def parameters(create_app: Any, prefix: str = "/v1/") -> Iterator[tuple[APIRoute, str, str, str]]:
    """(route, method, where, name) for every path, query and body parameter of the service's API routes,
    read from the app itself so that a route added later is covered too."""
    app = create_app(Settings(database_url="postgresql://unused@127.0.0.1:1/none"))  # pool never opened
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith(prefix):
            continue
        method = min(route.methods or {"GET"})
        dependant = route.dependant
        for where, params in (("path", dependant.path_params), ("query", dependant.query_params)):
            for param in params:
                yield route, method, where, param.alias
        for body in dependant.body_params:
            for field in body.field_info.annotation.model_fields:  # type: ignore[union-attr]
                yield route, method, "body", field


def request_with_nul(base: str, route: APIRoute, method: str, where: str, name: str, alert: int,
                     headers: dict[str, str]) -> httpx.Response:
    """The route called with valid values everywhere except `name`, which holds a NUL byte."""
    poisoned = "1\x00"
    path = route.path.replace("{alert_id}", quote(poisoned) if name == "alert_id" else str(alert))
    params = {name: poisoned} if where == "query" else {}
    body = {name: poisoned} if where == "body" else ({} if method == "POST" else None)
    return httpx.request(method, base + path, params=params, json=body, headers=headers, timeout=30)


def assert_refused(answer: httpx.Response, where: str, name: str) -> None:
    assert answer.status_code == 422, (where, name, answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/json"), answer.text[:300]
    body = answer.json()
    assert {"in": where, "parameter": name, "reason": "must not contain a NUL byte"} in body["errors"], body
    assert name in body["reason"] and "Traceback" not in answer.text
    assert "\\u0000" not in answer.text and "\x00" not in answer.text  # the input is not echoed


def log_lines(secured: SecuredPipeline, name: str) -> list[str]:
    return [line for line in (secured.log_dir / name).read_text(errors="replace").splitlines() if line.strip()]


def json_lines(secured: SecuredPipeline, name: str) -> list[dict[str, Any]]:
    """Every line of a service log, each of which must be a JSON object (no plain-text traceback)."""
    entries = []
    for line in log_lines(secured, name):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{name}: a line that is not JSON: {line[:200]!r}")
    return entries


def test_nul_in_any_team_api_parameter_is_a_422_naming_it(secured: SecuredPipeline, team: dict[str, str],
                                                          alert_id: int) -> None:
    from alerts.api import create_app

    tried = set()
    for route, method, where, name in parameters(create_app):
        answer = request_with_nul(secured.alerts_url, route, method, where, name, alert_id, team)
        assert_refused(answer, where, name)
        tried.add((route.path, name))
    assert {("/v1/alerts", "patient_id"), ("/v1/alerts", "category"), ("/v1/alerts/{alert_id}", "alert_id"),
            ("/v1/alerts/{alert_id}/acknowledge", "note"), ("/v1/alerts/{alert_id}/resolve", "note")} <= tried
    with psycopg.connect(secured.db_url) as db:  # nothing was changed by the refused calls
        assert db.execute("SELECT status FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone() == ("open",)
    time.sleep(0.5)
    refused = [e for e in json_lines(secured, "alerts.log") if e.get("msg") == "request refused"
               and e.get("status") == 422]
    assert any(e["route"] == "/v1/alerts" and e["refused"][0]["parameter"] == "patient_id" for e in refused)


def test_nul_in_an_ingest_query_parameter_is_a_422_naming_it(secured: SecuredPipeline,
                                                             device: tuple[str, str]) -> None:
    from ingest.app import create_app

    patient, token = device
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    names = []
    for route, method, where, name in parameters(create_app):
        assert where == "query", (route.path, where, name)  # ingest reads its body itself
        answer = httpx.request(method, secured.ingest_url + route.path, params={name: "spiro\x00.json"},
                               content=json.dumps({"patient_id": patient}), headers=headers, timeout=30)
        assert_refused(answer, where, name)
        names.append(name)
    assert set(names) == {"format", "filename", "o2_lpm"}


def raw_request(base: str, request: bytes) -> bytes:
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        raw.sendall(request)
        return raw.recv(4000)


def test_nul_in_a_header_is_refused_and_logged_as_json(secured: SecuredPipeline, device: tuple[str, str],
                                                       team: dict[str, str]) -> None:
    """A raw NUL in a header is refused by the HTTP parser before the app (400); that refusal is logged
    by uvicorn, which must go through the JSON handler, and carries no `server` header."""
    _, token = device
    requests = {
        "ingest": b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1\r\n"
                  b"Authorization: Bearer " + token.encode() + b"\r\nIdempotency-Key: a\x00b\r\n\r\nx",
        "alerts": b"GET /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: " + team["Authorization"].encode()
                  + b"\x00\r\n\r\n",
    }
    for name, request in requests.items():
        answer = raw_request(getattr(secured, f"{name}_url"), request)
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.split(b" ", 2)[1] in (b"400", b"422"), answer
        assert b"\r\nserver:" not in head, answer
    time.sleep(0.5)
    for name in ("ingest.log", "alerts.log"):
        assert any(e.get("logger") == "uvicorn.error" for e in json_lines(secured, name)), name
    assert httpx.get(f"{secured.ingest_url}/healthz").status_code == 200


@pytest.fixture
def team_members_broken(secured: SecuredPipeline) -> Iterator[None]:
    """Make the token lookup fail with an error nobody handles (a column renamed), then repair it."""
    with psycopg.connect(secured.db_url, autocommit=True) as db:
        db.execute("ALTER TABLE team_members RENAME COLUMN active TO active_hidden")
        try:
            yield
        finally:
            db.execute("ALTER TABLE team_members RENAME COLUMN active_hidden TO active")


def test_unexpected_error_is_a_generic_json_500_logged_as_one_json_line(
        secured: SecuredPipeline, team: dict[str, str], team_members_broken: None) -> None:
    patient = f"HDR500-{uuid.uuid4().hex[:6]}"
    answer = httpx.get(f"{secured.alerts_url}/v1/alerts", params={"patient_id": patient}, headers=team, timeout=30)
    assert answer.status_code == 500, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {"error": "internal_error", "reason": "unexpected error; it has been logged"}
    assert all(answer.headers.get(k) == v for k, v in SECURITY_HEADERS.items()), answer.headers
    time.sleep(0.5)
    entries = json_lines(secured, "alerts.log")
    errors = [e for e in entries if e.get("msg") == "unexpected error"]
    assert errors and errors[-1]["level"] == "error" and errors[-1]["route"] == "/v1/alerts"
    assert errors[-1]["error"] == "UndefinedColumn" and errors[-1]["status"] == 500
    assert any("team.py" in frame for frame in errors[-1]["where"]), errors[-1]
    assert not any(patient in line or "active_hidden" in line for line in log_lines(secured, "alerts.log"))


def test_api_docs_answer_only_to_team_tokens(secured: SecuredPipeline, team: dict[str, str],
                                            device: tuple[str, str]) -> None:
    _, device_token = device
    refused: tuple[dict[str, str], ...] = ({}, {"Authorization": f"Bearer {device_token}"},
                                           {"Authorization": "Bearer not-a-token"},
                                           {"Authorization": "Basic dXNlcjpwYXNz"})
    for base in (secured.ingest_url, secured.alerts_url):
        for path in DOCS:
            for headers in refused:
                answer = httpx.get(base + path, headers=headers)
                assert answer.status_code == 401, (base, path, headers, answer.status_code)
                assert answer.headers["WWW-Authenticate"] == "Bearer" and "paths" not in answer.text
            assert httpx.get(base + path, headers=team).status_code == 200, (base, path)
        assert any(p.startswith("/v1/") for p in httpx.get(base + "/openapi.json", headers=team).json()["paths"])


def test_api_docs_are_not_served_at_all_when_turned_off(secured: SecuredPipeline, stack_env: dict[str, str],
                                                        team: dict[str, str], tmp_path: Any) -> None:
    port = free_port()
    env = {**stack_env, "RESPMON_DATABASE_URL": secured.db_url, "RESPMON_ALERTS_API_PORT": str(port),
           "RESPMON_API_DOCS": "false"}
    base = f"http://127.0.0.1:{port}"
    with service(["alerts-api"], env, f"{base}/healthz", tmp_path / "alerts-nodocs.log"):
        for path in DOCS:
            for headers in ({}, team):
                assert httpx.get(base + path, headers=headers).status_code == 404, (path, headers)
        assert httpx.get(f"{base}/v1/alerts", headers=team).status_code == 200


def test_every_answer_carries_the_security_headers_and_no_server_header(
        secured: SecuredPipeline, team: dict[str, str], device: tuple[str, str], alert_id: int) -> None:
    patient, token = device
    upload = json.dumps({"patient_id": patient, "taken_at": "2026-10-05T09:00:00+00:00", "fvc_pct_pred": 88.0,
                         "posture": "sitting", "source": "hdr"})
    answers = {
        "alerts list": httpx.get(f"{secured.alerts_url}/v1/alerts", headers=team),
        "alerts show": httpx.get(f"{secured.alerts_url}/v1/alerts/{alert_id}", headers=team),
        "alerts 401": httpx.get(f"{secured.alerts_url}/v1/alerts"),
        "alerts 404": httpx.get(f"{secured.alerts_url}/v1/nothing-here", headers=team),
        "alerts 405": httpx.delete(f"{secured.alerts_url}/v1/alerts", headers=team),
        "alerts 422": httpx.get(f"{secured.alerts_url}/v1/alerts", params={"limit": "x"}, headers=team),
        "alerts docs": httpx.get(f"{secured.alerts_url}/docs", headers=team),
        "upload 202": secured.upload(token, upload),
        "upload 401": secured.upload(None, upload),
        "upload 415": secured.upload(token, upload, "image/png"),
        **{f"{name} {probe}": httpx.get(f"{url}{probe}") for name, url in
           (("ingest", secured.ingest_url), ("alerts", secured.alerts_url))
           for probe in ("/healthz", "/readyz", "/metrics")},
    }
    assert answers["upload 202"].status_code == 202 and answers["alerts show"].status_code == 200
    for what, answer in answers.items():
        for header, value in SECURITY_HEADERS.items():
            assert answer.headers.get_list(header) == [value], (what, header, answer.headers)
        assert "server" not in answer.headers, (what, answer.headers)
    invalid = answers["alerts 422"].json()
    assert invalid["errors"] == [{"in": "query", "parameter": "limit",
                                  "reason": "Input should be a valid integer, unable to parse string as an integer"}]
    assert "input" not in answers["alerts 422"].text
