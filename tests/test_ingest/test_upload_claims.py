"""ingest/uploads.py on the real PostgreSQL: the one-statement archive of a new upload keeps every guarantee.

A new upload is inserted, quota-checked and claimed in one statement; these tests pin what that must
still do: the claim is held while the upload is processed (a parallel copy answers "duplicate"), it is
released afterwards on success and on failure, the row stores what the device sent, and the quota and
duplicate answers are unchanged. Plus the device-token memory of ingest/devices.py.
"""

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from ingest.devices import Device, RecentDevices, provision
from ingest.limits import Limits
from ingest.uploads import Upload, UploadResult, _lock_key, handle_upload
from respmon.core import dbpool

pytestmark = pytest.mark.stack


def spirometry(patient: str, fvc_pct: float = 70.0) -> bytes:
    taken = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    return json.dumps({"patient_id": patient, "taken_at": taken, "fvc_l": 1.9, "fvc_pct_pred": fvc_pct,
                       "posture": "sitting", "source": "home-spirometer"}).encode()


class Publisher:
    """Stands in for Kafka; `during` runs inside publish, while the request holds its claim."""

    def __init__(self, during: Callable[[], None] | None = None) -> None:
        self.sent: list[object] = []
        self.during = during

    def publish(self, envelopes: list[object]) -> None:
        if self.during is not None:
            during, self.during = self.during, None
            during()
        self.sent.extend(envelopes)

    def publish_deadletter(self, key: str, value: bytes) -> None:
        self.sent.append(value)


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    with dbpool.new_sync_pool(db_url, max_size=4, autocommit=True) as p:
        p.wait()
        yield p


@pytest.fixture
def device(db: psycopg.Connection) -> Device:
    patient = f"CL-{uuid.uuid4().hex[:8]}"
    provision(db, f"dev-{patient}", patient)
    return Device(f"dev-{patient}", patient)


def lockable(db: psycopg.Connection, upload_id: str) -> bool:
    """Whether another session could claim the upload now (and leaves it unclaimed again)."""
    key = _lock_key(upload_id)
    got = bool(db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])  # type: ignore[index]
    if got:
        db.execute("SELECT pg_advisory_unlock(%s)", (key,))
    return got


