"""The worker stores a burst of events in few transactions, yet never holds a lone event back."""

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
from kafka import KafkaProducer

from respmon.core.settings import get_settings
from schemas import Envelope, NivNight
from tests.integration.conftest import Pipeline
from tests.integration.test_walking_skeleton import session_json, wait_until

BURST = 300


def batch_histogram(pipeline: Pipeline) -> tuple[float, float]:
    """(transactions, records) counted so far by `respmon_worker_batch_records`."""
    samples = pipeline.worker_samples("respmon_worker_batch_records")
    return (sum(s.value for s in samples if s.name.endswith("_count")),
            sum(s.value for s in samples if s.name.endswith("_sum")))


def niv_envelopes(prefix: str) -> list[Envelope]:
    received = datetime.now(UTC)
    return [Envelope(upload_id=str(uuid.uuid4()), device_id="burst-test", received_at=received,
                     record=NivNight(patient_id=f"{prefix}{i:04d}",
                                     night_date=date(2026, 11, 1) + timedelta(days=i % 20),
                                     usage_hours=7.5, ahi=2.0, leak_p95_lpm=10.0))
            for i in range(BURST)]


def test_a_burst_is_stored_in_batches_and_exactly_once(pipeline: Pipeline, db: psycopg.Connection) -> None:
    prefix = f"B{uuid.uuid4().hex[:6]}-"
    before = batch_histogram(pipeline)
    producer = KafkaProducer(bootstrap_servers=get_settings().kafka_bootstrap, acks="all", linger_ms=50)
    for env in niv_envelopes(prefix):
        producer.send(get_settings().measurements_topic, key=env.patient_id.encode(),
                      value=env.model_dump_json().encode())
    producer.flush()
    producer.close()

    def stored() -> int:
        return db.execute("SELECT count(*) FROM niv_nights WHERE patient_id LIKE %s", (prefix + "%",)).fetchone()[0]

    wait_until(lambda: stored() == BURST, 60, "the burst stored")
    transactions, records = (a - b for a, b in zip(batch_histogram(pipeline), before, strict=True))
    assert records >= BURST  # every record went through a counted transaction (ticks may add a few)
    assert transactions < BURST / 5, f"{transactions:.0f} transactions for {BURST} records: not batched"
    assert stored() == BURST  # nothing doubled


def test_a_lone_upload_is_not_held_back(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient = f"L-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    assert pipeline.upload(token, session_json(patient, 85.0)).status_code == 202
    wait_until(lambda: db.execute("SELECT 1 FROM spirometry_sessions WHERE patient_id = %s", (patient,)).fetchone(),
               10, "the lone session stored")
