"""One upload crosses the real stack: HTTP -> Kafka -> faust worker -> PostgreSQL -> webhook."""

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from tests.integration.conftest import Pipeline


def wait_until(check: Callable[[], object], timeout_s: float = 60, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def recent(days_ago: int = 1) -> str:
    """A session time `days_ago` days back: findings older than RESPMON_NOTIFY_HORIZON_DAYS (14) when
    computed are backfill, stored but not notified (issue 12), so alert tests upload recent data."""
    day = datetime.now(UTC) - timedelta(days=days_ago)
    return day.replace(hour=9, minute=30, second=0, microsecond=0).isoformat()


def session_json(patient: str, fvc_pct: float, taken_at: str | None = None) -> str:
    return json.dumps({"patient_id": patient, "taken_at": taken_at or recent(), "fvc_l": 1.9,
                       "fvc_pct_pred": fvc_pct, "posture": "sitting", "source": "home-spirometer"})


def test_low_fvc_upload_is_stored_once_and_alerts_once(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"spiro-{patient}", patient)
    body = session_json(patient, 45.0)

    first = pipeline.upload(token, body)
    second = pipeline.upload(token, body)
    assert first.status_code == 202, first.text
    assert first.json()["records"] == 1
    assert second.status_code == 200 and second.json()["duplicate"] is True

    def alert_received() -> list[dict[str, object]]:
        return [r.body for r in pipeline.receiver.received if r.body.get("patient_id") == patient]

    alerts = wait_until(alert_received, what="the NIV_START webhook")
    assert isinstance(alerts, list)
    alert = alerts[0]
    assert alert["rule_id"] == "NS-FVC50"
    assert alert["category"] == "NIV_START"
    assert "fvc" in json.dumps(alert["evidence"]).lower()
    assert alert["citation"]
    assert alert["disclaimer"]
    assert all(r.signature_ok for r in pipeline.receiver.received if r.body.get("patient_id") == patient)

    rows = db.execute("SELECT fvc_pct_pred, source FROM spirometry_sessions WHERE patient_id = %s",
                      (patient,)).fetchall()
    assert rows == [(45.0, "home-spirometer")]
    time.sleep(1.5)  # give a wrongly doubled alert time to show up
    assert len(alert_received()) == 1
    assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s", (patient,)).fetchone() == (1,)


def test_same_session_sent_as_new_upload_is_not_doubled(pipeline: Pipeline, db: psycopg.Connection) -> None:
    """A byte-different re-send of the same session (same natural key) still yields one row and one alert."""
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"spiro-{patient}", patient)
    assert pipeline.upload(token, session_json(patient, 41.0)).status_code == 202
    assert pipeline.upload(token, session_json(patient, 41.0) + " ").status_code == 202
    wait_until(lambda: db.execute("SELECT count(*) FROM findings WHERE patient_id = %s", (patient,)).fetchone()[0],
               what="the finding")
    time.sleep(1.5)
    assert db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s", (patient,)).fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s", (patient,)).fetchone() == (1,)
    assert len([r for r in pipeline.receiver.received if r.body.get("patient_id") == patient]) == 1


def test_normal_fvc_raises_no_alert(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"spiro-{patient}", patient)
    assert pipeline.upload(token, session_json(patient, 92.0)).status_code == 202
    wait_until(lambda: db.execute("SELECT 1 FROM spirometry_sessions WHERE patient_id = %s", (patient,)).fetchone(),
               what="the stored session")
    time.sleep(1.0)
    assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s", (patient,)).fetchone() == (0,)


def test_bad_token_is_401(pipeline: Pipeline) -> None:
    missing = pipeline.upload(None, session_json("P-x", 45.0))
    wrong = pipeline.upload("not-a-real-token", session_json("P-x", 45.0))
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["reason"] == "missing or unknown device token"


def test_malformed_json_is_422_with_reason(pipeline: Pipeline) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"spiro-{patient}", patient)
    response = pipeline.upload(token, '{"patient_id": "' + patient + '", "taken_at": ', filename="session.json")
    assert response.status_code == 422
    assert "json" in response.json()["reason"].lower()


def test_out_of_range_fvc_is_422_naming_the_field(pipeline: Pipeline) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"spiro-{patient}", patient)
    for fvc in (-1, 40):
        body = json.dumps({"patient_id": patient, "taken_at": "2026-11-20T09:30:00+00:00", "fvc_l": fvc})
        response = pipeline.upload(token, body)
        assert response.status_code == 422, response.text
        reason = response.json()["reason"]
        assert "fvc_l" in reason
        assert ("greater than 0" in reason) if fvc < 0 else ("less than or equal to 10" in reason)


def test_device_cannot_upload_for_another_patient(pipeline: Pipeline) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"spiro-{patient}", patient)
    response = pipeline.upload(token, session_json("SOMEONE-ELSE", 45.0))
    assert response.status_code == 403


def test_services_expose_prometheus_counters(pipeline: Pipeline) -> None:
    ingest = httpx.get(f"{pipeline.ingest_url}/metrics").text
    worker = httpx.get(f"{pipeline.worker_url}/metrics").text
    assert "respmon_ingest_uploads_total{" in ingest
    assert 'outcome="accepted"' in ingest
    assert "respmon_worker_events_processed_total{" in worker


def test_worker_reports_the_patient_histories_it_holds(pipeline: Pipeline) -> None:
    """The memory-planning gauges count a patient as soon as the worker has stored their first record."""
    def held() -> tuple[float, float]:
        lines = httpx.get(f"{pipeline.worker_url}/metrics").text.splitlines()
        value = {line.split()[0]: float(line.split()[1])
                 for line in lines if line.startswith("respmon_worker_patient_")}
        return value["respmon_worker_patient_histories"], value["respmon_worker_patient_history_bytes"]

    before = held()
    patient = f"P-{uuid.uuid4().hex[:8]}"
    assert pipeline.upload(pipeline.device(f"spiro-{patient}", patient), session_json(patient, 80.0)).status_code == 202
    after = wait_until(lambda: (h := held())[0] > before[0] and h, 30, "the new patient's history counted")
    # the pipeline's worker keeps its table on RocksDB (the default): bytes are RocksDB's estimate of its files
    # and memtables, which a few hundred bytes do not move; the memory store counts them exactly
    # (tests/test_processors/test_worker_settings.py)
    assert after[1] > 0


def test_every_service_reports_ready_once_its_dependencies_answer(pipeline: Pipeline) -> None:
    """Readiness (for orchestrators and load balancers): PostgreSQL answers, the worker's tables recovered."""
    for url in (pipeline.ingest_url, pipeline.worker_url, pipeline.alerts_url):
        answer = wait_until(lambda u=url: (r := httpx.get(f"{u}/readyz", timeout=10)).status_code == 200 and r,
                            30, f"{url}/readyz")
        assert answer.json()["status"] == "ready"
