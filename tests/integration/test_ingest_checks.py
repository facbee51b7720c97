"""Ingest's generic checks on the real stack (issue 13): record dates in range for every format, a parser
failure is a 422 and never a permanent 503, an Idempotency-Key names one payload, records per upload and
archived bytes of rejected uploads are limited, and device-supplied text reaches the logs only escaped."""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ingest.devices import Device
from ingest.logsafe import device_text
from ingest.uploads import Upload, handle_upload
from respmon.core import dbpool
from respmon.launcher import service
from tests.conftest import free_port
from tests.integration.conftest import Pipeline, PipelineClient
from tests.integration.test_walking_skeleton import session_json, wait_until

pytestmark = pytest.mark.timeout(240)

RECORD_LIMIT = 20
QUOTA = 3000


def new_device(client: PipelineClient, prefix: str) -> tuple[str, str, str]:
    """(patient, device id, token) of a freshly provisioned device."""
    patient = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return patient, f"dev-{patient}", client.device(f"dev-{patient}", patient)


def fhir_bundle(patient: str, when: str, extra_code: str | None = None, niv: bool = False) -> str:
    """An FVC observation (or with `niv` a night's NIV usage) for `patient` at `when`, and optionally one
    of a LOINC code respmon does not read."""
    def observation(system: str, code: str, value: float, unit: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": system, "code": code}]},
                "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when,
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}
    first = observation("urn:respmon:code", "usage_hours", 6.5, "h") if niv else \
        observation("http://loinc.org", "19870-5", 2.85, "L")
    entries = [{"resource": first}]
    if extra_code:
        entries.append({"resource": observation("http://loinc.org", extra_code, 37.0, "Cel")})
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


# ---- 1. record dates ----------------------------------------------------------------------------

def dated_uploads(patient: str) -> dict[str, tuple[str, str, str | None, str]]:
    """Per format: (body, content type, format, field at fault); each holds one time out of range."""
    return {
        "spirometry 2099": (session_json(patient, 70.0, "2099-01-01T09:00:00+00:00"), "application/json", None,
                            "taken_at"),
        "spirometry 9999 -12:00": (session_json(patient, 70.0, "9999-12-31T23:59:59-12:00"), "application/json",
                                   None, "taken_at"),
        "spirometry csv 2099": (f"patient_id,taken_at,fvc_pct_pred\n{patient},2099-06-01T09:00:00Z,70\n", "text/csv",
                                "spirometry_csv", "taken_at"),
        "niv csv 2099": (f"patient_id,night_date,usage_hours\n{patient},2026-11-01,6.5\n{patient},2099-03-01,7\n",
                         "text/csv", "niv_csv", "night_date"),
        "oximetry 1985": ("timestamp,spo2,pulse\n" + "".join(f"1985-03-11T23:30:{s:02d}+00:00,96,70\n"
                                                             for s in range(30)),
                          "text/csv", "oximetry_csv", "start"),
        "alsfrs 2099": (json.dumps({"patient_id": patient, "taken_at": "2099-01-01T09:00:00Z", "items": [4] * 12}),
                        "application/json", "alsfrs_json", "taken_at"),
    }


