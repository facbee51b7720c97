"""A topic written by the previous release (JSON envelopes) is still consumed: the same night sent as the
old JSON message and uploaded through ingest (binary envelope) is stored identically."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ingest.parsers import parse_path
from respmon.core.settings import get_settings
from schemas import Envelope, decode_envelope
from tests.integration.conftest import Pipeline
from tests.integration.test_walking_skeleton import wait_until

NIGHT = Path(__file__).parents[1] / "data" / "synthetic" / "O2Ring_20260308223000.csv"
NIGHT_COLUMNS = ("start_at", "source", "interval_s", "on_niv", "valid", "invalid_reason", "recording_min", "vrt_min",
                 "mean_spo2", "min_spo2", "t90_pct", "t90_min", "t88_pct", "t88_min", "longest_le88_min", "odi3",
                 "odi4", "mean_pulse", "night_date")
SIGNAL_COLUMNS = ("start_at", "interval_s", "n_samples", "codec", "spo2", "pulse", "motion", "spo2_min_1m",
                  "spo2_mean_1m", "spo2_max_1m", "pulse_mean_1m")


def _row(db: psycopg.Connection, table: str, columns: tuple[str, ...], patient: str) -> tuple[object, ...] | None:
    return db.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE patient_id = %s", (patient,)).fetchone()


def _send_old_json(patient: str) -> str:
    """The night as the previous release's ingest published it: the envelope's JSON text."""
    record = parse_path(NIGHT, patient_id=patient)[0]
    env = Envelope(upload_id=str(uuid.uuid4()), device_id=f"old-{patient}", received_at=datetime.now(UTC),
                   record=record)
    producer = KafkaProducer(bootstrap_servers=get_settings().kafka_bootstrap, acks="all")
    producer.send(get_settings().measurements_topic, key=patient.encode(), value=env.model_dump_json().encode())
    producer.flush()
    producer.close()
    return env.upload_id


def _published(upload_id: str) -> bytes:
    """The message ingest published for an upload, as it sits on the topic."""
    topic = get_settings().measurements_topic
    consumer = KafkaConsumer(bootstrap_servers=get_settings().kafka_bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, max(0, ends[tp] - 50))
        for batch in consumer.poll(timeout_ms=5000, max_records=1000).values():
            for message in batch:
                if message.value[:1] != b"{" and upload_id.encode() in message.value:
                    return bytes(message.value)
    finally:
        consumer.close()
    raise AssertionError(f"no binary message for upload {upload_id} on {topic}")


def test_a_json_envelope_of_the_previous_release_is_stored_like_a_binary_one(pipeline: Pipeline,
                                                                            db: psycopg.Connection) -> None:
    new, old = f"WB-{uuid.uuid4().hex[:8]}", f"WJ-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{new}", new)
    answer = pipeline.upload(token, NIGHT.read_bytes(), "text/csv", filename=NIGHT.name)
    assert answer.status_code == 202, answer.text
    _send_old_json(old)

    for patient in (new, old):
        wait_until(lambda p=patient: _row(db, "oximetry_signals", ("n_samples",), p), 60, f"{patient}'s night")
    assert _row(db, "oximetry_nights", NIGHT_COLUMNS, new) == _row(db, "oximetry_nights", NIGHT_COLUMNS, old)
    assert _row(db, "oximetry_signals", SIGNAL_COLUMNS, new) == _row(db, "oximetry_signals", SIGNAL_COLUMNS, old)
    rules = "SELECT rule_id, state, severity FROM findings WHERE patient_id = %s ORDER BY rule_id, state"
    assert db.execute(rules, (new,)).fetchall() == db.execute(rules, (old,)).fetchall()

    message = _published(answer.json()["upload_id"])  # ingest now publishes the binary envelope
    assert decode_envelope(message).record.patient_id == new
