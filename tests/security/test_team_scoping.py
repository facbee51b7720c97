"""Care teams on the running services (issue 14): alerts raised by the real pipeline for patients of two
teams; over HTTP each team's member sees only their own, the other's answer 404, a person's session cookie
works like a token, and every look is in `access_log` with the client's address. (The full matrix of
roles and routes, and the property test, run in-process: tests/test_alerts/test_care_teams.py.)"""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from alerts.sessions import set_password
from alerts.team import add_member
from tests.security.conftest import SecuredPipeline

pytestmark = pytest.mark.timeout(120)


def low_fvc(patient: str) -> str:
    taken = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0).isoformat()
    return json.dumps({"patient_id": patient, "taken_at": taken, "fvc_l": 1.6, "fvc_pct_pred": 41.0,
                       "posture": "sitting", "source": "home-spirometer"})


def alert_of(db: psycopg.Connection, patient: str, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = db.execute("SELECT alert_id FROM alerts WHERE patient_id = %s", (patient,)).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.3)
    raise AssertionError(f"no alert within {timeout_s:.0f}s")


def test_each_team_sees_only_its_patients_on_the_running_services(secured: SecuredPipeline) -> None:
    run = uuid.uuid4().hex[:6]
    patients = {f"north-{run}": f"SCOPE-N-{run}", f"south-{run}": f"SCOPE-S-{run}"}
    for team, patient in patients.items():
        device = secured.device(f"dev-{patient}", patient, team=team)
        assert secured.upload(device, low_fvc(patient)).status_code == 202
    tokens = {team: secured.team_member(f"nurse-{team}", team) for team in patients}
    with psycopg.connect(secured.db_url, autocommit=True) as db:
        alerts = {team: alert_of(db, patient) for team, patient in patients.items()}
        for team, other in ((f"north-{run}", f"south-{run}"), (f"south-{run}", f"north-{run}")):
            auth = {"Authorization": f"Bearer {tokens[team]}"}
            listed = httpx.get(f"{secured.alerts_url}/v1/alerts", headers=auth).json()["alerts"]
            assert {a["patient_id"] for a in listed} == {patients[team]}
            assert httpx.get(f"{secured.alerts_url}/v1/alerts/{alerts[team]}", headers=auth).status_code == 200
            theirs = httpx.get(f"{secured.alerts_url}/v1/alerts/{alerts[other]}", headers=auth)
            assert theirs.status_code == 404 and patients[other] not in theirs.text
            refused = httpx.post(f"{secured.alerts_url}/v1/alerts/{alerts[other]}/acknowledge", json={}, headers=auth)
            assert refused.status_code == 404
        logged = db.execute("SELECT member_id, patient_id, action, client FROM access_log WHERE patient_id = ANY(%s)"
                            " ORDER BY id", (list(patients.values()),)).fetchall()
    assert {(m, p, a) for m, p, a, _ in logged} == {
        (f"nurse-{team}", patients[team], action) for team in patients for action in ("list", "show")}
    assert {client for *_, client in logged} == {"127.0.0.1"}


def test_a_person_logs_in_and_out_on_the_running_api(secured: SecuredPipeline) -> None:
    member = f"dr-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(secured.db_url, autocommit=True) as db:
        add_member(db, member, "respiratory", "clinician", "tests")
        set_password(db, member, "a passphrase for the test")
    with httpx.Client(base_url=secured.alerts_url) as browser:
        assert browser.post("/v1/session", json={"member_id": member, "password": "wrong one!"}).status_code == 401
        opened = browser.post("/v1/session", json={"member_id": member, "password": "a passphrase for the test"})
        assert opened.status_code == 200 and "httponly" in opened.headers["set-cookie"].lower()
        assert browser.get("/v1/me").json() == {"member_id": member, "via": "session",
                                                "memberships": [{"team": "respiratory", "role": "clinician"}]}
        assert browser.get("/v1/alerts").status_code == 200
        assert browser.post("/v1/session/logout").status_code == 200
        assert browser.get("/v1/alerts").status_code == 401
