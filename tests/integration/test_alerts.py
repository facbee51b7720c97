"""Alerts the team can rely on, on the real stack: outages delay but never drop or double a delivery,
e-mail reaches an SMTP server, acknowledgement stops escalation, silence escalates."""

import json
import time
import uuid
from functools import partial

import httpx
import psycopg

from tests.integration.conftest import ESCALATE_AFTER_S, Pipeline
from tests.integration.test_walking_skeleton import recent, session_json, wait_until


def low_fvc_patient(pipeline: Pipeline, fvc_pct: float = 44.0) -> str:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    assert pipeline.upload(token, session_json(patient, fvc_pct)).status_code == 202
    return patient


def webhooks_for(receiver: object, patient: str) -> list[dict[str, object]]:
    return [r.body for r in receiver.received if r.body.get("patient_id") == patient]  # type: ignore[attr-defined]


def alert_id(db: psycopg.Connection, patient: str) -> int:
    row = wait_until(lambda: db.execute("SELECT alert_id FROM alerts WHERE patient_id = %s", (patient,)).fetchone(),
                     what="the alert row")
    return int(row[0])  # type: ignore[index]


def test_webhook_outage_delays_but_delivers_every_alert_exactly_once(pipeline: Pipeline,
                                                                      db: psycopg.Connection) -> None:
    pipeline.receiver.fail_with = 503
    try:
        before = pipeline.receiver.attempts
        patients = [low_fvc_patient(pipeline) for _ in range(3)]
        wait_until(lambda: pipeline.receiver.attempts >= before + 6, what="failed attempts during the outage")
        assert all(not webhooks_for(pipeline.receiver, p) for p in patients)
    finally:
        pipeline.receiver.fail_with = None
    for patient in patients:
        wait_until(partial(webhooks_for, pipeline.receiver, patient), timeout_s=60, what="delivery after recovery")
    time.sleep(2)
    for patient in patients:
        assert len(webhooks_for(pipeline.receiver, patient)) == 1
        status, attempts, failures = db.execute(
            "SELECT d.status, d.attempts, (SELECT count(*) FROM delivery_attempts x"
            " WHERE x.delivery_id = d.delivery_id AND NOT x.ok) FROM deliveries d JOIN alerts a USING (alert_id)"
            " WHERE a.patient_id = %s AND d.route = 'team-webhook'", (patient,)).fetchone()
        assert status == "delivered" and attempts >= 2 and failures == attempts - 1


def test_high_severity_alert_is_emailed_with_its_values(pipeline: Pipeline) -> None:
    patient = low_fvc_patient(pipeline, 43.0)

    def mail() -> list[object]:
        return [m for m in pipeline.mailbox.messages if patient in str(m["Subject"])]

    messages = wait_until(mail, what="the e-mail")
    message = messages[0]  # type: ignore[index]
    assert "NS-FVC50" in message["Subject"] and "[HIGH]" in message["Subject"]
    assert message["To"] == "resp-team@hospital.test"
    plain = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    for part in (plain, html):
        assert "43.0" in part  # the FVC value behind the alert, in the trend table
        assert "not an order" in part  # the disclaimer
    assert "<table" in html


