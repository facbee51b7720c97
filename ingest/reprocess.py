"""Send archived uploads through ingest again: the way back for a dead letter once its cause is fixed
(a parser for a new device firmware, a database constraint, a rules engine bug).

The raw bytes were kept (`raw_uploads`), so nothing the device sent is needed again. The upload keeps
its id; the worker's writes are keyed on natural keys, so what was already stored is not doubled.
"""

import dataclasses
import logging
import uuid

from psycopg_pool import ConnectionPool

from ingest.devices import Device
from ingest.limits import Limits
from ingest.logsafe import device_text
from ingest.parsers import FORMATS
from ingest.publisher import Publisher
from ingest.uploads import Upload, UploadResult, claimed, process
from respmon.core.settings import get_settings

log = logging.getLogger("respmon.ingest")


class NotArchived(LookupError):
    """No archived upload has this id."""


def reprocess(pool: ConnectionPool, publisher: Publisher, upload_id: str, fmt: str | None = None,
              limits: Limits | None = None) -> UploadResult:
    """Parse, check and publish one archived upload again, as if its device had just sent it.

    The format is `fmt`, else the one the upload was read as before, else detected again. The checks
    are ingest's (`limits`, default from the settings). An upload a device request is processing right
    now is left to it (409): the two would publish it twice.
    """
    upload_id, upload = _archived(pool, upload_id)
    if fmt is not None or upload.fmt not in FORMATS:
        upload = dataclasses.replace(upload, fmt=fmt)
    with claimed(pool, upload_id) as conn:
        if conn is None:
            result = UploadResult(409, upload_id, "busy", body={
                "upload_id": upload_id, "error": "busy",
                "reason": "ingest is processing this upload right now; run reprocess again in a moment"})
        else:
            result = process(conn, publisher, upload, upload_id, limits or Limits.from_settings(get_settings()))
    log.info("upload reprocessed", extra={"upload_id": result.upload_id, "device_id": upload.device.device_id,
                                          "outcome": result.outcome, "format": device_text(result.fmt)})
    return result


def _archived(pool: ConnectionPool, upload_id: str) -> tuple[str, Upload]:
    """The upload id as stored, and the upload as its device sent it (checked against the device's patient now)."""
    try:
        key = uuid.UUID(upload_id)
    except ValueError:
        raise NotArchived(f"{upload_id!r} is not an upload id (a UUID)") from None
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT r.device_id, d.patient_id, r.body, r.content_type, r.filename, r.format, r.idempotency_key,"
            " r.o2_lpm"
            " FROM raw_uploads r JOIN devices d USING (device_id) WHERE r.upload_id = %s",
            (key,),
        ).fetchone()
    if row is None:
        raise NotArchived(f"no archived upload {upload_id}")
    device_id, patient_id, body, content_type, filename, fmt, idempotency_key, o2_lpm = row
    return str(key), Upload(Device(device_id, patient_id), bytes(body), content_type, filename, fmt, idempotency_key,
                            o2_lpm)
