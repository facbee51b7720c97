"""Hardened ingest on the real stack: every upload archived, duplicates processed once, bad ones dead-lettered."""

import uuid
from pathlib import Path

import psycopg

from ingest.backfill import backfill
from respmon.core.settings import get_settings
from tests.integration.conftest import Pipeline, dead_letters
from tests.integration.test_walking_skeleton import session_json, wait_until

DATA = Path(__file__).resolve().parents[1] / "data"


def new_patient(pipeline: Pipeline) -> tuple[str, str]:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    return patient, pipeline.device(f"dev-{patient}", patient)


def archive_rows(db: psycopg.Connection, patient: str) -> list[tuple[str, str, int]]:
    return db.execute(
        "SELECT status, format, size_bytes FROM raw_uploads u JOIN devices d USING (device_id)"
        " WHERE d.patient_id = %s ORDER BY received_at", (patient,)).fetchall()


def test_good_and_bad_uploads_are_both_archived(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient, token = new_patient(pipeline)
    good = (DATA / "synthetic" / "O2Ring_20260308223000.csv").read_bytes()
    bad = b"Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder\n00:21:19 Mar 09 2026,9x,61,0,0,0\n"
    assert pipeline.upload(token, good, "text/csv", filename="O2Ring_night.csv").status_code == 202
    rejected = pipeline.upload(token, bad, "text/csv", filename="O2Ring_bad.csv")
    assert rejected.status_code == 422
    assert "line 2" in rejected.json()["reason"]
    rows = archive_rows(db, patient)
    assert [(status, fmt) for status, fmt, _ in rows] == [("published", "o2ring_csv"), ("rejected", "o2ring_csv")]
    assert rows[0][2] == len(good) and rows[1][2] == len(bad)
    body = db.execute("SELECT body FROM raw_uploads WHERE upload_id = %s",
                      (rejected.json()["upload_id"],)).fetchone()[0]
    assert bytes(body) == bad  # the bad upload is kept byte for byte


def test_bad_upload_leaves_a_deadletter_linking_the_archive(pipeline: Pipeline, db: psycopg.Connection) -> None:
    _, token = new_patient(pipeline)
    response = pipeline.upload(token, b'{"patient_id": 12}', filename="session.json")
    assert response.status_code == 422
    upload_id = response.json()["upload_id"]
    row = db.execute("SELECT stage, reason FROM deadletters WHERE upload_id = %s", (upload_id,)).fetchone()
    assert row is not None and row[0] == "ingest" and row[1] == response.json()["reason"]
    messages = dead_letters(get_settings())
    assert any(m["upload_id"] == upload_id and m["reason"] for m in messages)


def test_duplicate_by_bytes_or_idempotency_key_is_processed_once(pipeline: Pipeline,
                                                                   db: psycopg.Connection) -> None:
    patient, token = new_patient(pipeline)
    first = pipeline.upload(token, session_json(patient, 70.0), headers={"Idempotency-Key": "k-1"})
    same_key = pipeline.upload(token, session_json(patient, 70.0), headers={"Idempotency-Key": "k-1"})
    same_bytes = pipeline.upload(token, session_json(patient, 70.0))
    other_body = pipeline.upload(token, session_json(patient, 70.0, "2026-11-21T09:30:00+00:00"),
                                 headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 202
    assert other_body.status_code == 422 and other_body.json()["error"] == "idempotency_key_reused"
    for repeat in (same_key, same_bytes):
        assert repeat.status_code == 200 and repeat.json() == {
            "upload_id": first.json()["upload_id"], "duplicate": True, "status": "published"}
    assert len(archive_rows(db, patient)) == 1
    wait_until(lambda: db.execute("SELECT 1 FROM spirometry_sessions WHERE patient_id = %s",
                                  (patient,)).fetchone(), what="the stored session")
    assert db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s", (patient,)).fetchone() == (1,)


def test_size_and_content_type_limits(pipeline: Pipeline) -> None:
    _, token = new_patient(pipeline)
    huge = pipeline.upload(token, b"x" * (26 * 1024 * 1024), "text/csv")
    assert huge.status_code == 413
    wrong_type = pipeline.upload(token, b"<html></html>", "text/html")
    assert wrong_type.status_code == 415
    assert "text/html" in wrong_type.json()["reason"]


def test_format_override_and_unknown_format(pipeline: Pipeline) -> None:
    _patient, token = new_patient(pipeline)
    csv = (DATA / "synthetic" / "oximetry_generic.csv").read_bytes()
    assert pipeline.upload(token, csv, "text/csv", format="oximetry_csv").json()["format"] == "oximetry_csv"
    assert pipeline.upload(token, csv, "text/csv", format="nonsense").status_code == 422


def test_path_tricks_in_file_names_are_only_hints(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient, token = new_patient(pipeline)
    response = pipeline.upload(token, session_json(patient, 88.0), filename="../../etc/passwd.json")
    assert response.status_code == 202
    stored = db.execute("SELECT filename FROM raw_uploads WHERE upload_id = %s",
                        (response.json()["upload_id"],)).fetchone()
    assert stored == ("passwd.json",)


def test_backfill_of_an_sd_card_copy(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient, token = new_patient(pipeline)
    card = DATA / "resmed" / "airsense10_autoset"
    outcomes, problems = backfill(card, pipeline.ingest_url, token, progress=False)
    assert problems == []
    assert outcomes["accepted"] >= 1
    again, _ = backfill(card, pipeline.ingest_url, token, progress=False)
    assert again["duplicate"] == sum(outcomes.values()) and again["accepted"] == 0
    wait_until(lambda: db.execute("SELECT count(*) FROM niv_nights WHERE patient_id = %s",
                                  (patient,)).fetchone()[0] > 0, what="NIV nights from the card")
