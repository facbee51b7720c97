"""The worker: a faust app whose agent turns each measurement into stored rows, findings and alerts.

Flow of one event (keyed by patient id, so a patient's events arrive in order on one partition):
  measurements topic -> `process_measurements` -> PatientHistory (faust table, changelog-backed)
  -> rules engine step -> one PostgreSQL transaction (record upsert, findings, alert + outbox)
  -> table update. Delivery is at-least-once; every effect is idempotent, so a replay doubles nothing.
"""

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime

import faust
import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from alerts.dispatcher import dispatch_due
from alerts.escalation import escalate_due
from alerts.lifecycle import apply_finding
from processors import lag
from processors import store, telemetry
from processors.rules.evaluator import step, tick
from processors.rules.history import PatientHistory
from processors.rules.loader import load_rules
from processors.transport import use_idempotent_producer
from respmon.settings import get_settings
from schemas import Envelope, Finding, Tick

log = logging.getLogger("respmon.worker")
settings = get_settings()
use_idempotent_producer()

app = faust.App(
    settings.worker_app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    autodiscover=False,
    datadir=str(settings.worker_data_dir),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    producer_acks=-1,
    producer_max_request_size=8 * 1024 * 1024,
    consumer_auto_offset_reset="earliest",
    web_host=settings.worker_host,
    web_port=settings.worker_web_port,
    web_in_thread=False,
)

measurements = app.topic(settings.measurements_topic, key_serializer="raw", value_serializer="raw",
                          partitions=settings.topic_partitions)
deadletter = app.topic(settings.deadletter_topic, key_serializer="raw", value_serializer="raw")
findings_topic = app.topic(settings.findings_topic, key_serializer="raw", value_serializer="raw")
histories = app.Table("patient-history", default=None, partitions=settings.topic_partitions,
                      key_type=str, value_type=dict)

RULES = load_rules(settings.rules_file, settings.rules_overrides)
_pool: AsyncConnectionPool | None = None


async def pool() -> AsyncConnectionPool:
    global _pool
    if _pool is None:
        _pool = AsyncConnectionPool(settings.database_url, min_size=1, max_size=4, open=False)
        await _pool.open(wait=True, timeout=60)
    return _pool


@app.agent(measurements)
async def process_measurements(stream: faust.StreamT) -> None:
    async for event in stream.events():
        await handle(event.key, event.value)


async def handle(key: bytes | None, value: bytes) -> None:
    if value.startswith(b'{"tick_at"') and key:
        await handle_tick(key.decode(), Tick.model_validate_json(value))
        return
    try:
        env = Envelope.model_validate_json(value)
    except ValidationError as error:
        await _deadletter(key, value, f"invalid envelope: {error.error_count()} error(s), first at "
                                       f"{'.'.join(map(str, error.errors()[0]['loc']))}")
        return
    history = _history(env.patient_id)
    findings = step(history, env, RULES)
    await _write(findings, env)
    histories[env.patient_id] = history.to_dict()
    telemetry.EVENTS_PROCESSED.labels(settings.measurements_topic, env.record.kind, "ok").inc()
    await _publish_findings(env.patient_id, findings)
    if findings:
        telemetry.UPLOAD_TO_FINDING.observe((datetime.now(UTC) - env.received_at).total_seconds())


async def handle_tick(patient: str, t: Tick) -> None:
    """Time-based rules for a patient with no new record (e.g. no upload for 3 nights)."""
    if not histories.get(patient):
        return
    history = _history(patient)
    findings = tick(history, RULES, t.tick_at)
    await _write(findings)
    histories[patient] = history.to_dict()
    telemetry.EVENTS_PROCESSED.labels(settings.measurements_topic, "tick", "ok").inc()
    await _publish_findings(patient, findings)


def _history(patient: str) -> PatientHistory:
    stored = histories.get(patient)
    return PatientHistory.from_dict(stored) if stored else PatientHistory(patient)


async def _publish_findings(patient: str, findings: list[Finding]) -> None:
    for finding in findings:
        telemetry.FINDINGS.labels(finding.category, finding.severity, finding.state).inc()
        await findings_topic.send(key=patient.encode(), value=finding.model_dump_json().encode())


async def _write(findings: list[Finding], env: Envelope | None = None) -> None:
    """One transaction per event, retried with backoff until PostgreSQL takes it (never skipped)."""
    delay = 0.5
    while True:
        try:
            p = await pool()
            with telemetry.DB_WRITE_SECONDS.time():
                async with p.connection() as conn, conn.transaction():
                    if env is not None:
                        await store.store_record(conn, env)
                    for finding in findings:
                        await store.store_finding(conn, finding)
                        if await apply_finding(conn, finding, settings) is not None:
                            telemetry.ALERTS_QUEUED.labels(finding.category, finding.severity).inc()
            return
        except Exception as error:  # noqa: BLE001 - any DB failure is retried, the event is not lost
            telemetry.DB_ERRORS.labels("write").inc()
            log.warning("database write failed, retrying", extra={"upload_id": env and env.upload_id,
                                                                  "error": type(error).__name__,
                                                                  "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _deadletter(key: bytes | None, value: bytes, reason: str) -> None:
    telemetry.EVENTS_PROCESSED.labels(settings.measurements_topic, "unknown", "deadletter").inc()
    log.warning("event dead-lettered", extra={"reason": reason})
    await deadletter.send(key=key, value=json.dumps({"stage": "worker", "reason": reason,
                                                     "payload": value.decode("utf-8", "replace")}).encode())


@app.timer(interval=settings.dispatch_interval_s)
async def dispatch_alerts() -> None:
    """Deliver what the outbox holds; failures back off per delivery, the timer keeps going."""
    try:
        p = await pool()
        async with p.connection() as conn, httpx.AsyncClient() as client:
            await dispatch_due(conn, client, settings)
    except Exception as error:  # noqa: BLE001
        telemetry.DB_ERRORS.labels("dispatch").inc()
        log.warning("dispatch round failed", extra={"error": type(error).__name__})


@app.timer(interval=settings.escalation_check_s)
async def escalate_alerts() -> None:
    """Re-send open alerts nobody acknowledged in time to the escalation routes."""
    try:
        p = await pool()
        async with p.connection() as conn:
            await escalate_due(conn, settings)
    except Exception as error:  # noqa: BLE001
        telemetry.DB_ERRORS.labels("escalation").inc()
        log.warning("escalation round failed", extra={"error": type(error).__name__})


@app.timer(interval=settings.tick_interval_s)
async def tick_patients() -> None:
    """Ask for a re-evaluation of every patient whose state lives on this worker's partitions."""
    now = Tick(tick_at=datetime.now(UTC)).model_dump_json().encode()
    for patient in list(histories.keys()):
        await measurements.send(key=patient.encode(), value=now)


@app.page("/metrics")
async def metrics_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/healthz")
async def health_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    return web.json({"status": "ok"})


lag.register(app, measurements)


def main() -> None:
    """Run the worker in this process (`respmon worker`)."""
    sys.argv = [sys.argv[0], "worker", "--loglevel", settings.log_level.lower()]
    app.main()
