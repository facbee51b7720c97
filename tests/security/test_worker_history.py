"""What a patient's history in the worker may hold, on the real services (issue 13).

A record dated in the future (sent straight to Kafka, past ingest's own check) is dead-lettered naming
its field and never decides "latest": it neither resolves an open alert nor masks a real later session.
A device flooding one patient with thousands of sessions neither stalls the worker's web port nor
makes each event scan them all (the history keeps `history.keep_max_per_kind` rows a kind)."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from kafka import KafkaProducer

from respmon.core.settings import get_settings
from tests.integration.conftest import dead_letters
from tests.integration.test_walking_skeleton import wait_until
from tests.security.conftest import SecuredPipeline

FUTURE = "2099-06-01T09:00:00+00:00"


def session(patient: str, taken_at: str, fvc_pct: float) -> dict[str, object]:
    return {"kind": "spirometry", "patient_id": patient, "taken_at": taken_at, "fvc_l": 1.9, "fvc_pct_pred": fvc_pct,
            "posture": "sitting", "source": "home-spirometer"}


def days_ago(days: float) -> str:
    return (datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)).isoformat()


def produce(secured: SecuredPipeline, records: list[dict[str, object]]) -> list[str]:
    """Put envelopes on the measurements topic as a device with Kafka access could; returns upload ids."""
    producer = KafkaProducer(bootstrap_servers=get_settings().kafka_bootstrap, acks="all", linger_ms=20)
    ids = []
    for record in records:
        upload_id = str(uuid.uuid4())
        envelope = {"envelope_version": 1, "upload_id": upload_id, "device_id": f"kafka-{record['patient_id']}",
                    "received_at": datetime.now(UTC).isoformat(), "record": record}
        producer.send(secured.measurements_topic, key=str(record["patient_id"]).encode(),
                      value=json.dumps(envelope).encode())
        ids.append(upload_id)
    producer.flush()
    producer.close()
    return ids


def upload(secured: SecuredPipeline, token: str, patient: str, taken_at: str, fvc_pct: float) -> None:
    answer = secured.upload(token, json.dumps(session(patient, taken_at, fvc_pct)))
    assert answer.status_code == 202, answer.text


@pytest.mark.timeout(180)
def test_a_session_from_the_future_is_dead_lettered_and_decides_nothing(secured: SecuredPipeline) -> None:
    opened, masked = (f"SECF-{uuid.uuid4().hex[:8]}" for _ in range(2))
    tokens = {p: secured.device(f"dev-{p}", p) for p in (opened, masked)}
    with psycopg.connect(secured.db_url, autocommit=True) as db:
        def alert(patient: str) -> list[tuple[str]]:
            return db.execute("SELECT status FROM alerts WHERE patient_id = %s AND rule_id = 'NS-FVC50'",
                              (patient,)).fetchall()

        def sessions(patient: str) -> int:
            return db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s AND taken_at < now()",
                              (patient,)).fetchone()[0]

        # an open alert, then a normal session from 2099: the alert must stay open
        upload(secured, tokens[opened], opened, days_ago(3), 45.0)
        wait_until(lambda: alert(opened) == [("open",)], 60, "NS-FVC50 opened")
        # and a 2099 session before any real one: the real 38 % session must still raise the alert
        future_ids = produce(secured, [session(opened, FUTURE, 80.0), session(masked, FUTURE, 80.0)])
        upload(secured, tokens[opened], opened, days_ago(2), 38.0)
        upload(secured, tokens[masked], masked, days_ago(1), 38.0)
        wait_until(lambda: sessions(opened) == 2 and sessions(masked) == 1, 60, "the real sessions stored")
        wait_until(lambda: alert(masked) == [("open",)], 30, "NS-FVC50 raised by the real session")

        assert alert(opened) == [("open",)]
        assert db.execute("SELECT count(*) FROM findings WHERE patient_id IN (%s, %s) AND state = 'resolved'",
                          (opened, masked)).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id IN (%s, %s)"
                          " AND taken_at > now() + interval '2 days'", (opened, masked)).fetchone() == (0,)
        rows = db.execute("SELECT upload_id::text, stage, reason FROM deadletters WHERE upload_id = ANY(%s::uuid[])",
                          (future_ids,)).fetchall()
    assert sorted(r[0] for r in rows) == sorted(future_ids)
    assert {(stage, reason.split(" ")[0]) for _, stage, reason in rows} == {("worker", "record.taken_at")}
    assert all("2099" not in reason and "80" not in reason for *_, reason in rows)  # no value in a reason
    topic = get_settings().model_copy(update={"topic_prefix": secured.topic_prefix})
    letters = [d for d in dead_letters(topic) if any(u in str(d.get("payload")) for u in future_ids)]
    assert len(letters) == 2 and all(str(d["reason"]).startswith("record.taken_at ") for d in letters)


@contextmanager
def health_latencies(url: str) -> Iterator[list[float]]:
    """Poll /healthz every 50 ms in a thread while the block runs; yields the answer times (seconds)."""
    times: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                started = time.monotonic()
                ok = client.get(f"{url}/healthz").status_code == 200
                times.append(time.monotonic() - started if ok else float("inf"))
                stop.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield times
    finally:
        stop.set()
        poller.join(timeout=60)


@pytest.mark.timeout(600)
def test_a_patient_with_thousands_of_sessions_does_not_stall_the_worker(secured: SecuredPipeline) -> None:
    """2,000 sessions over 300 days, sent at once: batches of up to 200 events of one patient. Before
    the fix each event scanned the whole history and a batch held the event loop for seconds."""
    patient = f"SECL-{uuid.uuid4().hex[:8]}"
    count = 2000
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=300)
    records = [session(patient, (start + timedelta(minutes=216 * n)).isoformat(), 60.0 + n % 10)
               for n in range(count)]
    with psycopg.connect(secured.db_url, autocommit=True) as db, health_latencies(secured.worker_url) as times:
        produce(secured, records)
        wait_until(lambda: db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s",
                                    (patient,)).fetchone()[0] == count, 540, "every session stored")
    assert len(times) >= 20, f"only {len(times)} health checks answered while the sessions were processed"
    assert max(times) < 1.0, f"/healthz took {max(times):.2f} s (of {len(times)} checks)"
