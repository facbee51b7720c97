"""`respmon reprocess`: the way back for a dead-lettered upload once its cause is fixed. The raw
bytes come from the archive, the records are stored once however often it runs, and the clinical
alert the upload should have raised is raised."""

import os
import subprocess
import sys
import uuid

import psycopg

from tests.conftest import ROOT
from tests.integration.conftest import Pipeline
from tests.integration.test_walking_skeleton import session_json, wait_until


def reprocess(env: dict[str, str], *upload_ids: str) -> subprocess.CompletedProcess[str]:
    """`respmon reprocess` in a child process; the tests assert on its exit code and output."""
    return subprocess.run([sys.executable, "-m", "respmon", "reprocess", *upload_ids], env={**os.environ, **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_a_worker_dead_letter_is_reprocessed_once_fixed(pipeline: Pipeline, db: psycopg.Connection,
                                                        stack_env: dict[str, str]) -> None:
    patient = f"R-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    db.execute(f"ALTER TABLE spirometry_sessions ADD CONSTRAINT reprocess_test CHECK (patient_id <> '{patient}')")
    try:
        answer = pipeline.upload(token, session_json(patient, 44.0))
        assert answer.status_code == 202, answer.text
        upload_id = answer.json()["upload_id"]
        wait_until(lambda: db.execute("SELECT 1 FROM deadletters WHERE upload_id = %s AND stage = 'worker'",
                                      (upload_id,)).fetchone(), 60, "the worker's dead letter")
    finally:
        db.execute("ALTER TABLE spirometry_sessions DROP CONSTRAINT IF EXISTS reprocess_test")
    assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s", (patient,)).fetchone()[0] == 0

    for _ in range(2):  # twice: an operator who runs it again doubles nothing
        done = reprocess(stack_env, upload_id)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"upload {upload_id}: published 1 record(s) as spirometry_json"
    rule = wait_until(lambda: db.execute("SELECT rule_id FROM alerts WHERE patient_id = %s", (patient,)).fetchall(),
                      60, "the alert the upload should have raised")
    wait_until(lambda: db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s",
                                  (patient,)).fetchone()[0] == 1, 30, "the session stored")
    assert ("NS-FVC50",) in rule  # FVC 44 % predicted: the start-NIV rule of the default rule set
    assert db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s", (patient,)).fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s", (patient,)).fetchone()[0] == len(rule)
    assert db.execute("SELECT status, error FROM raw_uploads WHERE upload_id = %s",
                      (upload_id,)).fetchone() == ("published", None)


def test_an_upload_still_refused_or_unknown_is_reported(pipeline: Pipeline, stack_env: dict[str, str]) -> None:
    patient = f"R-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    refused = pipeline.upload(token, '{"patient_id": "' + patient + '", "taken_at": "the day before"}')
    assert refused.status_code == 422
    upload_id = refused.json()["upload_id"]
    unknown = str(uuid.uuid4())

    done = reprocess(stack_env, upload_id, unknown, "not-an-id")

    assert done.returncode == 2
    assert '"msg": "upload reprocessed"' in done.stderr  # the service's own JSON log lines, ids only
    assert done.stdout.startswith(f"upload {upload_id}: rejected (422): ")
    assert [line for line in done.stderr.splitlines() if not line.startswith("{")] == [
        f"respmon reprocess: no archived upload {unknown}",
        "respmon reprocess: 'not-an-id' is not an upload id (a UUID)"]
