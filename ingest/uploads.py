"""One upload's journey inside ingest: archive raw, claim, parse, check, publish, record the outcome.

Order matters: the raw bytes are committed to `raw_uploads` before anything can fail, so even an
upload that cannot be parsed is kept; an upload is answered "accepted" only after Kafka acknowledged it.

One upload id is processed by one request at a time: the request holds a PostgreSQL advisory lock on it
(`claimed`) while it parses and publishes, and the others answer "duplicate" at once. Parallel copies
of one upload used to be processed (and published) by every request that found it still `received`.
The lock lives with its connection, so a request that fails (503) or an ingest process that dies
releases it at once, and the device's retry processes the upload.
"""

import hashlib
import json
import logging
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import LiteralString

import psycopg
from kafka.errors import KafkaError
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

from ingest.devices import REJECTED_BYTES_TODAY, Device
from ingest.limits import Limits, check_records
from ingest.logsafe import device_text
from ingest.parsers import ParseError, PatientMismatch, detect_format, parse_bytes_with_notes
from ingest.publisher import Publisher
from schemas import Envelope

log = logging.getLogger("respmon.ingest")

UNAVAILABLE: tuple[type[Exception], ...] = (psycopg.Error, KafkaError)
"""PostgreSQL or Kafka failed (pool timeouts are psycopg errors): the only causes of a 503."""

DEFAULTS = Limits()


@dataclass
class UploadResult:
    """What the HTTP layer answers: `status` is an HTTP status code."""

    status: int
    upload_id: str | None
    outcome: str
    fmt: str = "unknown"
    body: dict[str, object] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Upload:
    device: Device
    body: bytes
    content_type: str | None
    filename: str | None
    fmt: str | None
    idempotency_key: str | None
    o2_lpm: float | None = None
    """Oxygen flow the device declared for the recording (`?o2_lpm=`), for files that do not say it."""


@dataclass(frozen=True)
class Archived:
    """The archive row an upload maps to; `status` None when this request archived it, `claimed` when this
    request also holds its processing claim (taken in the statement that inserted it)."""

    upload_id: str
    status: str | None
    claimed: bool = False


@dataclass(frozen=True)
class Refusal:
    """Why an archived upload is not published (`field` names the record field when one is at fault)."""

    fmt: str
    status: int
    outcome: str
    reason: str
    field: str | None = None


@dataclass(frozen=True)
class Parsed:
    fmt: str
    envelopes: list[Envelope]
    notes: int


def handle_upload(pool: ConnectionPool, publisher: Publisher, upload: Upload,
                  limits: Limits = DEFAULTS) -> UploadResult:
    """Archive, then process the upload unless it was seen before or another request is processing it."""
    sha = hashlib.sha256(upload.body).hexdigest()
    with pool.connection() as conn:
        archived = _archive(conn, upload, sha, limits)
        if isinstance(archived, UploadResult):
            return archived
        if archived.claimed:  # archived by this request, which holds its claim since before it was visible
            try:
                return process(conn, publisher, upload, archived.upload_id, limits)
            finally:
                _unlock(conn, _lock_key(archived.upload_id))
        if archived.status in ("published", "rejected"):
            return _duplicate(upload, archived.upload_id, archived.status)
        with _claim(conn, archived.upload_id) as held:
            if held is None:  # another request is processing this upload id right now
                return _duplicate(upload, archived.upload_id, "received")
            status = _status(held, archived.upload_id)  # after the claim, in a statement (a snapshot) of its own
            if status != "received":  # processed between our look-up and our claim
                return _duplicate(upload, archived.upload_id, status)
            return process(held, publisher, upload, archived.upload_id, limits)


@contextmanager
def claimed(pool: ConnectionPool, upload_id: str) -> Iterator[psycopg.Connection | None]:
    """A connection holding the processing claim on `upload_id` for the block, or None if another holds it.

    A session-level advisory lock: released at the end of the block, or by the server when the
    connection dies, so an upload is never left claimed by nobody.
    """
    with pool.connection() as conn, _claim(conn, upload_id) as held:
        yield held


@contextmanager
def _claim(conn: psycopg.Connection, upload_id: str) -> Iterator[psycopg.Connection | None]:
    """`conn` holding the claim on `upload_id` for the block (see `claimed`), or None if another holds it."""
    key = _lock_key(upload_id)
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if not (row and row[0]):
        yield None
        return
    try:
        yield conn
    finally:
        _unlock(conn, key)


