"""PostgreSQL goes away for 30 s (pg_ctl stop -m fast on the private cluster) while the worker is in
the middle of a stream: it backs off (processors/app.py `Worker._write`), never skips an event, and once the
database is back every record is stored exactly once. Ingest answers 503 during the outage (it needs
the database to archive) and accepts the same upload on the device's retry."""

import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from kafka import KafkaProducer

from ingest.parsers import parse_bytes
from schemas import Envelope
from tests.reliability.conftest import (
    Device,
    Services,
    UploadLog,
    make_cohort,
    provision,
    records_of,
    report,
    session_body,
    verify_pipeline,
    wait_all_stored,
)
from tests.reliability.stack import PrivateStack

PATIENTS, PER_PATIENT, OUTAGE_S = 4, 8, 30


@pytest.mark.timeout(240)
def test_database_outage_mid_stream_delays_but_stores_everything_once(private_stack: PrivateStack,
                                                                      services: Services) -> None:
    db_url = services.env["RESPMON_DATABASE_URL"]
    topic = f"{services.env['RESPMON_TOPIC_PREFIX']}.measurements"
    services.start("worker")
    services.start("ingest")
    services.worker_ready()
    before = make_cohort(db_url, PATIENTS, PER_PATIENT, "pgA")
    during = make_cohort(db_url, PATIENTS, PER_PATIENT, "pgB")  # sent straight to Kafka mid-outage
    late_patient = f"REL-pgC-{uuid.uuid4().hex[:6]}"
    late_token = provision(db_url, f"dev-{late_patient}", late_patient)
    late = [UploadLog(late_patient, session_body(late_patient, d, 60.0 - d)) for d in range(3)]

    stop = threading.Event()
    devices = [Device(services.url("ingest"), token, ups, stop, pause_s=0.0) for token, ups in before.values()]
    for d in devices:
        d.start()
    for d in devices:
        d.join(60)
    assert all(u.acknowledged for _, ups in before.values() for u in ups)

    producer = KafkaProducer(bootstrap_servers=private_stack.bootstrap, acks="all", enable_idempotence=True)
    t0 = time.monotonic()
    private_stack.pg_stop()  # the worker is still busy with the uploads just acknowledged
    try:
        for patient, (_, ups) in during.items():
            for upload in ups:
                for record in parse_bytes(upload.body, "upload.json", fmt="spirometry_json", patient_id=patient):
                    env = Envelope(upload_id=str(uuid.uuid4()), device_id=f"dev-{patient}",
                                   received_at=datetime.now(UTC), record=record)
                    producer.send(topic, key=patient.encode(), value=env.model_dump_json().encode())
        producer.flush()
        # a device uploading during the outage is told to come back later, and does
        outage_answer = httpx.post(f"{services.url('ingest')}/v1/uploads", content=late[0].body, timeout=40,
                                   headers={"Authorization": f"Bearer {late_token}",
                                            "Content-Type": "application/json"})
        late_device = Device(services.url("ingest"), late_token, late, stop, pause_s=0.0)
        late_device.start()
        # readiness says what is going on: neither ingest nor the worker is ready without the database
        readiness_during = {name: httpx.get(f"{services.url(name)}/readyz", timeout=10).status_code
                            for name in ("ingest", "worker")}
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
    finally:
        producer.close()
        private_stack.pg_start()
    outage_s = time.monotonic() - t0
    late_device.join(120)
    assert late_device.error is None, late_device.error
    assert outage_answer.status_code == 503 and outage_answer.json()["error"] == "unavailable", outage_answer.text
    assert all(u.acknowledged for u in late), [u.attempts for u in late]

    t1 = time.monotonic()
    cohort = {**{p: ups for p, (_, ups) in before.items()}, **{p: ups for p, (_, ups) in during.items()},
              late_patient: late}
    wait_all_stored(db_url, {p: len(ups) for p, ups in cohort.items()}, timeout_s=120)
    caught_up_s = time.monotonic() - t1
    verdict = verify_pipeline(db_url, {p: records_of(ups) for p, ups in cohort.items()}, services.receiver)
    worker_log = (services.log_dir / "worker.log").read_text(errors="replace")
    retries = worker_log.count("database write failed, retrying")
    expected_rows = sum(len(ups) for ups in cohort.values())
    report("postgres_outage", outage_s=round(outage_s, 1), caught_up_after_restart_s=round(caught_up_s, 1),
           uploads_before=PATIENTS * PER_PATIENT, kafka_events_during=PATIENTS * PER_PATIENT,
           late_upload_attempts=[u.attempts for u in late], outage_answer=outage_answer.status_code,
           worker_write_retries=retries, stored_rows=verdict.stored_rows, expected_rows=expected_rows,
           duplicate_rows=verdict.duplicate_rows, findings=verdict.findings, alerts=verdict.alerts,
           doubled_alerts=verdict.doubled_alerts, webhook_deliveries=verdict.deliveries,
           resent_after_2xx=verdict.resent_after_2xx)
    assert retries > 0, "the worker never met the outage: nothing was tested"
    assert verdict.stored_rows == expected_rows and verdict.duplicate_rows == 0
    assert verdict.finding_mismatches == []
    assert verdict.doubled_alerts == 0 and verdict.alerts > 0
    assert verdict.webhook_keys == verdict.deliveries and verdict.resent_after_2xx == {}
    assert readiness_during == {"ingest": 503, "worker": 503}
    assert {name: httpx.get(f"{services.url(name)}/readyz").status_code for name in ("ingest", "worker")} == {
        "ingest": 200, "worker": 200}