def test_record_times_out_of_range_are_refused_for_every_format(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient, _, token = new_device(pipeline, "DATE")
    for name, (body, kind, fmt, field) in dated_uploads(patient).items():
        answer = pipeline.upload(token, body, kind, format=fmt) if fmt else pipeline.upload(token, body, kind)
        assert answer.status_code == 422, f"{name}: {answer.status_code} {answer.text}"
        assert field in answer.json()["reason"], f"{name}: {answer.json()}"
        row = db.execute("SELECT status FROM raw_uploads WHERE upload_id = %s",
                         (answer.json()["upload_id"],)).fetchone()
        assert row == ("rejected",), name
    recent = (datetime.now(UTC) + timedelta(hours=20)).isoformat()  # within the default day of clock skew
    assert pipeline.upload(token, session_json(patient, 70.0, recent)).status_code == 202


def test_reprocess_applies_the_same_date_check(pipeline: Pipeline, db: psycopg.Connection,
                                               stack_env: dict[str, str]) -> None:
    """An upload archived before the check (published with a 2099 date) is refused when sent again."""
    import hashlib

    from tests.integration.test_reprocess import reprocess

    patient, device_id, _ = new_device(pipeline, "REDATE")
    body = session_json(patient, 70.0, "2099-01-01T09:00:00+00:00").encode()
    upload_id = str(uuid.uuid4())
    db.execute("INSERT INTO raw_uploads (upload_id, device_id, received_at, sha256, content_type, size_bytes, body,"
               " format, status) VALUES (%s, %s, now(), %s, 'application/json', %s, %s, 'spirometry_json',"
               " 'published')", (upload_id, device_id, hashlib.sha256(body).hexdigest(), len(body), body))
    done = reprocess(stack_env, upload_id)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith(f"upload {upload_id}: rejected (422): ") and "taken_at" in done.stdout


# ---- 4. a parser failure is a 422, never a permanent 503 ---------------------------------------

def test_a_fhir_observation_dated_year_one_is_refused_not_retried_forever(pipeline: Pipeline) -> None:
    patient, _, token = new_device(pipeline, "YEAR1")
    # a NIV night is dated noon to noon: 12 h before year 1 overflowed in the parser (503 on every retry)
    bundle = fhir_bundle(patient, "0001-01-01T00:00:00Z", niv=True)
    first = pipeline.upload(token, bundle, "application/fhir+json")
    assert first.status_code == 422, first.text
    spot = pipeline.upload(token, fhir_bundle(patient, "0001-01-01T00:00:00Z"), "application/fhir+json")
    assert spot.status_code == 422, spot.text  # was 202: refused by ingest's date check or the parser's own
    assert any(name in spot.json()["reason"] for name in ("taken_at", "effectiveDateTime")), spot.text
    again = pipeline.upload(token, bundle, "application/fhir+json")  # the device's retry
    assert again.status_code == 200 and again.json()["status"] == "rejected", again.text


class RecordingPublisher:
    """Stands in for Kafka in the in-process test: keeps what would be sent."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def publish(self, envelopes: list[object]) -> None:
        self.sent.extend(envelopes)

    def publish_deadletter(self, key: str, value: bytes) -> None:
        self.sent.append(value)


def test_any_unexpected_parser_exception_is_a_422_naming_its_class(
        db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever a parser raises (here a KeyError whose text quotes the file) is the file's problem, not an
    outage: 422 with the exception class, logged at error level with the upload id, never its text."""
    import ingest.uploads

    secret = f"PIDSECRET{uuid.uuid4().hex[:6]}"

    def broken(*args: object, **kwargs: object) -> object:
        raise KeyError(f"{secret} 41.37")

    monkeypatch.setattr(ingest.uploads, "parse_bytes_with_notes", broken)
    patient = f"BUG-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        from ingest.devices import provision

        provision(conn, f"dev-{patient}", patient)
    upload = Upload(Device(f"dev-{patient}", patient), session_json(patient, 70.0).encode(), "application/json",
                    "session.json", None, None)
    publisher = RecordingPublisher()
    with dbpool.new_sync_pool(db_url, autocommit=True) as pool, caplog.at_level("INFO", "respmon.ingest"):
        pool.wait()
        result = handle_upload(pool, publisher, upload)  # type: ignore[arg-type]
        again = handle_upload(pool, publisher, upload)  # type: ignore[arg-type]
    assert result.status == 422 and "KeyError" in str(result.body["reason"]), result.body
    assert secret not in json.dumps(result.body)
    assert again.status == 200 and again.body["status"] == "rejected"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors and getattr(errors[0], "upload_id", None) == result.upload_id
    assert getattr(errors[0], "error", None) == "KeyError"
    assert not any(secret in r.getMessage() or secret in json.dumps(vars(r), default=str) for r in caplog.records)


# ---- 3. an Idempotency-Key names one payload -------------------------------------------------------

def test_an_idempotency_key_reused_with_another_body_is_refused_and_logged(pipeline: Pipeline,
                                                                           db: psycopg.Connection) -> None:
    patient, device_id, token = new_device(pipeline, "REKEY")
    key = f"KEYMARK{uuid.uuid4().hex}"
    first = pipeline.upload(token, session_json(patient, 70.0), headers={"Idempotency-Key": key})
    assert first.status_code == 202
    other = pipeline.upload(token, session_json(patient, 71.0, "2026-11-21T09:30:00+00:00"),
                            headers={"Idempotency-Key": key})
    assert other.status_code == 422, other.text
    assert other.json()["error"] == "idempotency_key_reused" and other.json()["field"] == "Idempotency-Key"
    assert "different payload" in other.json()["reason"]
    same = pipeline.upload(token, session_json(patient, 70.0), headers={"Idempotency-Key": key})
    assert same.status_code == 200 and same.json()["duplicate"] is True
    assert db.execute("SELECT count(*) FROM raw_uploads WHERE device_id = %s", (device_id,)).fetchone() == (1,)
    log = pipeline.log_dir / "ingest.log"
    line = wait_until(lambda: next((entry for entry in log_lines(log) if entry["msg"].startswith("idempotency key")
                                    and entry.get("device_id") == device_id), None), 10, "the log line")
    assert line["upload_id"] == first.json()["upload_id"]  # type: ignore[index]
    assert key not in log.read_text()


# ---- 6. device-supplied text in the logs -------------------------------------------------------------

def test_device_supplied_text_is_logged_escaped_and_cut_once_per_upload(pipeline: Pipeline) -> None:
    patient, _, token = new_device(pipeline, "LOGS")
    marker = f"PIDPLANT{uuid.uuid4().hex[:8]}"
    name = "\u03a9" + "a" * 70 + f"{marker} fvc=41.37.json"
    answer = pipeline.upload(token, fhir_bundle(patient, "2026-11-03T10:00:00+01:00", "8310-5"),
                             "application/fhir+json", headers={"Idempotency-Key": marker}, filename=name)
    assert answer.status_code == 202, answer.text
    upload_id = answer.json()["upload_id"]
    log = pipeline.log_dir / "ingest.log"
    ours: list[dict[str, Any]] = wait_until(  # type: ignore[assignment]
        lambda: [e for e in log_lines(log) if e.get("upload_id") == upload_id], 10, "the upload's line")
    assert [e["msg"] for e in ours] == ["upload published"]
    assert ours[0]["file_name"] == device_text(name)
    assert ours[0]["file_name"].startswith("\\u03a9aaa") and len(ours[0]["file_name"]) <= 64
    assert marker not in log.read_text()


# ---- 5. limits: records per upload, rejected bytes per device and day --------------------------

@dataclass
class LimitedIngest(PipelineClient):
    ingest_url: str
    db_url: str


@pytest.fixture(scope="module")
def limited(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedIngest]:
    """An ingest process of its own with small limits (no worker needed: nothing here reaches storage)."""
    port = free_port()
    env = {**stack_env, "RESPMON_INGEST_PORT": str(port), "RESPMON_MAX_RECORDS_PER_UPLOAD": str(RECORD_LIMIT),
           "RESPMON_REJECTED_BYTES_QUOTA": str(QUOTA), "RESPMON_LOG_LEVEL": "INFO"}
    url = f"http://127.0.0.1:{port}"
    with service(["ingest"], env, f"{url}/healthz", tmp_path_factory.mktemp("limited") / "ingest.log"):
        yield LimitedIngest(url, stack_env["RESPMON_DATABASE_URL"])


def niv_nights(patient: str, count: int) -> str:
    start = datetime(2026, 1, 1)
    rows = "".join(f"{patient},{(start + timedelta(days=i)).date()},6.5\n" for i in range(count))
    return "patient_id,night_date,usage_hours\n" + rows


def test_records_per_upload_are_limited(limited: LimitedIngest) -> None:
    patient, _, token = new_device(limited, "MANY")
    too_many = limited.upload(token, niv_nights(patient, RECORD_LIMIT + 1), "text/csv", format="niv_csv")
    assert too_many.status_code == 422, too_many.text
    assert f"{RECORD_LIMIT + 1} records" in too_many.json()["reason"]
    assert f"at most {RECORD_LIMIT}" in too_many.json()["reason"]
    assert limited.upload(token, niv_nights(patient, RECORD_LIMIT), "text/csv", format="niv_csv").status_code == 202


def quota_refusals(url: str) -> float:
    page = httpx.get(f"{url}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(page) if f.name == "respmon_ingest_quota_refusals"
               for s in f.samples if s.name.endswith("_total"))


def test_rejected_bytes_are_limited_per_device_and_day(limited: LimitedIngest, db: psycopg.Connection) -> None:
    patient, device_id, token = new_device(limited, "FLOOD")
    before = quota_refusals(limited.ingest_url)
    answers = [limited.upload(token, f"{i}".encode() + b"x" * 999, "text/csv") for i in range(3)]
    assert [a.status_code for a in answers] == [422] * 3  # 3000 bytes of garbage archived: the quota
    refused = limited.upload(token, b"3" + b"x" * 999, "text/csv")
    assert refused.status_code == 422, refused.text  # refused as before, with its reason, but not kept
    assert refused.json()["archived"] is False and "RESPMON_REJECTED_BYTES_QUOTA" in refused.json()["note"]
    assert "unknown file format" in refused.json()["reason"]
    good = limited.upload(token, session_json(patient, 70.0))  # good data still goes through, and is kept
    assert good.status_code == 202, good.text
    repeat = limited.upload(token, b"0" + b"x" * 999, "text/csv")  # already archived: still a duplicate
    assert repeat.status_code == 200 and repeat.json()["status"] == "rejected"
    assert db.execute("SELECT count(*), sum(size_bytes) FROM raw_uploads WHERE device_id = %s",
                      (device_id,)).fetchone() == (4, 3000 + len(session_json(patient, 70.0).encode()))
    assert quota_refusals(limited.ingest_url) == before + 1
    other_patient, _, other = new_device(limited, "CALM")  # the quota is per device
    assert limited.upload(other, session_json(other_patient, 70.0)).status_code == 202


def test_an_upload_declares_its_oxygen_flow(pipeline: Pipeline, db: psycopg.Connection) -> None:
    """`?o2_lpm=` marks a night recorded on home oxygen when the file cannot say it (issue 12): the night
    counts (on oxygen, never dropped), home oxygen without NIV is flagged, and reprocessing keeps it."""
    patient, _, token = new_device(pipeline, "O2")
    night = (Path(__file__).resolve().parents[1] / "data" / "synthetic" / "O2Ring_20260308223000.csv").read_bytes()
    refused = pipeline.upload(token, night, "text/csv", filename="O2Ring_night.csv", o2_lpm="99")
    assert refused.status_code == 422 and "o2_lpm" in refused.text
    accepted = pipeline.upload(token, night, "text/csv", filename="O2Ring_night.csv", o2_lpm="2")
    assert accepted.status_code == 202, accepted.text
    assert db.execute("SELECT o2_lpm FROM raw_uploads WHERE upload_id = %s",
                      (accepted.json()["upload_id"],)).fetchone() == (2.0,)
    wait_until(lambda: db.execute("SELECT count(*) FROM findings WHERE patient_id = %s AND rule_id = 'NS-O2NONIV'"
                                  " AND state = 'open'", (patient,)).fetchone()[0] == 1, what="NS-O2NONIV")
