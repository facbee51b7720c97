"""A record PostgreSQL refuses is dead-lettered with its reason; the rest of its batch is stored
exactly once and the worker keeps going (before: it retried that batch forever, and the patients
on its partition were no longer monitored)."""

import json
import uuid

import psycopg
from kafka import KafkaProducer

from respmon.core.settings import get_settings
from tests.integration.conftest import Pipeline, dead_letters
from tests.integration.test_walking_skeleton import session_json, wait_until
from tests.integration.test_worker_batching import niv_envelopes


def worker_started_at(pipeline: Pipeline) -> float:
    samples = pipeline.worker_samples("process_start_time_seconds")
    assert samples, "the worker exports no process_start_time_seconds"
    return float(samples[0].value)


def dead_lettered(pipeline: Pipeline, kind: str) -> float:
    """respmon_worker_events_processed_total{kind=..., outcome="deadletter"} as the worker exports it."""
    return sum(s.value for s in pipeline.worker_samples("respmon_worker_events_processed")
               if s.name.endswith("_total") and s.labels.get("kind") == kind
               and s.labels.get("outcome") == "deadletter")


def worker_deadletters(upload_id: str) -> list[dict[str, object]]:
    return [d for d in dead_letters(get_settings())
            if d.get("stage") == "worker" and upload_id in str(d.get("payload"))]


def test_a_record_postgres_refuses_is_dead_lettered_and_the_batch_stored(pipeline: Pipeline,
                                                                         db: psycopg.Connection) -> None:
    prefix = f"Q{uuid.uuid4().hex[:6]}-"
    envelopes = niv_envelopes(prefix)
    poison = envelopes[len(envelopes) // 2]
    # A real refusal by PostgreSQL, as a tightened constraint or a column type too small would give
    db.execute(f"ALTER TABLE niv_nights ADD CONSTRAINT poison_test CHECK (patient_id <> '{poison.patient_id}')")
    try:
        started = worker_started_at(pipeline)
        counted = dead_lettered(pipeline, "niv_night")
        producer = KafkaProducer(bootstrap_servers=get_settings().kafka_bootstrap, acks="all", linger_ms=50)
        for env in envelopes:
            producer.send(get_settings().measurements_topic, key=env.patient_id.encode(),
                          value=env.model_dump_json().encode())
        producer.flush()
        producer.close()

        def stored() -> int:
            return db.execute("SELECT count(*) FROM niv_nights WHERE patient_id LIKE %s",
                              (prefix + "%",)).fetchone()[0]

        wait_until(lambda: stored() == len(envelopes) - 1, 90, "every other record stored")
        row = wait_until(lambda: db.execute("SELECT stage, reason FROM deadletters WHERE upload_id = %s",
                                            (poison.upload_id,)).fetchall(), 30, "the deadletters row")
        assert row == [("worker", "PostgreSQL refused the records: 23514 CheckViolation")]
        assert db.execute("SELECT count(*) FROM niv_nights WHERE patient_id = %s",
                          (poison.patient_id,)).fetchone()[0] == 0
        letters = worker_deadletters(str(poison.upload_id))
        assert [d["reason"] for d in letters] == ["PostgreSQL refused the records: 23514 CheckViolation"]
        assert json.loads(str(letters[0]["payload"]))["upload_id"] == str(poison.upload_id)
        assert dead_lettered(pipeline, "niv_night") == counted + 1  # what the ops alert counts, by kind
    finally:
        db.execute("ALTER TABLE niv_nights DROP CONSTRAINT IF EXISTS poison_test")

    # the same worker goes on: no restart, and the next upload is stored at once
    patient = f"A-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    assert pipeline.upload(token, session_json(patient, 80.0)).status_code == 202
    wait_until(lambda: db.execute("SELECT 1 FROM spirometry_sessions WHERE patient_id = %s", (patient,)).fetchone(),
               20, "the next upload stored")
    assert worker_started_at(pipeline) == started
    assert stored() == len(envelopes) - 1  # nothing doubled by taking the batch again event by event