def _lock_key(upload_id: str) -> int:
    """A bigint advisory-lock key from the upload id (64 random bits of a UUID4)."""
    return int.from_bytes(uuid.UUID(upload_id).bytes[:8], "big", signed=True)


def _unlock(conn: psycopg.Connection, key: int) -> None:
    try:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except psycopg.Error:  # the session is gone or unusable: closing it ends the lock; the pool drops it
        conn.close()


def _status(conn: psycopg.Connection, upload_id: str) -> str:
    row = conn.execute("SELECT status FROM raw_uploads WHERE upload_id = %s", (upload_id,)).fetchone()
    return str(row[0]) if row else "missing"


def process(conn: psycopg.Connection, publisher: Publisher, upload: Upload, upload_id: str,
            limits: Limits = DEFAULTS) -> UploadResult:
    """Parse an archived upload, check whose it is and its limits, publish its records, record the outcome.

    The caller holds the claim on `upload_id` through `conn` (`claimed`); everything is written through it.
    """
    read = _read(upload, upload_id, limits)
    if isinstance(read, Refusal):
        return _reject(conn, publisher, upload, upload_id, read)
    publisher.publish(read.envelopes)
    conn.execute(
        "UPDATE raw_uploads SET status = 'published', format = %s, record_count = %s, error = NULL"
        " WHERE upload_id = %s",
        (read.fmt, len(read.envelopes), upload_id),
    )
    kinds = Counter(env.record.kind for env in read.envelopes)
    log.info("upload published", extra={**_ids(upload, upload_id), "format": read.fmt,
                                        "records": len(read.envelopes), "kinds": dict(kinds), "notes": read.notes})
    return UploadResult(202, upload_id, "accepted", read.fmt,
                        {"upload_id": upload_id, "duplicate": False, "format": read.fmt,
                         "records": len(read.envelopes), "kinds": sorted(kinds)})


def _read(upload: Upload, upload_id: str, limits: Limits) -> Parsed | Refusal:
    """Parse and check. Any failure here is the file's (or a parser bug it triggers), never an outage:
    it is refused (422) so that the device does not retry it forever against a 503."""
    fmt = upload.fmt or "unknown"
    name = upload.filename or "upload"
    try:
        fmt = upload.fmt or detect_format(name, upload.body)
        records, notes = parse_bytes_with_notes(upload.body, name, fmt=fmt, patient_id=upload.device.patient_id,
                                               o2_lpm=upload.o2_lpm)
        return _checked(upload, upload_id, records, len(notes), fmt, limits)
    except PatientMismatch as error:
        return Refusal(fmt, 403, "forbidden", str(error))
    except ParseError as error:
        return Refusal(fmt, 422, "rejected", str(error))
    except UNAVAILABLE:
        raise
    except Exception as error:  # noqa: BLE001 - a parser bug must not become a permanent 503
        # the class and where it was raised; never the message, which may quote the file
        log.error("upload could not be read", extra={**_ids(upload, upload_id), "format": device_text(fmt),
                                                     "error": type(error).__name__, "raised_at": _raised_at(error)})
        return Refusal(fmt, 422, "rejected",
                       str(ParseError(name, f"could not be read (unexpected {type(error).__name__})")))


def _checked(upload: Upload, upload_id: str, records: list[BaseModel], notes: int, fmt: str,
             limits: Limits) -> Parsed | Refusal:
    """Refuse records of another patient, too many records, or a time out of range; else wrap them."""
    if any(getattr(r, "patient_id", None) != upload.device.patient_id for r in records):
        return Refusal(fmt, 403, "forbidden", "device is not registered for the patient named in the upload")
    received_at = datetime.now(UTC)
    violation = check_records(records, limits, received_at)
    if violation is not None:
        reason = str(ParseError(upload.filename or "upload", violation.reason, violation.where))
        return Refusal(fmt, 422, "rejected", reason, violation.field)
    envelopes = [Envelope(upload_id=upload_id, device_id=upload.device.device_id, received_at=received_at,
                          record=r) for r in records]
    return Parsed(fmt, envelopes, notes)


