"""What every HTTP service has: liveness, readiness and Prometheus metrics routes, and the HTTP
hardening of `respmon.core.httpsecurity` (installed here so that no service can have the routes without it)."""

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import ConnectionPool

from respmon.core import dbpool
from respmon.core.httpsecurity import secure_responses
from respmon.core.settings import Settings, get_settings


def add_probes(app: FastAPI, pool: ConnectionPool[Any], settings: Settings | None = None) -> None:
    """`/healthz` (the process answers), `/readyz` (503 while PostgreSQL does not answer: every call
    would fail anyway) and `/metrics`; then `secure_responses` (NUL refusal, JSON errors, security
    headers, docs for team tokens only)."""
    secure_responses(app, pool, settings or get_settings())

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if not dbpool.answers(pool):
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
