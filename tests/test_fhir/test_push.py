"""The FHIR push on a real PostgreSQL: every alert change (opened by the rules, worsened, acknowledged and resolved
by the team) goes through the outbox to a FHIR server on loopback as one transaction Bundle of the DetectedIssue
and the Observations it cites; a server answering 503 gets it once after the retry; a replayed finding queues
nothing and a delivery sent twice leaves the server's resources as once; the Bundles pass the HAPI validator."""

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from pydantic import SecretStr

from alerts.api import create_app
from alerts.careteams import assign
from alerts.dispatcher import Dispatcher
from alerts.lifecycle import apply_finding
from alerts.team import provision
from respmon.core.settings import Settings
from respmon.fhir.push import FhirPush
from schemas import Finding
from tests.conftest import namespace
from tests.test_fhir.conftest import validate

TOKEN = "fhir-server-token"


@dataclass
class FhirServer:
    """A FHIR server's transaction endpoint on loopback: records every POST, answers the queued statuses first
    (then 200), and applies each accepted transaction to its store (PUT by id, conditional create of Patient)."""

    answers: list[int] = field(default_factory=list)
    posts: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    store: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        server, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with lock:
                    status = server.answers.pop(0) if server.answers else 200
                    server.posts.append((status, dict(self.headers), body))
                    if status == 200:
                        server.apply(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(b'{"resourceType": "Bundle", "type": "transaction-response"}')

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def apply(self, bundle: dict[str, Any]) -> None:
        for entry in bundle["entry"]:
            request, resource = entry["request"], entry["resource"]
            if request["method"] == "PUT":
                self.store[request["url"]] = resource
            elif not any(r["resourceType"] == "Patient" and r["identifier"] == resource["identifier"]
                         for r in self.store.values()):  # POST with ifNoneExist on the identifier
                self.store[f"Patient/{len(self.store)}"] = resource

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return [r for r in self.store.values() if r["resourceType"] == rtype]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/fhir"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fhir_server() -> Iterator[FhirServer]:
    with FhirServer() as server:
        yield server


@pytest.fixture
def world(stack: None, tmp_path: Path, fhir_server: FhirServer) -> Iterator[tuple[Settings, str, str]]:
    """A database of this test's own with one patient's spirometry, the patient's team and a nurse's token;
    settings pushing to the loopback FHIR server (no webhook)."""
    with namespace(tmp_path) as env:
        url = env["RESPMON_DATABASE_URL"]
        patient = f"P-{uuid.uuid4().hex[:8]}"
        with psycopg.connect(url, autocommit=True) as conn:
            for days, pct in ((30, 58.0), (2, 47.0)):
                conn.execute("INSERT INTO spirometry_sessions (patient_id, taken_at, source, posture, fvc_l,"
                             " fvc_pct_pred) VALUES (%s, %s, 'clinic', 'sitting', 1.9, %s)",
                             (patient, datetime.now(UTC).replace(microsecond=0) - timedelta(days=days), pct))
            assign(conn, patient, "north", "tests")
            token = provision(conn, "nurse-north", "north", "clinician")
        settings = Settings(database_url=url, fhir_server_url=fhir_server.url, fhir_server_token=SecretStr(TOKEN),
                            delivery_backoff_base_s=0.2, delivery_backoff_max_s=1)
        yield settings, patient, token


def finding(db_url: str, patient: str, severity: str, at: datetime) -> Finding:
    """NS-FVC50 as the rules engine writes it: its input names the latest FVC % predicted by its date."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT max(taken_at) FROM spirometry_sessions WHERE patient_id = %s", (patient,)).fetchone()
    assert row is not None
    evidence = {"change": "opened", "inputs": {"latest(spiro.fvc_pct_pred)": {"date": row[0].isoformat(),
                                                                              "value": 47.0}}}
    return Finding.model_validate({"patient_id": patient, "rule_id": "NS-FVC50", "rule_version": "t",
                                   "category": "NIV_START", "severity": severity, "at": at, "evidence": evidence,
                                   "action": "Discuss NIV.", "citation": "NICE NG42"})


def apply(settings: Settings, f: Finding) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
            await apply_finding(conn, f, settings)

    asyncio.run(run())


def dispatch(settings: Settings, rounds: int = 1) -> int:
    """Dispatch rounds with the FHIR sender, waiting out the backoff between them."""
    dispatcher = Dispatcher(settings, senders={"fhir": FhirPush(settings)})

    async def run() -> int:
        delivered = 0
        async with httpx.AsyncClient() as client, await psycopg.AsyncConnection.connect(
                settings.database_url, autocommit=True) as conn:
            for i in range(rounds):
                if i:
                    await asyncio.sleep(settings.delivery_backoff_base_s * 2)
                delivered += await dispatcher.dispatch_due(conn, client)
        return delivered

    return asyncio.run(run())


def fhir_deliveries(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT payload->>'change', status, attempts, last_error FROM deliveries"
                            " WHERE channel = 'fhir' ORDER BY created_at").fetchall()


def issue(server: FhirServer) -> dict[str, Any]:
    issues = server.of_type("DetectedIssue")
    assert len(issues) == 1, issues
    return issues[0]


def test_every_alert_change_reaches_the_fhir_server_once_as_a_valid_transaction(
        world: tuple[Settings, str, str], fhir_server: FhirServer, validator: Path, tmp_path: Path) -> None:
    settings, patient, token = world
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    # opened by the rules; the server is down at first
    fhir_server.answers = [503]
    apply(settings, finding(settings.database_url, patient, "warn", at))
    assert dispatch(settings, rounds=1) == 0
    assert fhir_deliveries(settings.database_url) == [("opened", "pending", 1, "HTTP 503")]
    assert dispatch(settings, rounds=2) == 1
    assert [status for status, _, _ in fhir_server.posts] == [503, 200]
    assert fhir_deliveries(settings.database_url) == [("opened", "delivered", 2, None)]
    _, headers, first = fhir_server.posts[1]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/fhir+json"
    assert first["resourceType"] == "Bundle" and first["type"] == "transaction"
    assert [(e["request"]["method"], e["request"]["url"].split("/")[0]) for e in first["entry"]] == [
        ("POST", "Patient"), ("PUT", "Observation"), ("PUT", "DetectedIssue")]
    opened = issue(fhir_server)
    assert (opened["status"], opened["severity"]) == ("preliminary", "moderate")
    assert [p["identifier"] for p in fhir_server.of_type("Patient")] == [
        [{"system": "urn:respmon:patient", "value": patient}]]
    # the DetectedIssue cites the latest FVC % predicted, and the server holds it
    cited = [d["reference"] for item in opened["evidence"] for d in item.get("detail", [])]
    assert len(cited) == 1 and cited[0] in fhir_server.store
    assert fhir_server.store[cited[0]]["valueQuantity"]["value"] == 47
    placeholder = first["entry"][0]["fullUrl"]
    assert opened["patient"]["reference"] == fhir_server.store[cited[0]]["subject"]["reference"] == placeholder

    # the same finding replayed queues nothing; a worse one is a severity change
    apply(settings, finding(settings.database_url, patient, "warn", at))
    assert len(fhir_deliveries(settings.database_url)) == 1
    apply(settings, finding(settings.database_url, patient, "urgent", at + timedelta(minutes=5)))
    assert dispatch(settings) == 1
    assert issue(fhir_server)["severity"] == "high"

    # acknowledged, then resolved, by the team
    with psycopg.connect(settings.database_url) as conn:
        (alert_id,) = conn.execute("SELECT alert_id FROM alerts WHERE patient_id = %s", (patient,)).fetchone()  # type: ignore[misc]
    with TestClient(create_app(settings)) as team:
        for action in ("acknowledge", "resolve"):
            answer = team.post(f"/v1/alerts/{alert_id}/{action}", json={"note": "seen"},
                               headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            assert dispatch(settings) == 1
            pushed = issue(fhir_server)
            assert pushed["status"] == "final"
            assert len(pushed["mitigation"]) == (1 if action == "acknowledge" else 2)
    assert [(change, status) for change, status, _, _ in fhir_deliveries(settings.database_url)] == [
        ("opened", "delivered"), ("worsened", "delivered"), ("acknowledged", "delivered"), ("resolved", "delivered")]
    assert "resolved: team" in pushed["mitigation"][1]["action"]["text"]
    assert pushed["id"] == f"respmon-alert-{alert_id}"

    # a delivery sent again (a crash between the send and its recording) leaves the server as it was
    before = json.dumps(fhir_server.store, sort_keys=True)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE deliveries SET status = 'pending', next_attempt_at = now()"
                     " WHERE channel = 'fhir' AND payload->>'change' = 'opened'")
    assert dispatch(settings) == 1
    assert len(fhir_server.posts) == 6
    assert json.dumps(fhir_server.store, sort_keys=True) == before
    assert len(fhir_server.of_type("Patient")) == 1 and len(fhir_server.of_type("Observation")) == 1

    # every Bundle the server accepted is valid FHIR R4
    for i, (_, _, body) in enumerate(p for p in fhir_server.posts if p[0] == 200):
        (tmp_path / f"bundle-{i}.json").write_text(json.dumps(body))
    reports = validate(validator, tmp_path)
    assert len(reports) == 5 and {r["resourceType"] for r in reports} == {"Bundle"}
    errors = [(Path(r["file"]).name, i["location"], i["message"]) for r in reports for i in r["issues"]
              if i["severity"] in ("error", "fatal")]
    assert errors == []


def test_a_fhir_delivery_waits_for_a_process_that_can_send_it(world: tuple[Settings, str, str],
                                                               fhir_server: FhirServer) -> None:
    """A dispatcher without the FHIR sender (a process that did not install it) keeps the delivery pending."""
    settings, patient, _ = world
    apply(settings, finding(settings.database_url, patient, "warn", datetime.now(UTC) - timedelta(hours=1)))

    async def without_sender() -> int:
        async with httpx.AsyncClient() as client, await psycopg.AsyncConnection.connect(
                settings.database_url, autocommit=True) as conn:
            return await Dispatcher(settings, senders={}).dispatch_due(conn, client)

    assert asyncio.run(without_sender()) == 0
    assert fhir_deliveries(settings.database_url) == [
        ("opened", "pending", 1, "no sender for channel fhir in this process")]
    assert fhir_server.posts == []
    assert dispatch(settings, rounds=2) == 1
    assert fhir_deliveries(settings.database_url)[0][1] == "delivered"


def test_the_web_views_acknowledgement_is_pushed(world: tuple[Settings, str, str], fhir_server: FhirServer) -> None:
    """The inbox's actions (respmon/web) queue the change like the team API's."""
    from alerts.access import Look
    from respmon.queries.inbox import act

    settings, patient, _ = world
    apply(settings, finding(settings.database_url, patient, "warn", datetime.now(UTC) - timedelta(hours=1)))
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:  # as the web's pool
        alert_id = conn.execute("SELECT alert_id FROM alerts WHERE patient_id = %s", (patient,)).fetchone()["alert_id"]  # type: ignore[index]
        act(conn, alert_id, "nurse-north", "acknowledge", Look("nurse-north", "acknowledge", "POST /x", None),
            settings=settings)
        act(conn, alert_id, "nurse-north", "note", Look("nurse-north", "note", "POST /x", None), note="called",
            settings=settings)
    assert [c for c, _, _, _ in fhir_deliveries(settings.database_url)] == ["opened", "acknowledged"]
    assert dispatch(settings) == 2
    assert issue(fhir_server)["status"] == "final"


def test_info_alerts_are_not_pushed(world: tuple[Settings, str, str], fhir_server: FhirServer) -> None:
    """The default FHIR route takes alerts from `warn` up, like the webhook."""
    settings, patient, _ = world
    apply(settings, finding(settings.database_url, patient, "info", datetime.now(UTC) - timedelta(hours=1)))
    assert fhir_deliveries(settings.database_url) == []


def test_the_fhir_route_takes_changes_not_notifications() -> None:
    """`RESPMON_FHIR_SERVER_URL` adds a `fhir` route beside the webhook; it never gets notifications or
    escalations (those carry the webhook's message), and `install` registers its sender with the dispatcher."""
    from alerts.dispatcher import SENDERS
    from alerts.routing import routing_for
    from respmon.fhir.push import install

    settings = Settings(webhook_url="http://127.0.0.1:9/hook", fhir_server_url="http://127.0.0.1:9/fhir/")
    routing = routing_for(settings)
    assert [r.channel for r in routing.notify_routes("NIV_START", "urgent")] == ["webhook"]
    assert [(r.channel, r.target) for r in routing.fhir_routes()] == [("fhir", "http://127.0.0.1:9/fhir")]
    assert routing_for(Settings(webhook_url="http://127.0.0.1:9/hook")).fhir_routes() == []
    saved = dict(SENDERS)
    try:
        push = install(settings)
        assert SENDERS.get("fhir") is push
    finally:
        SENDERS.clear()
        SENDERS.update(saved)