def _raised_at(error: BaseException) -> str:
    """`file.py:line` of the innermost frame that raised: enough to find the bug, nothing from the file."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "unknown"


def _ids(upload: Upload, upload_id: str | None) -> dict[str, object]:
    """What a log line about an upload may carry: ids, and the device's file name only escaped and cut."""
    ids: dict[str, object] = {"upload_id": upload_id, "device_id": upload.device.device_id}
    if upload.filename:
        ids["file_name"] = device_text(upload.filename)
    return ids


def _archive(conn: psycopg.Connection, upload: Upload, sha: str, limits: Limits) -> Archived | UploadResult:
    """Store the raw bytes once per (device, sha256) or (device, Idempotency-Key).

    Returns the archive row (new or earlier), or the answer when the upload cannot be archived:
    its Idempotency-Key names another payload (422), or it is refused while its device is over its quota
    of refused bytes (then answered, not kept).

    A new upload costs one statement: the insert checks the quota and takes the processing claim
    (`_insert`); an earlier row is looked up only when the insert did not happen.
    """
    quota = limits.rejected_bytes_quota
    for _ in range(3):  # a lost insert race finds the winner's row on the next look-up
        upload_id = str(uuid.uuid4())
        inserted = _insert(conn, upload, sha, upload_id, quota)
        if inserted.claimed is not None:
            return Archived(upload_id, None, claimed=inserted.claimed)
        earlier = _earlier(conn, upload, sha)
        if earlier is not None:
            return earlier
        if inserted.over_quota:
            read = _read(upload, str(uuid.uuid4()), limits)  # only good data is archived now
            if isinstance(read, Refusal):
                return _refused_unarchived(upload, read, limits)
            quota = 0  # good data: archived whatever the quota
    raise RuntimeError("raw_uploads insert conflicted with a row no look-up finds")


def _earlier(conn: psycopg.Connection, upload: Upload, sha: str) -> Archived | UploadResult | None:
    """The archive row this upload repeats, by Idempotency-Key first, then by bytes; None if new."""
    device_id = upload.device.device_id
    if upload.idempotency_key is not None:
        row = conn.execute("SELECT upload_id, status, sha256 FROM raw_uploads"
                           " WHERE device_id = %s AND idempotency_key = %s", (device_id, upload.idempotency_key)
                           ).fetchone()
        if row is not None:
            return Archived(str(row[0]), row[1]) if row[2] == sha else _key_reused(upload, str(row[0]))
    row = conn.execute("SELECT upload_id, status FROM raw_uploads WHERE device_id = %s AND sha256 = %s",
                       (device_id, sha)).fetchone()
    return Archived(str(row[0]), row[1]) if row is not None else None


@dataclass(frozen=True)
class Inserted:
    """What `_insert` did: `claimed` None when no row was inserted (a conflict, or `over_quota`), else
    whether the claim was taken (False only if a 64-bit lock key collides with a claim in progress)."""

    claimed: bool | None
    over_quota: bool


_INSERT = """
    INSERT INTO raw_uploads (upload_id, device_id, received_at, sha256, idempotency_key,
                             content_type, filename, size_bytes, body, format, o2_lpm)
    SELECT %(upload_id)s::uuid, %(device_id)s::text, now(), %(sha)s::text, %(key)s::text,
           %(content_type)s::text, %(filename)s::text, %(size)s::integer, %(body)s::bytea, %(fmt)s::text,
           %(o2_lpm)s::double precision"""
_RETURNING = " ON CONFLICT DO NOTHING RETURNING upload_id"
# The claim is taken in the inserting statement, so it is held before the row is visible to anyone:
# a concurrent copy of the upload finds the row only once it is committed, and then finds it claimed.
_INSERT_CLAIMED: LiteralString = (
    "WITH inserted AS (" + _INSERT + _RETURNING + ")"
    " SELECT (SELECT pg_try_advisory_lock(%(lock)s) FROM inserted), false")
# The same, refused while the device's rejected bytes archived today reached its quota, in the same statement.
_INSERT_UNDER_QUOTA: LiteralString = (
    "WITH rejected AS (" + REJECTED_BYTES_TODAY + "),"
    " inserted AS (" + _INSERT + " FROM rejected WHERE rejected.bytes < %(quota)s" + _RETURNING + ")"
    " SELECT (SELECT pg_try_advisory_lock(%(lock)s) FROM inserted), (SELECT bytes >= %(quota)s FROM rejected)")


