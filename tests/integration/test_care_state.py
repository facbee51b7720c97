"""Issue 12 on the real stack: a care state set with `respmon care-state` (or the team API) reaches the worker in
order with the patient's data, resolves the alert it silences as no_longer_applies, is audited in
`care_states` and `alert_events`, and silences the patient's later data; a device cannot set one."""

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from alerts.team import provision
from tests.conftest import ROOT
from tests.integration.conftest import Pipeline
from tests.integration.test_walking_skeleton import session_json, wait_until


def yesterday() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def alert_of(db: psycopg.Connection, patient: str) -> tuple[int, str, str | None] | None:
    return db.execute("SELECT alert_id, status, resolution FROM alerts WHERE patient_id = %s AND category = 'NIV_START'"
                      " ORDER BY alert_id DESC LIMIT 1", (patient,)).fetchone()


def low_fvc_alert(pipeline: Pipeline, db: psycopg.Connection) -> tuple[str, str, int]:
    """A patient with an open NS-FVC50 alert raised by an upload: (patient, device token, alert id)."""
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    assert pipeline.upload(token, session_json(patient, 44.0)).status_code == 202
    found = wait_until(lambda: alert_of(db, patient), what="the NIV_START alert")
    return patient, token, found[0]  # type: ignore[index]


def test_care_state_command_resolves_the_alert_and_silences_later_data(pipeline: Pipeline, db: psycopg.Connection,
                                                                         stack_env: dict[str, str]) -> None:
    patient, token, alert_id = low_fvc_alert(pipeline, db)
    member = f"dr-{uuid.uuid4().hex[:6]}"
    pipeline.team_member(member)
    done = subprocess.run(
        [sys.executable, "-m", "respmon", "care-state", patient, "invasive_ventilation", "--since", yesterday(),
         "--note", "tracheostomy yesterday", "--by", member],
        env={**os.environ, **stack_env}, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"set to invasive_ventilation from {yesterday()} by {member}" in done.stdout

    wait_until(lambda: alert_of(db, patient) == (alert_id, "resolved", "no_longer_applies"), what="the resolution")
    event = db.execute("SELECT actor, note FROM alert_events WHERE alert_id = %s AND action = 'resolved'",
                       (alert_id,)).fetchone()
    assert event is not None
    actor, note = event
    assert actor == "rules" and note == (f"no_longer_applies: care state invasive_ventilation set by {member}"
                                         f" from {yesterday()}")
    rows = db.execute("SELECT state, since::text, note, set_by FROM care_states WHERE patient_id = %s",
                      (patient,)).fetchall()
    assert rows == [("invasive_ventilation", yesterday(), "tracheostomy yesterday", member)]  # once: both wrote it
    assert db.execute("SELECT state FROM patient_care_states WHERE patient_id = %s", (patient,)).fetchone() == (
        "invasive_ventilation",)

    later = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert pipeline.upload(token, session_json(patient, 38.0, taken_at=later)).status_code == 202
    wait_until(lambda: db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s",
                                  (patient,)).fetchone()[0] == 2, what="the later session stored")  # type: ignore[index]
    time.sleep(1.0)
    opened = db.execute("SELECT count(*) FROM findings WHERE patient_id = %s AND state = 'open'", (patient,)).fetchone()
    assert opened == (1,)  # only the first NS-FVC50
    assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s AND status <> 'resolved'",
                      (patient,)).fetchone() == (0,)


def test_the_care_state_command_refuses_an_unknown_member_and_a_future_day(stack_env: dict[str, str]) -> None:
    env = {**os.environ, **stack_env}
    tomorrow = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    for extra, message in ((["--since", yesterday(), "--by", "nobody-here"], "no such team member"),
                           (["--since", tomorrow], "since must not be later")):
        done = subprocess.run([sys.executable, "-m", "respmon", "care-state", "P-X", "end_of_life", *extra], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1 and message in done.stderr


def test_team_api_sets_the_care_state_for_a_clinician_only(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient, _, alert_id = low_fvc_alert(pipeline, db)
    run = uuid.uuid4().hex[:6]
    with psycopg.connect(pipeline.db_url, autocommit=True) as conn:
        clinician = provision(conn, f"clin-{run}", "respiratory", "clinician")
        viewer = provision(conn, f"view-{run}", "respiratory", "viewer")
        stranger = provision(conn, f"other-{run}", f"other-team-{run}", "clinician")
    url = f"{pipeline.alerts_url}/v1/patients/{patient}/care-state"
    body = {"state": "niv_declined", "since": yesterday(), "note": "declined NIV"}

    def post(token: str | None, payload: dict[str, str] = body) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(url, json=payload, headers=headers, timeout=30)

    assert post(None).status_code == 401
    assert post(viewer).status_code == 403
    assert post(stranger).status_code == 404
    assert post(clinician, {**body, "state": "asleep"}).status_code == 422
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    assert post(clinician, {**body, "since": future}).status_code == 422
    assert db.execute("SELECT count(*) FROM care_states WHERE patient_id = %s", (patient,)).fetchone() == (0,)

    answer = post(clinician)
    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "niv_declined" and answer.json()["set_by"] == f"clin-{run}"
    assert db.execute("SELECT set_by, note FROM care_states WHERE patient_id = %s", (patient,)).fetchall() == [
        (f"clin-{run}", "declined NIV")]
    assert db.execute("SELECT count(*) FROM access_log WHERE patient_id = %s AND action = 'care_state'",
                      (patient,)).fetchone() == (1,)
    wait_until(lambda: alert_of(db, patient) == (alert_id, "resolved", "no_longer_applies"), what="the resolution")


def test_a_device_cannot_upload_a_care_state(pipeline: Pipeline) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    states = f"patient_id,since,state,note\n{patient},{yesterday()},left_service,\n"
    refused = pipeline.upload(token, states, "text/csv", filename="states.csv")
    assert refused.status_code == 422 and "set by the care team" in refused.text
    assert pipeline.upload(token, states, "text/csv", format="care_state_csv").status_code == 422
