"""Parallel copies of one upload on the real stack: exactly one is processed and published (issue 13).

Each burst releases its threads together (threading.Barrier) against the running ingest process, whose
thread pool handles them truly in parallel. Before the claim, 16 identical uploads got up to three 202
answers, and 8 uploads with one Idempotency-Key and different bodies published two bodies under one id.
"""

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from kafka import KafkaConsumer

from respmon.core.settings import get_settings
from schemas import decode_envelope
from tests.integration.conftest import Pipeline
from tests.integration.test_walking_skeleton import session_json

pytestmark = pytest.mark.timeout(300)

RUNS = 10


def burst(send: Callable[[int], httpx.Response], size: int) -> list[httpx.Response]:
    """`size` calls of `send(index)`, released at the same instant; answers in index order."""
    barrier = threading.Barrier(size)
    answers: list[httpx.Response | None] = [None] * size

    def worker(index: int) -> None:
        barrier.wait()
        answers[index] = send(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(a is not None for a in answers), "a request did not finish"
    return answers  # type: ignore[return-value]


def envelopes(values: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The upload envelopes among a topic's messages (binary, `schemas/wire.py`), as JSON-like dicts; the
    care-state changes and ticks other tests publish on the same topic are not envelopes and are passed over."""
    for value in values:
        try:
            yield decode_envelope(value).model_dump(mode="json")
        except ValueError:  # pydantic's ValidationError and the wire's WireError are ValueErrors
            continue


def published(upload_ids: set[str]) -> list[dict[str, Any]]:
    """Envelopes on the measurements topic carrying one of these upload ids."""
    settings = get_settings()
    consumer = KafkaConsumer(settings.measurements_topic, bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        return [env for env in envelopes(m.value for m in consumer) if env.get("upload_id") in upload_ids]
    finally:
        consumer.close()


def archived(db: psycopg.Connection, device_id: str) -> list[tuple[str, str]]:
    return [(str(u), s) for u, s in db.execute(
        "SELECT upload_id, status FROM raw_uploads WHERE device_id = %s", (device_id,)).fetchall()]


def test_parallel_identical_uploads_are_processed_once(pipeline: Pipeline, db: psycopg.Connection) -> None:
    ids: set[str] = set()
    for run in range(RUNS):
        patient = f"RACE-{uuid.uuid4().hex[:8]}"
        token = pipeline.device(f"dev-{patient}", patient)
        body = session_json(patient, 70.0 + run)
        answers = burst(lambda _, t=token, b=body: pipeline.upload(t, b), 16)  # type: ignore[misc]
        codes = sorted(a.status_code for a in answers)
        assert codes == [200] * 15 + [202], f"run {run}: {codes}"
        rows = archived(db, f"dev-{patient}")
        assert len(rows) == 1 and rows[0][1] == "published", rows
        assert {a.json()["upload_id"] for a in answers} == {rows[0][0]}
        assert all(a.json()["duplicate"] for a in answers if a.status_code == 200)
        ids.add(rows[0][0])
    envelopes = published(ids)
    assert sorted(e["upload_id"] for e in envelopes) == sorted(ids)  # each upload published exactly once


def test_one_idempotency_key_with_different_bodies_stores_one_body(pipeline: Pipeline,
                                                                    db: psycopg.Connection) -> None:
    winners: dict[str, str] = {}
    for run in range(RUNS):
        patient = f"KEY-{uuid.uuid4().hex[:8]}"
        token = pipeline.device(f"dev-{patient}", patient)
        # eight bodies, the first sent twice: its copy is a duplicate when it wins, refused otherwise
        bodies = [session_json(patient, 60.0, f"2026-11-{day:02d}T09:30:00+00:00") for day in (1, 1, *range(2, 8))]
        answers = burst(lambda i, t=token, b=bodies: pipeline.upload(  # type: ignore[misc]
            t, b[i], headers={"Idempotency-Key": "same-key"}), 8)
        won = [i for i, a in enumerate(answers) if a.status_code == 202]
        assert len(won) == 1, f"run {run}: {[a.status_code for a in answers]}"
        for i, answer in enumerate(answers):
            if i == won[0]:
                continue
            if bodies[i] == bodies[won[0]]:
                assert answer.status_code == 200 and answer.json()["duplicate"] is True, answer.text
            else:
                assert answer.status_code == 422, answer.text
                assert answer.json()["error"] == "idempotency_key_reused"
                assert answer.json()["field"] == "Idempotency-Key"
        rows = archived(db, f"dev-{patient}")
        assert len(rows) == 1 and rows[0] == (answers[won[0]].json()["upload_id"], "published"), rows
        stored = db.execute("SELECT body FROM raw_uploads WHERE upload_id = %s", (rows[0][0],)).fetchone()
        assert stored is not None and bytes(stored[0]) == bodies[won[0]].encode()
        winners[rows[0][0]] = json.loads(bodies[won[0]])["taken_at"]
    envelopes = published(set(winners))
    assert len(envelopes) == RUNS  # one body per upload id, the archived one
    for env in envelopes:
        assert env["record"]["taken_at"].replace("Z", "+00:00") == winners[env["upload_id"]]


def test_an_upload_left_received_is_processed_by_the_retry_unless_in_process(pipeline: Pipeline,
                                                                              db: psycopg.Connection) -> None:
    """After a real 503 the archive row stays `received` with nobody processing it: the device's retry
    must process it. While a request holds its claim, the retry answers duplicate instead."""
    patient = f"STUCK-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    body = session_json(patient, 65.0)
    upload_id = str(uuid.uuid4())
    db.execute("INSERT INTO raw_uploads (upload_id, device_id, received_at, sha256, content_type, size_bytes, body)"
               " VALUES (%s, %s, now(), %s, 'application/json', %s, %s)",
               (upload_id, f"dev-{patient}", hashlib.sha256(body.encode()).hexdigest(), len(body), body.encode()))
    from ingest.uploads import _lock_key  # the claim's key: the lock a request processing it holds

    with psycopg.connect(pipeline.db_url, autocommit=True) as holder:  # a request processing it right now
        holder.execute("SELECT pg_advisory_lock(%s)", (_lock_key(upload_id),))
        busy = pipeline.upload(token, body)
        assert busy.status_code == 200 and busy.json() == {"upload_id": upload_id, "duplicate": True,
                                                          "status": "received"}
    retry = pipeline.upload(token, body)  # the holder's session ended: nobody processes it any more
    assert retry.status_code == 202 and retry.json()["upload_id"] == upload_id, retry.text
    assert archived(db, f"dev-{patient}") == [(upload_id, "published")]
