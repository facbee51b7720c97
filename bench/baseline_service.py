"""The like-for-like baseline of `bench/e2e.py`: the single-process service a user might write instead of
the pipeline. Same HTTP framework (FastAPI on uvicorn with httptools, one process, the parse in the
thread pool), same parser (`ingest.parsers`), same night metrics and signal rows (`processors.store.record_rows`),
and COPY of the same rows and signals into the same PostgreSQL tables inside the request. No Kafka, no raw
archive, no patient history, no rules, no alerts; a device token is looked up in memory.

    python bench/baseline_service.py --port P --database-url URL --tokens FILE   (FILE: JSON {token: patient})
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool

from ingest.parsers import ParseError, parse_bytes_with_notes
from processors.store import record_rows
from schemas import Envelope


def store(pool: ConnectionPool, envelopes: list[Envelope]) -> None:
    """COPY every row of the upload (records, then their signal rows) in one transaction."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for env in envelopes:
        for table, row in record_rows(env):
            tables.setdefault(table, []).append(row)
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        for table, rows in tables.items():
            cols = list(rows[0])
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in cols])


def handle(pool: ConnectionPool, patient: str, body: bytes, filename: str, fmt: str | None) -> dict[str, Any]:
    """Parse, compute, store: everything the request does, in the thread pool as ingest does."""
    records, _notes = parse_bytes_with_notes(body, filename, fmt=fmt, patient_id=patient)
    now = datetime.now(UTC)
    envelopes = [Envelope(upload_id=str(uuid.uuid4()), device_id=patient, received_at=now, record=r)
                 for r in records]
    store(pool, envelopes)
    return {"records": len(envelopes)}


def create_app(database_url: str, tokens: dict[str, str]) -> FastAPI:
    pool = ConnectionPool(database_url, min_size=2, max_size=8, open=False)
    app = FastAPI(on_startup=[lambda: pool.open(wait=True)], on_shutdown=[pool.close])

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/uploads")
    async def upload(request: Request, authorization: str | None = Header(default=None),
                     filename: str = "upload", format: str | None = None) -> JSONResponse:
        patient = tokens.get((authorization or "").removeprefix("Bearer "))
        if patient is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.body()
        try:
            answer = await run_in_threadpool(handle, pool, patient, body, filename, format)
        except ParseError as error:
            return JSONResponse({"error": "rejected", "reason": str(error)}, status_code=422)
        return JSONResponse(answer, status_code=202)

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--tokens", type=Path, required=True)
    args = ap.parse_args()
    app = create_app(args.database_url, json.loads(args.tokens.read_text()))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, http="httptools",
                log_config=None, server_header=False)


if __name__ == "__main__":
    main()
