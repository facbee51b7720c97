"""HTTP API of the ingest service: `POST /v1/uploads`, health, readiness and Prometheus metrics."""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ingest import metrics
from ingest.devices import Device, RecentDevices, authenticate
from ingest.limits import Limits
from ingest.parsers import FORMATS
from ingest.publisher import Publisher
from ingest.uploads import UNAVAILABLE, Upload, UploadResult, handle_upload
from respmon.core import dbpool
from respmon.core.probes import add_probes
from respmon.core.settings import Settings, get_settings

log = logging.getLogger("respmon.ingest")

ACCEPTED_TYPES = {
    "application/json", "application/fhir+json", "text/csv", "text/plain",
    "application/octet-stream", "application/edf",
}


def _error(status: int, error: str, reason: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error, "reason": reason, **extra}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # one connection per upload in process holds its claim (an advisory lock) while it parses and publishes
    pool = dbpool.new_sync_pool(settings.database_url, max_size=16, autocommit=True)
    limits = Limits.from_settings(settings)
    state: dict[str, Publisher] = {}
    recent = RecentDevices()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=30)
        state["publisher"] = await run_in_threadpool(Publisher, settings)
        yield
        state["publisher"].close()
        pool.close()

    app = FastAPI(title="respmon ingest", version="1", lifespan=lifespan)

    def _device(token: str) -> Device | None:
        with pool.connection() as conn:
            return authenticate(conn, token)

    async def _authenticated(authorization: str | None) -> Device | None:
        """The device holding the bearer token; checked in the database unless checked seconds ago."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        device = recent.get(token)
        if device is None:
            device = await run_in_threadpool(_device, token)
            if device is not None:
                recent.put(token, device)
        return device

    @app.post("/v1/uploads")
    async def upload(
        request: Request,
        authorization: str | None = Header(default=None),
        content_type: str | None = Header(default=None),
        idempotency_key: str | None = Header(default=None, max_length=200),
        x_filename: str | None = Header(default=None, max_length=255),
        fmt: str | None = Query(default=None, alias="format", description="override format detection"),
        filename: str | None = Query(default=None, max_length=255),
        o2_lpm: float | None = Query(default=None, ge=0, le=30, description=(
            "supplemental oxygen flow (L/min) during this recording, when the file does not say")),
    ) -> JSONResponse:
        try:
            device = await _authenticated(authorization)
        except Exception as error:  # noqa: BLE001 - PostgreSQL unavailable (any driver/pool error): 503, never a 500
            log.error("authentication unavailable", extra={"error": type(error).__name__})
            metrics.UPLOADS.labels("unknown", "unavailable").inc()
            return _error(503, "unavailable", "the service cannot check credentials right now; retry later")
        if device is None:
            metrics.UPLOADS.labels("unknown", "unauthorized").inc()
            return _error(401, "unauthorized", "missing or unknown device token")
        declared = int(request.headers.get("content-length") or 0)
        if declared > settings.max_upload_bytes:
            metrics.UPLOADS.labels("unknown", "too_large").inc()
            return _error(413, "too_large", f"upload exceeds {settings.max_upload_bytes} bytes")
        media = (content_type or "").split(";")[0].strip().lower()
        if media not in ACCEPTED_TYPES:
            metrics.UPLOADS.labels("unknown", "unsupported_media").inc()
            return _error(415, "unsupported_media_type", f"content type {media or 'missing'!r} not accepted",
                          accepted=sorted(ACCEPTED_TYPES))
        if fmt is not None and fmt not in FORMATS:
            return _error(422, "invalid_format", f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        body = await _read_limited(request, settings.max_upload_bytes)
        if body is None:
            metrics.UPLOADS.labels("unknown", "too_large").inc()
            return _error(413, "too_large", f"upload exceeds {settings.max_upload_bytes} bytes")
        if not body:
            return _error(422, "empty_upload", "the upload body is empty")
        name = _safe_filename(filename or x_filename)
        started = time.perf_counter()
        try:
            result: UploadResult = await run_in_threadpool(
                handle_upload, pool, state["publisher"],
                Upload(device, body, media, name, fmt, idempotency_key, o2_lpm), limits,
            )
        except UNAVAILABLE as error:  # Kafka or PostgreSQL unavailable: the device retries later
            log.error("upload failed", extra={"device_id": device.device_id, "error": type(error).__name__})
            metrics.UPLOADS.labels(fmt or "unknown", "unavailable").inc()
            return _error(503, "unavailable", "the service cannot store uploads right now; retry later")
        except Exception as error:  # noqa: BLE001 - our bug, not an outage: a 503 would make the device retry it forever
            log.error("upload failed unexpectedly", extra={"device_id": device.device_id,
                                                           "error": type(error).__name__})
            metrics.UPLOADS.labels(fmt or "unknown", "error").inc()
            return _error(500, "internal_error", "the upload could not be handled (an internal error)")
        metrics.UPLOADS.labels(result.fmt, result.outcome).inc()
        if result.outcome == "quota_exceeded":
            metrics.QUOTA_REFUSALS.inc()
        if result.outcome == "accepted":
            metrics.UPLOAD_BYTES.observe(len(body))
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        elif result.outcome == "rejected":
            metrics.PARSE_FAILURES.labels(result.fmt).inc()
        return JSONResponse(result.body, status_code=result.status, headers=result.headers or None)

    add_probes(app, pool, settings)
    return app


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """Read the body but stop at `limit` bytes, whatever Content-Length claimed (None = too large)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _safe_filename(name: str | None) -> str | None:
    """Keep only the base name: a file name is a format hint, never a path on this server."""
    if not name:
        return None
    printable = "".join(ch for ch in name if ch.isprintable())  # no NUL (PostgreSQL text refuses it) or controls
    base = printable.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base if base not in ("", ".", "..") else None