def advisory_locks(db: psycopg.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                          " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                          ).fetchone()[0])  # type: ignore[index]


def upload(device: Device, body: bytes, **kw: object) -> Upload:
    fields: dict[str, object] = {"content_type": "application/json", "filename": "s.json", "fmt": None,
                                 "idempotency_key": None, **kw}
    return Upload(device, body, **fields)  # type: ignore[arg-type]


def test_a_new_upload_is_claimed_while_processed_and_released_after(
        pool: ConnectionPool, db: psycopg.Connection, device: Device) -> None:
    body = spirometry(device.patient_id)
    seen: dict[str, object] = {}

    def during() -> None:  # the request is publishing: its row is committed and claimed
        upload_id, status = db.execute("SELECT upload_id::text, status FROM raw_uploads WHERE device_id = %s",
                                       (device.device_id,)).fetchone()  # type: ignore[misc]
        seen["status"], seen["lockable"] = status, lockable(db, upload_id)
        seen["copy"] = handle_upload(pool, Publisher(), upload(device, body))  # type: ignore[arg-type]

    publisher = Publisher(during)
    result = handle_upload(pool, publisher, upload(device, body))  # type: ignore[arg-type]
    assert result.status == 202 and len(publisher.sent) == 1, result.body
    assert seen["status"] == "received" and seen["lockable"] is False
    copy = seen["copy"]
    assert isinstance(copy, UploadResult) and copy.status == 200
    assert copy.body == {"upload_id": result.upload_id, "duplicate": True, "status": "received"}
    assert result.upload_id is not None and lockable(db, result.upload_id)
    assert advisory_locks(db) == 0
    again = handle_upload(pool, Publisher(), upload(device, body))  # type: ignore[arg-type]
    assert again.status == 200 and again.body["status"] == "published"


def test_the_claim_is_released_when_publishing_fails(pool: ConnectionPool, db: psycopg.Connection,
                                                     device: Device) -> None:
    def outage() -> None:
        raise psycopg.OperationalError("kafka or database down")

    body = spirometry(device.patient_id)
    with pytest.raises(psycopg.OperationalError):
        handle_upload(pool, Publisher(outage), upload(device, body))  # type: ignore[arg-type]
    upload_id, status = db.execute("SELECT upload_id::text, status FROM raw_uploads WHERE device_id = %s",
                                   (device.device_id,)).fetchone()  # type: ignore[misc]
    assert status == "received" and lockable(db, upload_id)  # kept, and the retry may process it
    retry = Publisher()
    result = handle_upload(pool, retry, upload(device, body))  # type: ignore[arg-type]
    assert result.status == 202 and result.upload_id == upload_id and len(retry.sent) == 1
    assert advisory_locks(db) == 0


@pytest.mark.parametrize("quota", [0, 10**9])
def test_the_archive_row_holds_what_the_device_sent(pool: ConnectionPool, db: psycopg.Connection, device: Device,
                                                    quota: int) -> None:
    body = spirometry(device.patient_id)
    sent = upload(device, body, content_type="text/plain", filename=None, fmt="spirometry_json",
                  idempotency_key=f"k-{quota}", o2_lpm=2.5)
    result = handle_upload(pool, Publisher(), sent, Limits(rejected_bytes_quota=quota))  # type: ignore[arg-type]
    assert result.status == 202, result.body
    row = db.execute("SELECT device_id, sha256, idempotency_key, content_type, filename, size_bytes, body,"
                     " o2_lpm, status, received_at IS NOT NULL FROM raw_uploads WHERE upload_id = %s",
                     (result.upload_id,)).fetchone()
    assert row == (device.device_id, hashlib.sha256(body).hexdigest(), f"k-{quota}", "text/plain", None,
                   len(body), body, 2.5, "published", True)


def test_over_quota_a_copy_is_a_duplicate_garbage_is_not_kept_good_data_is(
        pool: ConnectionPool, db: psycopg.Connection, device: Device) -> None:
    limits = Limits(rejected_bytes_quota=10)
    good = spirometry(device.patient_id)
    first = handle_upload(pool, Publisher(), upload(device, good), limits)  # type: ignore[arg-type]
    bad = handle_upload(pool, Publisher(), upload(device, b'{"nonsense": 1}'), limits)  # type: ignore[arg-type]
    assert first.status == 202 and bad.status == 422 and bad.outcome == "rejected"  # archived: quota not reached
    copy = handle_upload(pool, Publisher(), upload(device, good), limits)  # type: ignore[arg-type]
    assert copy.status == 200 and copy.body["status"] == "published"
    garbage = handle_upload(pool, Publisher(), upload(device, b'{"other": 2}'), limits)  # type: ignore[arg-type]
    assert garbage.outcome == "quota_exceeded" and garbage.body["archived"] is False
    newer = spirometry(device.patient_id, 65.0)
    kept = handle_upload(pool, Publisher(), upload(device, newer), limits)  # type: ignore[arg-type]
    assert kept.status == 202
    count = db.execute("SELECT count(*) FROM raw_uploads WHERE device_id = %s", (device.device_id,)).fetchone()
    assert count == (3,) and advisory_locks(db) == 0


def test_recent_devices_forget_after_their_time_and_keep_only_accepted_tokens() -> None:
    dev = Device("d", "p")
    recent = RecentDevices(ttl_s=60)
    assert recent.get("tok") is None
    recent.put("tok", dev)
    assert recent.get("tok") == dev and recent.get("other") is None
    stale = RecentDevices(ttl_s=-1)  # every entry already past its time: checked again
    stale.put("tok", dev)
    assert stale.get("tok") is None
    full = RecentDevices(ttl_s=60, max_entries=2)
    for token in ("a", "b", "c"):
        full.put(token, dev)
    assert full.get("c") == dev and len(full._seen) <= 2
