"""One upload's journey inside ingest: archive raw, parse, check ownership, publish, record the outcome.

Order matters: the raw bytes are committed to `raw_uploads` before anything can fail, so even an
upload that cannot be parsed is kept; an upload is answered "accepted" only after Kafka acknowledged it.
"""

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg_pool import ConnectionPool

from ingest.devices import Device
from ingest.parsers import ParseError, PatientMismatch, detect_format, parse_bytes
from ingest.publisher import Publisher
from schemas import Envelope

log = logging.getLogger("respmon.ingest")


@dataclass
class UploadResult:
    """What the HTTP layer answers: `status` is an HTTP status code."""

    status: int
    upload_id: str | None
    outcome: str
    fmt: str = "unknown"
    body: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Upload:
    device: Device
    body: bytes
    content_type: str | None
    filename: str | None
    fmt: str | None
    idempotency_key: str | None


def handle_upload(pool: ConnectionPool, publisher: Publisher, upload: Upload) -> UploadResult:
    sha = hashlib.sha256(upload.body).hexdigest()
    upload_id, previous_status = _archive(pool, upload, sha)
    if previous_status in ("published", "rejected"):
        log.info("duplicate upload", extra={"upload_id": upload_id, "device_id": upload.device.device_id})
        return UploadResult(200, upload_id, "duplicate", body={"upload_id": upload_id, "duplicate": True,
                                                                "status": previous_status})
    return process(pool, publisher, upload, upload_id)


def process(pool: ConnectionPool, publisher: Publisher, upload: Upload, upload_id: str) -> UploadResult:
    """Parse an archived upload, check whose it is, publish its records and record the outcome."""
    fmt = upload.fmt or "unknown"
    try:
        fmt = upload.fmt or detect_format(upload.filename or "upload", upload.body)
        records = parse_bytes(upload.body, upload.filename or "upload", fmt=fmt,
                              patient_id=upload.device.patient_id)
    except PatientMismatch as error:
        return _reject(pool, publisher, upload, upload_id, fmt, 403, "forbidden", str(error))
    except ParseError as error:
        return _reject(pool, publisher, upload, upload_id, fmt, 422, "rejected", str(error))
    foreign = [r for r in records if r.patient_id != upload.device.patient_id]
    if foreign:
        return _reject(pool, publisher, upload, upload_id, fmt, 403, "forbidden",
                       "device is not registered for the patient named in the upload")
    received_at = datetime.now(UTC)
    envelopes = [
        Envelope(upload_id=upload_id, device_id=upload.device.device_id, received_at=received_at, record=r)
        for r in records
    ]
    publisher.publish(envelopes)
    with pool.connection() as conn:
        conn.execute(
            "UPDATE raw_uploads SET status = 'published', format = %s, record_count = %s, error = NULL"
            " WHERE upload_id = %s",
            (fmt, len(records), upload_id),
        )
    log.info("upload published", extra={"upload_id": upload_id, "device_id": upload.device.device_id,
                                         "format": fmt, "records": len(records)})
    kinds = sorted({r.kind for r in records})
    return UploadResult(202, upload_id, "accepted", fmt,
                        {"upload_id": upload_id, "duplicate": False, "format": fmt, "records": len(records),
                         "kinds": kinds})


def _archive(pool: ConnectionPool, upload: Upload, sha: str) -> tuple[str, str | None]:
    """Store the raw bytes once per (device, sha256) or (device, Idempotency-Key).

    Returns the upload id and, when this upload was seen before, the earlier status.
    """
    with pool.connection() as conn:
        existing = conn.execute(
            "SELECT upload_id, status FROM raw_uploads WHERE device_id = %s"
            " AND (sha256 = %s OR (idempotency_key IS NOT NULL AND idempotency_key = %s))"
            " ORDER BY received_at LIMIT 1",
            (upload.device.device_id, sha, upload.idempotency_key),
        ).fetchone()
        if existing:
            return str(existing[0]), existing[1]
        upload_id = str(uuid.uuid4())
        inserted = conn.execute(
            "INSERT INTO raw_uploads (upload_id, device_id, received_at, sha256, idempotency_key,"
            " content_type, filename, size_bytes, body, format)"
            " VALUES (%s, %s, now(), %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING upload_id",
            (upload_id, upload.device.device_id, sha, upload.idempotency_key, upload.content_type,
             upload.filename, len(upload.body), upload.body, upload.fmt),
        ).fetchone()
        if inserted:
            return upload_id, None
    return _archive(pool, upload, sha)  # lost a race with an identical upload: answer as its duplicate


def _reject(pool: ConnectionPool, publisher: Publisher, upload: Upload, upload_id: str, fmt: str,
            status: int, outcome: str, reason: str) -> UploadResult:
    """Keep the archive row, mark it rejected, and leave a dead-letter record pointing at it."""
    with pool.connection() as conn:
        conn.execute("UPDATE raw_uploads SET status = 'rejected', format = %s, error = %s WHERE upload_id = %s",
                     (fmt, reason, upload_id))
        conn.execute("INSERT INTO deadletters (stage, upload_id, reason) VALUES ('ingest', %s, %s)",
                     (upload_id, reason))
    publisher.publish_deadletter(upload.device.device_id, json.dumps(
        {"stage": "ingest", "upload_id": upload_id, "device_id": upload.device.device_id,
         "format": fmt, "reason": reason}).encode())
    # The reason stays out of the log: it can quote the upload (an unknown JSON key, a patient id the
    # file names); it is kept with the archive row (raw_uploads.error, deadletters) under this upload id.
    log.warning("upload rejected", extra={"upload_id": upload_id, "device_id": upload.device.device_id,
                                          "format": fmt, "status": status, "outcome": outcome})
    return UploadResult(status, upload_id, outcome, fmt,
                        {"upload_id": upload_id, "error": outcome, "reason": reason})
