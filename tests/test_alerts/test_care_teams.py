"""Care teams and access (issue 14) on a real PostgreSQL, the team API run in-process: two teams with two
patients each and members of every role. A member sees exactly their teams' patients in every route, the
other team's answer 404, a viewer cannot act (403), an admin alone sees no evidence; revoked, expired and
device tokens are refused; sessions end; logins lock out and release; every look is in `access_log`;
alerts go to the routes of their patient's teams. A hypothesis property checks the scoping on random
assignments and requests."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from alerts.api import create_app
from alerts.careteams import assign, set_route, unassign
from alerts.lifecycle import apply_findings
from alerts.routing import Route
from alerts.sessions import COOKIE, set_password
from alerts.team import add_member, issue_token, provision, revoke_tokens, rotate_token
from ingest.devices import provision as provision_device
from respmon.core.db import available_migrations, migrate
from respmon.core.settings import Settings
from respmon.core.tokens import active_holder, hash_token
from schemas import Finding
from tests.conftest import ADMIN_URL, namespace

PASSWORD = "correct horse battery staple"
ACTIONS = ("acknowledge", "resolve", "notes")


@pytest.fixture(scope="module")
def db_url(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with namespace(tmp_path_factory.mktemp("careteams")) as env:
        yield env["RESPMON_DATABASE_URL"]


@pytest.fixture(scope="module")
def settings(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    routing = tmp_path_factory.mktemp("routing") / "routing.yaml"
    routing.write_text("routes: [{name: site, channel: webhook, target: 'http://127.0.0.1:9/site'}]\n")
    return Settings(database_url=db_url, routing_file=routing, login_lockout_s=1.0)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def new_alert(db: psycopg.Connection, patient: str, category: str = "NIV_START") -> int:
    """An open alert whose evidence names its patient (so a leak of evidence shows as the id)."""
    row = db.execute(
        "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, evidence, action, citation,"
        " finding_at, rules) VALUES (%s, 'NS-FVC50', 't', %s, 'high', %s, 'act', 'cite', now(), %s) RETURNING alert_id",
        (patient, category, Jsonb({"NS-FVC50": {"patient": patient, "fvc_pct_pred": 42.0}}),
         Jsonb({"NS-FVC50": {"severity": "high"}}))).fetchone()
    assert row is not None
    return int(row[0])


@dataclass
class World:
    """Teams north and south, two patients each with an alert, and a token per member."""

    teams: dict[str, list[str]]
    alerts: dict[str, int]  # patient -> alert id
    tokens: dict[str, str] = field(default_factory=dict)
    sees: dict[str, set[str]] = field(default_factory=dict)  # member -> the patients they may read

    def auth(self, member: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[member]}"}


@pytest.fixture(scope="module")
def world(db_url: str) -> World:
    run = uuid.uuid4().hex[:6]
    north, south = f"north-{run}", f"south-{run}"
    teams = {north: [f"N1-{run}", f"N2-{run}"], south: [f"S1-{run}", f"S2-{run}"]}
    roles = {  # member -> [(team, role)]
        "north-clinician": [(north, "clinician")], "north-viewer": [(north, "viewer")],
        "north-admin": [(north, "admin")], "north-admin-clinician": [(north, "admin"), (north, "clinician")],
        "south-clinician": [(south, "clinician")], "mixed": [(north, "viewer"), (south, "clinician")],
    }
    with psycopg.connect(db_url, autocommit=True) as db:
        alerts = {p: new_alert(db, p) for patients in teams.values() for p in patients}
        for team, patients in teams.items():
            for patient in patients:
                assign(db, patient, team, "tests")
        made = World(teams, alerts)
        for name, grants in roles.items():
            member = f"{name}-{run}"
            for team, role in grants:
                add_member(db, member, team, role, "tests")  # type: ignore[arg-type]
            made.tokens[name] = issue_token(db, member)
            made.sees[name] = {p for team, role in grants if role != "admin" for p in teams[team]}
    return made


def listed_patients(client: TestClient, headers: dict[str, str], **params: str) -> set[str]:
    answer = client.get("/v1/alerts", params={"status": "active", **params}, headers=headers)
    assert answer.status_code == 200, answer.text
    return {a["patient_id"] for a in answer.json()["alerts"]}


# ------------------------------------------------------------------------------------------ scoping

@pytest.mark.parametrize("member", ["north-clinician", "north-viewer", "north-admin", "north-admin-clinician",
                                    "south-clinician", "mixed"])
def test_a_member_sees_exactly_their_teams_patients_in_every_route(client: TestClient, world: World,
                                                                  member: str) -> None:
    headers = world.auth(member)
    assert listed_patients(client, headers) == world.sees[member]
    for patient, alert_id in world.alerts.items():
        shown = client.get(f"/v1/alerts/{alert_id}", headers=headers)
        assert shown.status_code == (200 if patient in world.sees[member] else 404), (patient, shown.text)
        assert listed_patients(client, headers, patient_id=patient) == ({patient} & world.sees[member])
        if patient not in world.sees[member]:
            assert patient not in shown.text
            for action in ACTIONS:
                answer = client.post(f"/v1/alerts/{alert_id}/{action}", json={"note": "x"}, headers=headers)
                assert answer.status_code == 404 and patient not in answer.text, (action, answer.text)


def test_another_teams_alert_answers_like_one_that_does_not_exist(client: TestClient, world: World) -> None:
    headers = world.auth("south-clinician")
    north_alert = world.alerts[world.teams[next(iter(world.teams))][0]]
    missing = 2_000_000_000
    for path in ("", "/acknowledge", "/resolve", "/notes"):
        method = client.get if not path else client.post
        theirs = method(f"/v1/alerts/{north_alert}{path}", headers=headers, **({"json": {"note": "x"}} if path else {}))
        nothing = method(f"/v1/alerts/{missing}{path}", headers=headers, **({"json": {"note": "x"}} if path else {}))
        assert theirs.status_code == nothing.status_code == 404, path
        assert theirs.json()["detail"].replace(str(north_alert), "N") == nothing.json()["detail"].replace(
            str(missing), "N")


def test_a_viewer_cannot_acknowledge_resolve_or_annotate(client: TestClient, world: World,
                                                         db: psycopg.Connection) -> None:
    patient = world.teams[next(iter(world.teams))][1]
    for action in ACTIONS:
        answer = client.post(f"/v1/alerts/{world.alerts[patient]}/{action}", json={"note": "x"},
                             headers=world.auth("north-viewer"))
        assert answer.status_code == 403, (action, answer.text)
    assert db.execute("SELECT status FROM alerts WHERE alert_id = %s", (world.alerts[patient],)).fetchone() == ("open",)


def test_the_role_in_one_of_the_patients_teams_decides(client: TestClient, world: World,
                                                       db: psycopg.Connection) -> None:
    north, south = world.teams
    north_alert = new_alert(db, world.teams[north][0], "DATA_QUALITY")
    south_alert = new_alert(db, world.teams[south][0], "DATA_QUALITY")
    mixed = world.auth("mixed")  # viewer in north, clinician in south
    assert client.post(f"/v1/alerts/{north_alert}/acknowledge", json={}, headers=mixed).status_code == 403
    assert client.post(f"/v1/alerts/{south_alert}/acknowledge", json={}, headers=mixed).status_code == 200
    db.execute("UPDATE alerts SET status = 'resolved' WHERE alert_id IN (%s, %s)", (north_alert, south_alert))


def test_a_clinician_acknowledges_annotates_and_resolves(client: TestClient, world: World) -> None:
    south = world.teams[list(world.teams)[1]]
    alert_id = world.alerts[south[1]]
    headers = world.auth("south-clinician")
    assert client.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "called"}, headers=headers).json() == {
        "alert_id": alert_id, "status": "acknowledged"}
    noted = client.post(f"/v1/alerts/{alert_id}/notes", json={"note": "NIV trial booked"}, headers=headers)
    assert noted.status_code == 201 and noted.json()["alert_id"] == alert_id
    assert client.post(f"/v1/alerts/{alert_id}/notes", json={"note": ""}, headers=headers).status_code == 422
    assert client.post(f"/v1/alerts/{alert_id}/resolve", json={}, headers=headers).status_code == 200
    assert client.post(f"/v1/alerts/{alert_id}/acknowledge", json={}, headers=headers).status_code == 409
    history = client.get(f"/v1/alerts/{alert_id}", headers=headers).json()["history"]
    assert [(h["action"], h["note"]) for h in history] == [("acknowledged", "called"), ("note", "NIV trial booked"),
                                                          ("resolved", "")]


def test_an_admin_without_a_clinical_role_sees_no_evidence(client: TestClient, world: World) -> None:
    headers = world.auth("north-admin")
    answer = client.get("/v1/alerts", params={"status": "active"}, headers=headers)
    assert answer.json()["alerts"] == [] and "fvc_pct_pred" not in answer.text
    for patient, alert_id in world.alerts.items():
        shown = client.get(f"/v1/alerts/{alert_id}", headers=headers)
        assert shown.status_code == 404 and patient not in shown.text
    me = client.get("/v1/me", headers=headers).json()
    assert [m["role"] for m in me["memberships"]] == ["admin"]
    assert listed_patients(client, world.auth("north-admin-clinician")) == world.sees["north-admin-clinician"]


def test_the_end_of_a_teams_care_applies_at_once(client: TestClient, world: World, db: psycopg.Connection) -> None:
    run = uuid.uuid4().hex[:6]
    patient, team = f"MOVE-{run}", f"ward-{run}"
    alert_id = new_alert(db, patient)
    token = provision(db, f"ward-nurse-{run}", team)
    assign(db, patient, team, "tests")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/v1/alerts/{alert_id}", headers=headers).status_code == 200
    assert unassign(db, patient, team, "tests")
    assert client.get(f"/v1/alerts/{alert_id}", headers=headers).status_code == 404
    assert db.execute("SELECT assigned_by, ended_by FROM patient_teams WHERE patient_id = %s",
                      (patient,)).fetchall() == [("tests", "tests")]


# ------------------------------------------------------------------------------------------ credentials

def test_revoked_expired_and_device_tokens_are_refused(client: TestClient, world: World,
                                                       db: psycopg.Connection) -> None:
    run = uuid.uuid4().hex[:6]
    team = next(iter(world.teams))
    revoked = provision(db, f"gone-{run}", team)
    assert client.get("/v1/alerts", headers={"Authorization": f"Bearer {revoked}"}).status_code == 200
    assert revoke_tokens(db, f"gone-{run}") == (1, 0)
    expired = provision(db, f"late-{run}", team, expires=datetime.now(UTC) - timedelta(seconds=1))
    device = provision_device(db, f"dev-{run}", world.teams[team][0])
    for token in (revoked, expired, device, "not-a-token", ""):
        answer = client.get("/v1/alerts", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer", token
    assert client.get("/v1/alerts", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_a_rotated_token_overlaps_then_ends_and_uses_are_stamped(client: TestClient, world: World,
                                                                 db: psycopg.Connection) -> None:
    member = f"svc-{uuid.uuid4().hex[:6]}"
    old = provision(db, member, next(iter(world.teams)))
    assert db.execute("SELECT last_used_at FROM team_tokens WHERE member_id = %s", (member,)).fetchone() == (None,)
    new = rotate_token(db, member, overlap_hours=1)
    for token in (old, new):
        assert client.get("/v1/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    used = db.execute("SELECT count(*) FROM team_tokens WHERE member_id = %s"
                      " AND last_used_at > now() - interval '1 min'", (member,)).fetchone()
    assert used == (2,)
    newest = rotate_token(db, member, overlap_hours=0)
    assert client.get("/v1/alerts", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/v1/alerts", headers={"Authorization": f"Bearer {new}"}).status_code == 401
    assert client.get("/v1/alerts", headers={"Authorization": f"Bearer {newest}"}).status_code == 200


def login(client: TestClient, member: str, password: str) -> Any:
    return client.post("/v1/session", json={"member_id": member, "password": password})


@pytest.fixture
def person(world: World, db: psycopg.Connection) -> str:
    """A clinician of north with a password and no token."""
    member = f"dr-{uuid.uuid4().hex[:6]}"
    add_member(db, member, next(iter(world.teams)), "clinician", "tests")
    set_password(db, member, PASSWORD)
    return member


def test_a_password_opens_a_session_cookie_that_logout_ends(settings: Settings, world: World, person: str,
                                                            db: psycopg.Connection) -> None:
    with TestClient(create_app(settings)) as browser:
        answer = login(browser, person, PASSWORD)
        assert answer.status_code == 200, answer.text
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie and "Max-Age=43200" in cookie  # http here; 12 h
        assert listed_patients(browser, {}) == world.sees["north-clinician"]
        assert browser.get("/v1/me").json()["via"] == "session"
        assert browser.post("/v1/session/logout").status_code == 200
        assert browser.get("/v1/alerts").status_code == 401
    stored = db.execute("SELECT password_argon2 FROM team_members WHERE member_id = %s", (person,)).fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$") and PASSWORD not in stored[0]


def test_the_session_cookie_is_secure_behind_https(settings: Settings, person: str) -> None:
    with TestClient(create_app(settings.model_copy(update={"public_base_url": "https://resp.example"}))) as browser:
        assert "Secure" in login(browser, person, PASSWORD).headers["set-cookie"]


def test_sessions_end_after_inactivity_and_absolutely(settings: Settings, person: str,
                                                      db: psycopg.Connection) -> None:
    for column, age in (("last_seen_at", "31 minutes"), ("expires_at", "-1 second")):
        with TestClient(create_app(settings)) as browser:
            assert login(browser, person, PASSWORD).status_code == 200
            assert browser.get("/v1/alerts").status_code == 200
            shift = "now() - %s::interval" if column == "last_seen_at" else "now() + %s::interval"
            db.execute(f"UPDATE team_sessions SET {column} = {shift} WHERE member_id = %s AND ended_at IS NULL",
                       (age, person))
            assert browser.get("/v1/alerts").status_code == 401, column
    recent = db.execute("SELECT count(*) FROM team_sessions WHERE member_id = %s AND"
                        " last_seen_at > now() - interval '29 minutes' AND expires_at > now()", (person,)).fetchone()
    assert recent == (0,)


def test_a_bearer_that_fails_is_not_passed_over_for_the_cookie(settings: Settings, person: str) -> None:
    with TestClient(create_app(settings)) as browser:
        assert login(browser, person, PASSWORD).status_code == 200
        assert browser.get("/v1/alerts", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_failed_logins_lock_out_with_doubling_and_release(settings: Settings, person: str) -> None:
    with TestClient(create_app(settings)) as client:
        for _ in range(5):
            assert login(client, person, "wrong password!").status_code == 401
        locked = login(client, person, PASSWORD)  # right, but locked: not even checked
        assert locked.status_code == 429 and locked.headers["Retry-After"] == "1"
        time.sleep(1.2)
        for _ in range(5):
            assert login(client, person, "wrong password!").status_code == 401
        again = login(client, person, PASSWORD)
        assert again.status_code == 429 and again.headers["Retry-After"] == "2"  # doubled
        time.sleep(2.2)
        assert login(client, person, PASSWORD).status_code == 200  # released; the count starts over
        assert login(client, person, "wrong password!").status_code == 401
        assert login(client, person, PASSWORD).status_code == 200


def test_unknown_ids_lock_out_like_real_ones(client: TestClient) -> None:
    nobody = f"nobody-{uuid.uuid4().hex[:6]}"
    answers = [login(client, nobody, "whatever it is!") for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    assert answers[0].json() == login(client, f"other-{nobody}", "x").json()


# ------------------------------------------------------------------------------------------ access log

def test_every_look_is_in_the_access_log_with_member_patient_route_and_client(
        client: TestClient, world: World, db: psycopg.Connection) -> None:
    member = db.execute("SELECT member_id FROM team_tokens WHERE member_id LIKE 'north-clinician-%%'").fetchone()
    assert member is not None
    north = world.teams[next(iter(world.teams))]
    before = db.execute("SELECT coalesce(max(id), 0) FROM access_log").fetchone()[0]  # type: ignore[index]
    headers = world.auth("north-clinician")
    client.get("/v1/alerts", params={"status": "active"}, headers=headers)
    client.get(f"/v1/alerts/{world.alerts[north[0]]}", headers=headers)
    client.post(f"/v1/alerts/{world.alerts[north[0]]}/notes", json={"note": "seen"}, headers=headers)
    client.get(f"/v1/alerts/{world.alerts[world.teams[list(world.teams)[1]][0]]}", headers=headers)  # 404
    rows = db.execute("SELECT member_id, patient_id, action, route, alert_id, client FROM access_log WHERE id > %s"
                      " ORDER BY id", (before,)).fetchall()
    listed = {(m, p, a, r) for m, p, a, r, _, _ in rows if a == "list"}
    assert listed == {(member[0], p, "list", "GET /v1/alerts") for p in north}
    assert [r for r in rows if r[2] != "list"] == [
        (member[0], north[0], "show", "GET /v1/alerts/{alert_id}", world.alerts[north[0]], "testclient"),
        (member[0], north[0], "note", "POST /v1/alerts/{alert_id}/notes", world.alerts[north[0]], "testclient")]


def test_the_access_log_is_append_only(db: psycopg.Connection) -> None:
    db.execute("INSERT INTO access_log (member_id, patient_id, action, route) VALUES ('m', 'p', 'test', 'none')")
    for statement in ("UPDATE access_log SET member_id = 'x'", "DELETE FROM access_log", "TRUNCATE access_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.execute(statement)


# ------------------------------------------------------------------------------------------ routing

def test_alerts_go_to_the_routes_of_their_patients_teams(settings: Settings, db: psycopg.Connection) -> None:
    run = uuid.uuid4().hex[:6]
    teams = {f"east-{run}": f"E-{run}", f"west-{run}": f"W-{run}"}
    for team, patient in teams.items():
        assign(db, patient, team, "tests")
        set_route(db, Route(name="hook", channel="webhook", target=f"http://127.0.0.1:9/{team}", team=team), "tests")
    set_route(db, Route(name="urgent-mail", channel="email", target="x@h.test", team=f"east-{run}",
                        min_severity="urgent"), "tests")
    assign(db, f"W-{run}", f"east-{run}", "tests")  # west's patient is also in east's care
    now = datetime.now(UTC).replace(microsecond=0)

    async def run_findings() -> None:
        findings = [Finding.model_validate({
            "patient_id": p, "rule_id": "NS-FVC50", "rule_version": "t", "category": "NIV_START", "severity": "high",
            "state": "open", "at": now - timedelta(hours=1), "evidence": {"change": "opened"}, "action": "a",
            "citation": "c"}) for p in teams.values()]
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
            await apply_findings(conn, findings, settings, now=now)

    asyncio.run(run_findings())
    routes = {p: sorted(r for (r,) in db.execute(
        "SELECT d.route FROM deliveries d JOIN alerts a USING (alert_id) WHERE a.patient_id = %s", (p,)).fetchall())
        for p in teams.values()}
    assert routes == {f"E-{run}": ["east-" + run + "/hook", "site"],
                      f"W-{run}": ["east-" + run + "/hook", "site", "west-" + run + "/hook"]}


# ------------------------------------------------------------------------------------------ property

@dataclass
class Example:
    """A random little site: patients, teams, who is where with which role."""

    patients: list[str]
    assignments: set[tuple[int, int]]  # (patient, team)
    roles: set[tuple[int, str]]  # (team, role) of the member asking
    requests: list[tuple[str, int | None, int | None]]  # (what, patient filter, alert)


def examples() -> st.SearchStrategy[Example]:
    pairs = st.sets(st.tuples(st.integers(0, 4), st.integers(0, 2)), max_size=10)
    roles = st.sets(st.tuples(st.integers(0, 2), st.sampled_from(["viewer", "clinician", "admin"])), max_size=4)
    request = st.tuples(st.sampled_from(["list", "show", "acknowledge", "resolve", "notes"]),
                        st.none() | st.integers(0, 4), st.none() | st.integers(0, 4))
    return st.builds(lambda a, r, q: Example([], a, r, q), pairs, roles, st.lists(request, min_size=1, max_size=6))


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(example=examples())
def test_no_answer_ever_holds_a_patient_outside_the_members_teams(client: TestClient, db: psycopg.Connection,
                                                                   example: Example) -> None:
    client.cookies.clear()  # no session of another test stands in for the member
    run = uuid.uuid4().hex[:8]
    patients = [f"PX{run}{i}" for i in range(5)]  # same length: none is a prefix of another
    teams = [f"TX{run}{t}" for t in range(3)]
    alerts = [new_alert(db, p) for p in patients]
    for p, t in example.assignments:
        assign(db, patients[p], teams[t], "property")
    member = f"MX{run}"
    for t, role in example.roles:
        add_member(db, member, teams[t], role, "property")  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {issue_token(db, member)}"} if example.roles else {}
    readable = {patients[p] for p, t in example.assignments if (t, "viewer") in example.roles
                or (t, "clinician") in example.roles}
    hidden = set(patients) - readable
    for what, patient, alert in example.requests:
        alert_id = alerts[alert] if alert is not None else 2_000_000_000
        if what == "list":
            answer = client.get("/v1/alerts", headers=headers, params={"status": "active"} if patient is None else
                                {"status": "active", "patient_id": patients[patient]})
        elif what == "show":
            answer = client.get(f"/v1/alerts/{alert_id}", headers=headers)
        else:
            answer = client.post(f"/v1/alerts/{alert_id}/{what}", json={"note": "p"}, headers=headers)
        assert not any(p in answer.text for p in hidden), (what, answer.status_code, answer.text)
        if not example.roles:
            assert answer.status_code == 401
        elif what != "list" and alert is not None and patients[alert] in hidden:
            assert answer.status_code == 404
        elif what == "show" and alert is not None:
            assert answer.status_code == 200
        if what == "list" and answer.status_code == 200 and patient is None:
            assert {a["patient_id"] for a in answer.json()["alerts"]} <= readable
    logged = {p for (p,) in db.execute("SELECT DISTINCT patient_id FROM access_log WHERE member_id = %s",
                                       (member,)).fetchall()}
    assert logged <= readable


# ------------------------------------------------------------------------------------------ migration 0007

def test_migration_0007_keeps_members_their_tokens_and_their_sight(stack: None) -> None:
    """A database at 0006 with a member (one team, one token), a device and an alert: after 0007 the member
    is a clinician of that team, the token still works and the known patients are in the team's care."""
    name = f"respmon_test_care_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"postgresql://respmon:respmon@127.0.0.1:15432/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
            for version, sql in available_migrations():
                if version < "0007":
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            conn.execute("INSERT INTO team_members (member_id, team, token_sha256) VALUES ('nurse', 'resp', %s)",
                         (hash_token("old-token"),))
            conn.execute("INSERT INTO devices (device_id, patient_id, token_sha256) VALUES ('d1', 'P-dev', 'x')")
            new_alert(conn, "P-alert")
        assert "0007_care_teams" in migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT team, role, added_by FROM team_memberships").fetchall() == [
                ("resp", "clinician", "migration 0007")]
            assert active_holder(conn, "team_members", "old-token") == ("nurse", "nurse")
            assert conn.execute("SELECT patient_id, team FROM patient_teams ORDER BY 1").fetchall() == [
                ("P-alert", "resp"), ("P-dev", "resp")]
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