def test_acknowledged_alert_does_not_escalate(pipeline: Pipeline, db: psycopg.Connection) -> None:
    token = pipeline.team_member(f"nurse-{uuid.uuid4().hex[:6]}")
    patient = low_fvc_patient(pipeline)
    aid = alert_id(db, patient)
    response = httpx.post(f"{pipeline.alerts_url}/v1/alerts/{aid}/acknowledge", json={"note": "called patient"},
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json()["status"] == "acknowledged"
    time.sleep(ESCALATE_AFTER_S + 3)
    assert webhooks_for(pipeline.escalation_receiver, patient) == []
    events = db.execute("SELECT actor, action, note FROM alert_events WHERE alert_id = %s ORDER BY id",
                        (aid,)).fetchall()
    assert events[-1][1:] == ("acknowledged", "called patient") and events[-1][0].startswith("nurse-")
    assert "escalated" not in [e[1] for e in events]


def test_unacknowledged_alert_escalates_once(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient = low_fvc_patient(pipeline)
    escalations = wait_until(lambda: webhooks_for(pipeline.escalation_receiver, patient),
                             timeout_s=ESCALATE_AFTER_S + 20, what="the escalation")
    first = escalations[0]  # type: ignore[index]
    assert first["kind"] == "escalation" and first["team"] == "on-call" and first["rule_id"] == "NS-FVC50"
    time.sleep(3)
    assert len(webhooks_for(pipeline.escalation_receiver, patient)) == 1
    actions = [a for (a,) in db.execute("SELECT e.action FROM alert_events e JOIN alerts a USING (alert_id)"
                                        " WHERE a.patient_id = %s ORDER BY e.id", (patient,)).fetchall()]
    assert actions == ["opened", "escalated"]


def test_worse_severity_renotifies_the_same_alert(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    # recent sessions: older findings are backfill, not notified (issue 12)
    # NE-PCF270: warn below 270 L/min, high below 160 (rules 0.2: one rule with two tiers)
    first = {"patient_id": patient, "taken_at": recent(3), "pcf_lpm": 200}
    second = {**first, "taken_at": recent(1), "pcf_lpm": 150}
    assert pipeline.upload(token, json.dumps(first)).status_code == 202
    wait_until(lambda: webhooks_for(pipeline.receiver, patient), what="first notification")
    assert pipeline.upload(token, json.dumps(second)).status_code == 202
    hooks = wait_until(lambda: [h for h in webhooks_for(pipeline.receiver, patient) if h["severity"] == "high"],
                       what="re-notification")
    pcf = [h for h in webhooks_for(pipeline.receiver, patient) if h["rule_id"] == "NE-PCF270"]
    assert [h["severity"] for h in pcf] == ["warn", "high"]
    assert pcf[0]["alert_id"] == hooks[0]["alert_id"]  # type: ignore[index]
    assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s AND category = 'NIV_ESCALATE'",
                      (patient,)).fetchone() == (1,)


def test_team_api_lists_shows_and_resolves_with_team_tokens_only(pipeline: Pipeline,
                                                                 db: psycopg.Connection) -> None:
    token = pipeline.team_member(f"doctor-{uuid.uuid4().hex[:6]}")
    patient = low_fvc_patient(pipeline)
    device_token = pipeline.device(f"dev2-{patient}", patient)
    aid = alert_id(db, patient)
    auth = {"Authorization": f"Bearer {token}"}

    assert httpx.get(f"{pipeline.alerts_url}/v1/alerts").status_code == 401
    assert httpx.get(f"{pipeline.alerts_url}/v1/alerts",
                     headers={"Authorization": f"Bearer {device_token}"}).status_code == 401

    listed = httpx.get(f"{pipeline.alerts_url}/v1/alerts", params={"patient_id": patient, "category": "NIV_START"},
                       headers=auth).json()
    assert [a["alert_id"] for a in listed["alerts"]] == [aid]
    assert httpx.get(f"{pipeline.alerts_url}/v1/alerts", params={"patient_id": patient, "category": "DATA_QUALITY"},
                     headers=auth).json()["alerts"] == []
    shown = httpx.get(f"{pipeline.alerts_url}/v1/alerts/{aid}", headers=auth).json()
    assert shown["rule_id"] == "NS-FVC50" and shown["evidence"] and shown["citation"]
    assert shown["history"][0]["action"] == "opened"
    assert {d["route"] for d in shown["deliveries"]} >= {"team-webhook", "team-email"}

    resolved = httpx.post(f"{pipeline.alerts_url}/v1/alerts/{aid}/resolve", json={"note": "NIV started"},
                          headers=auth)
    assert resolved.status_code == 200
    again = httpx.post(f"{pipeline.alerts_url}/v1/alerts/{aid}/acknowledge", json={}, headers=auth)
    assert again.status_code == 409
    assert httpx.get(f"{pipeline.alerts_url}/v1/alerts/999999999", headers=auth).status_code == 404


def test_a_backfilled_session_is_stored_and_shown_not_notified(pipeline: Pipeline, db: psycopg.Connection) -> None:
    """Issue 12: a finding older than RESPMON_NOTIFY_HORIZON_DAYS (14) when computed is history, not news."""
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    assert pipeline.upload(token, session_json(patient, 44.0, recent(60))).status_code == 202
    aid = alert_id(db, patient)
    time.sleep(2)
    assert webhooks_for(pipeline.receiver, patient) == []
    assert db.execute("SELECT status, severity, notified_at, rules ? 'NS-FVC50' FROM alerts WHERE alert_id = %s",
                      (aid,)).fetchone() == ("open", "high", None, True)
    assert db.execute("SELECT count(*) FROM deliveries WHERE alert_id = %s", (aid,)).fetchone() == (0,)