def _insert(conn: psycopg.Connection, upload: Upload, sha: str, upload_id: str, quota: int) -> Inserted:
    """Insert the archive row unless it conflicts (or the device is over a non-zero `quota`), claiming it."""
    lock = _lock_key(upload_id)
    params = {"upload_id": upload_id, "device_id": upload.device.device_id, "sha": sha,
              "key": upload.idempotency_key, "content_type": upload.content_type, "filename": upload.filename,
              "size": len(upload.body), "body": upload.body, "fmt": upload.fmt, "o2_lpm": upload.o2_lpm,
              "lock": lock, "quota": quota}
    try:
        row = conn.execute(_INSERT_UNDER_QUOTA if quota else _INSERT_CLAIMED, params).fetchone()
    except psycopg.Error:
        _unlock(conn, lock)  # a session lock taken before the statement failed outlives it
        raise
    claimed_now, over_quota = row if row else (None, False)
    return Inserted(claimed_now, bool(over_quota))


def _key_reused(upload: Upload, upload_id: str) -> UploadResult:
    """The key was sent before with other bytes: answering "duplicate" dropped the new body silently."""
    log.warning("idempotency key reused with a different payload", extra=_ids(upload, upload_id))
    return UploadResult(422, upload_id, "idempotency_key_reused", body={
        "upload_id": upload_id, "error": "idempotency_key_reused", "field": "Idempotency-Key",
        "reason": "Idempotency-Key reused with a different payload: it names an earlier upload with other"
                  " content; send new content under a new key"})


def _refused_unarchived(upload: Upload, refusal: Refusal, limits: Limits) -> UploadResult:
    """A refused upload from a device over its quota: answered like any refusal, but not kept. A good
    upload from the same device is still archived and published: the patient's data must not wait for
    the device to stop sending garbage."""
    log.warning("rejected-bytes quota reached; refused upload not archived",
                extra={"device_id": upload.device.device_id, "quota_bytes": limits.rejected_bytes_quota,
                       "status": refusal.status})
    return UploadResult(refusal.status, None, "quota_exceeded", refusal.fmt, body={
        "error": refusal.outcome, "reason": refusal.reason, "archived": False,
        "note": f"not archived: this device's refused uploads reached {limits.rejected_bytes_quota} bytes today"
                " (RESPMON_REJECTED_BYTES_QUOTA)"})


def _duplicate(upload: Upload, upload_id: str, status: str) -> UploadResult:
    log.info("duplicate upload", extra={"upload_id": upload_id, "device_id": upload.device.device_id,
                                        "status": status})
    return UploadResult(200, upload_id, "duplicate", body={"upload_id": upload_id, "duplicate": True,
                                                           "status": status})


def _reject(conn: psycopg.Connection, publisher: Publisher, upload: Upload, upload_id: str,
            refusal: Refusal) -> UploadResult:
    """Keep the archive row, mark it rejected, and leave a dead-letter record pointing at it."""
    with conn.transaction():
        conn.execute("UPDATE raw_uploads SET status = 'rejected', format = %s, error = %s WHERE upload_id = %s",
                     (refusal.fmt, refusal.reason, upload_id))
        conn.execute("INSERT INTO deadletters (stage, upload_id, reason) VALUES ('ingest', %s, %s)",
                     (upload_id, refusal.reason))
    publisher.publish_deadletter(upload.device.device_id, json.dumps(
        {"stage": "ingest", "upload_id": upload_id, "device_id": upload.device.device_id,
         "format": refusal.fmt, "reason": refusal.reason}).encode())
    # The reason stays out of the log: it can quote the upload (an unknown JSON key, a patient id the
    # file names); it is kept with the archive row (raw_uploads.error, deadletters) under this upload id.
    log.warning("upload rejected", extra={**_ids(upload, upload_id), "format": device_text(refusal.fmt),
                                          "status": refusal.status, "outcome": refusal.outcome,
                                          "field": refusal.field})
    body: dict[str, object] = {"upload_id": upload_id, "error": refusal.outcome, "reason": refusal.reason}
    if refusal.field:
        body["field"] = refusal.field
    return UploadResult(refusal.status, upload_id, refusal.outcome, refusal.fmt, body)
