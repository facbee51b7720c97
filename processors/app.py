"""The worker: a faust app whose agent turns each measurement into stored rows, findings and alerts.

Flow of one event (keyed by patient id, so a patient's events arrive in order on one partition):
  measurements topic -> `process_measurements` -> PatientHistory (faust table, changelog-backed)
  -> rules engine step -> one PostgreSQL transaction for the batch of events already fetched (record
  upserts, findings, alerts + outbox) -> table update -> ack. Delivery is at-least-once; every effect
  is idempotent, so a replay doubles nothing.
"""

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import faust
import httpx
import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from alerts.dispatcher import Dispatcher
from alerts.escalation import escalate_due
from alerts.lifecycle import apply_finding
from processors import lag, store, telemetry
from processors.rules.evaluator import step, tick
from processors.rules.history import PatientHistory, future_field
from processors.rules.loader import load_rules
from processors.transport import install_transport
from processors.web import HealthOnlyWeb
from respmon.core import dbpool
from respmon.core.exits import CRASH_EXIT
from respmon.core.logs import logging_config
from respmon.core.settings import get_settings
from schemas import Envelope, Finding, Tick

log = logging.getLogger("respmon.worker")
settings = get_settings()
install_transport()


class WorkerApp(faust.App):
    """The worker's faust app: its web server serves only the worker's own pages (processors/web.py)."""

    def _new_web(self) -> faust.web.Web:
        return HealthOnlyWeb(self)


app = WorkerApp(
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
    broker_session_timeout=settings.worker_session_timeout_s,
    broker_heartbeat_interval=max(1.0, settings.worker_session_timeout_s / 5),
    web_host=settings.worker_host,
    web_bind=settings.worker_host,  # faust binds 0.0.0.0 unless told (F_WEB_BIND); web_host only names it
    web_port=settings.worker_web_port,
    web_in_thread=False,
    # faust's built-in views off (HealthOnlyWeb registers none of them either): no /table/<patient> (a whole
    # history, without a credential), /router (the cluster), statistics, graph, performance
    web_tables_enabled=False,
    web_router_enabled=False,
    web_stats_enabled=False,
    web_graph_enabled=False,
    web_metrics_enabled=False,
    logging_config=logging_config(settings.log_level, settings.log_repeat_window_s),  # as every service
)

measurements = app.topic(settings.measurements_topic, key_serializer="raw", value_serializer="raw",
                          partitions=settings.topic_partitions)
deadletter = app.topic(settings.deadletter_topic, key_serializer="raw", value_serializer="raw")
findings_topic = app.topic(settings.findings_topic, key_serializer="raw", value_serializer="raw")
# Values are the histories' own compact JSON bytes (`PatientHistory.to_json`), held as they are: a decoded
# dict took 2.8x the memory (bench/history_cost.py). The bytes are what faust's JSON codec wrote before,
# so a changelog written by an older worker recovers unchanged. (value_type=dict had failed on every
# changelog record: faust decodes a non-Model value_type with `value_type.from_data`.)
histories = app.Table("patient-history", default=None, partitions=settings.topic_partitions,
                      key_type=str, value_type=bytes)  # bytes: the raw codec

telemetry.watch_histories(histories.values)  # respmon_worker_patient_history{ies,_bytes}: memory planning
RULES = load_rules(settings.rules_file, settings.rules_overrides)
_pool: AsyncConnectionPool | None = None
_http: httpx.AsyncClient | None = None


async def pool() -> AsyncConnectionPool:
    global _pool
    if _pool is None:
        _pool = dbpool.new_async_pool(settings.database_url, min_size=1, max_size=4)  # bounded reconnects: see dbpool
        await _pool.open(wait=True, timeout=60)
    return _pool


def http_client() -> httpx.AsyncClient:
    """One client for every dispatch round: a new one per round built a TLS context each time
    (measured: 30 % of the worker's CPU under load, for rounds that mostly had nothing to send)."""
    global _http
    if _http is None:
        _http = httpx.AsyncClient()
    return _http


@app.agent(measurements)
async def process_measurements(stream: faust.StreamT) -> None:
    """Events are gathered while more are already waiting (up to `worker_batch_max`), then written in
    one PostgreSQL transaction and only then acknowledged (committed offsets never pass an unwritten
    event). An idle stream flushes at once, so a lone upload is not held back waiting for company.

    faust's `take_events` was tried and rejected: it held the last event of a partition back until
    another arrived (measured: an oximetry night stayed unprocessed, lag 1, for minutes).
    """
    stream.enable_acks = False  # acked below, after the batch is stored
    pending: list[faust.types.EventT] = []
    async for event in stream.events():
        pending.append(event)
        if len(pending) >= settings.worker_batch_max or not _more_waiting(stream):
            try:
                await handle_batch(stream, pending)
            except Exception as error:  # noqa: BLE001 - database errors are retried inside and bad records
                # dead-lettered; anything else (Kafka, a bug outside the rules): faust would restart the agent in
                # place, and these fetched, unacknowledged events would wait for the stall watch; a new process
                # re-reads them from the committed offsets instead
                log.error("batch failed; restarting the worker", extra={
                    "error": type(error).__name__, "events": len(pending),
                    "upload_ids": sorted({e.upload_id for e in _envelopes(pending)})[:10]})
                logging.shutdown()
                os._exit(CRASH_EXIT)
            for done in pending:
                await stream.ack(done)
            pending = []


def _envelopes(events: list[faust.types.EventT]) -> list[Envelope]:
    """The envelopes among `events` (for upload ids in a log line; what does not parse is skipped)."""
    out = []
    for event in events:
        try:
            out.append(Envelope.model_validate_json(event.value))
        except (ValidationError, ValueError):
            continue
    return out


def _more_waiting(stream: faust.StreamT) -> bool:
    """True when the stream's channel already holds the next event (fetched, not yet iterated)."""
    queue = getattr(stream.channel, "queue", None)
    return queue is not None and not queue.empty()


@dataclass
class Batch:
    """What one batch of events changes: records to store, findings in order, histories touched."""

    envelopes: list[Envelope] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    histories: dict[str, PatientHistory] = field(default_factory=dict)
    last_event: dict[str, faust.types.EventT] = field(default_factory=dict)
    rejected: list[tuple[faust.types.EventT, str]] = field(default_factory=list)  # dead-lettered once stored
    kinds: list[str] = field(default_factory=list)  # of the events evaluated, counted once stored

    def history(self, patient: str) -> PatientHistory:
        if patient not in self.histories:
            stored = histories.get(patient)
            self.histories[patient] = PatientHistory.from_json(stored) if stored else PatientHistory(patient)
        return self.histories[patient]


class Unprocessable(Exception):
    """A batch that no retry can store: the rules engine failed on one of its events, or PostgreSQL
    refused one of its records. `reason` names the failure, never a value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def handle_batch(stream: faust.StreamT, events: list[faust.types.EventT]) -> None:
    """Evaluate the events in order, store everything in one transaction, then update the table.

    A batch that cannot be stored as a whole is taken again one event at a time, and an event that
    still cannot is dead-lettered: one bad record must not stop the monitoring of every patient on its
    partition. Histories change only once a batch is stored, so each retry starts from a clean state.
    """
    try:
        batch = await _evaluate_all(events)
        await _write(batch)
    except Unprocessable as error:
        if len(events) == 1:
            await _deadletter_unprocessable(events[0], error.reason)
            return
        log.warning("batch refused; taking its events one at a time", extra={"events": len(events),
                                                                          "reason": error.reason})
        for event in events:
            await handle_batch(stream, [event])
        return
    for patient, history in batch.histories.items():
        # a table write goes to the changelog partition of the current event: the patient's own
        stream._set_current_event(batch.last_event[patient])
        histories[patient] = history.to_json()
    for kind in batch.kinds:
        telemetry.EVENTS_PROCESSED.labels(settings.measurements_topic, kind, "ok").inc()
    for event, reason in batch.rejected:
        await _deadletter_unprocessable(event, reason)
    now = datetime.now(UTC)
    for finding in batch.findings:
        telemetry.FINDINGS.labels(finding.category, finding.severity, finding.state).inc()
        await findings_topic.send(key=finding.patient_id.encode(), value=finding.model_dump_json().encode())
        if finding.received_at is not None:
            telemetry.UPLOAD_TO_FINDING.observe((now - finding.received_at).total_seconds())


async def _evaluate_all(events: list[faust.types.EventT]) -> Batch:
    """Evaluate the events in order, giving the event loop a turn after each: a batch of events of a
    patient with a long history takes seconds, and /healthz, /readyz, /metrics, the dispatcher and the
    Kafka heartbeats must not wait for all of it. Safe: only this agent changes the batch and the
    histories, and it waits here; the timers and web pages only read the table."""
    batch = Batch()
    latest = datetime.now(UTC) + timedelta(seconds=settings.max_clock_skew_s)
    for event in events:
        try:
            _evaluate(batch, event, latest)
        except Exception as error:  # noqa: BLE001 - pure code: the same event fails the same way again
            raise Unprocessable(f"rules evaluation failed: {type(error).__name__}") from error
        await asyncio.sleep(0)
    return batch


def _is_tick(event: faust.types.EventT) -> bool:
    """A timer's re-evaluation request for one patient (keyed by patient id), not a measurement."""
    return bool(event.key) and event.value.startswith(b'{"tick_at"')


_FROM_THE_FUTURE = "a device clock or a record from the future"


def _evaluate(batch: Batch, event: faust.types.EventT, latest: datetime) -> None:
    """Run the rules for one event against its patient's history (kept in the batch until written).
    A record dated after `latest` (now + max_clock_skew_s) is rejected before it reaches the history:
    it would be the patient's "latest" until that date (see `future_field`)."""
    key, value = event.key, event.value
    if _is_tick(event):
        patient = key.decode()
        if histories.get(patient) or patient in batch.histories:
            batch.findings += tick(batch.history(patient), RULES, Tick.model_validate_json(value).tick_at)
            batch.last_event[patient] = event
        batch.kinds.append("tick")
        return
    try:
        env = Envelope.model_validate_json(value)
    except ValidationError as error:
        batch.rejected.append((event, f"invalid envelope: {error.error_count()} error(s), first at "
                                      f"{'.'.join(map(str, error.errors()[0]['loc']))}"))
        return
    future = future_field(env, latest)
    if future is not None:
        batch.rejected.append((event, f"{future} is later than now + max_clock_skew_s: {_FROM_THE_FUTURE}"))
        return
    batch.findings += step(batch.history(env.patient_id), env, RULES)
    batch.envelopes.append(env)
    batch.last_event[env.patient_id] = event
    batch.kinds.append(env.record.kind)


async def _write(batch: Batch) -> None:
    """One transaction per batch: record upserts, findings, alerts and their outbox rows."""
    telemetry.BATCH_EVENTS.observe(len(batch.envelopes))
    queued: list[Finding] = []

    async def store_batch(conn: AsyncConnection) -> None:
        queued.clear()
        with telemetry.DB_WRITE_SECONDS.time():
            await store.store_records(conn, batch.envelopes)
            for finding in batch.findings:
                await store.store_finding(conn, finding)
                if await apply_finding(conn, finding, settings) is not None:
                    queued.append(finding)

    await _in_transaction(store_batch, sorted({str(e.upload_id) for e in batch.envelopes})[:10])
    for finding in queued:
        telemetry.ALERTS_QUEUED.labels(finding.category, finding.severity).inc()


async def _in_transaction(work: Callable[[AsyncConnection], Awaitable[None]], upload_ids: list[str]) -> None:
    """Run `work` in one transaction, retried with backoff until PostgreSQL takes it (never skipped).
    A refusal of the data itself would be refused again on every retry: it raises Unprocessable."""
    delay = 0.5
    while True:
        try:
            p = await pool()
            async with p.connection() as conn, conn.transaction():
                await work(conn)
            return
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
            telemetry.DB_ERRORS.labels("write").inc()
            raise Unprocessable(f"PostgreSQL refused the records: {error.sqlstate} {type(error).__name__}") from error
        except Exception as error:  # noqa: BLE001 - any other DB failure is retried, the events are not lost
            telemetry.DB_ERRORS.labels("write").inc()
            log.warning("database write failed, retrying", extra={
                "upload_ids": upload_ids, "error": type(error).__name__, "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _deadletter_unprocessable(event: faust.types.EventT, reason: str) -> None:
    """Dead-letter one event nothing can store (or the worker refuses: an invalid envelope, a record
    from the future), and name its upload in the deadletters table (next to ingest's rejections), so
    the team can find the archived upload and send it again once fixed."""
    envelopes = _envelopes([event])
    upload_ids = [str(e.upload_id) for e in envelopes]
    if upload_ids:
        async def record(conn: AsyncConnection) -> None:
            await conn.execute("INSERT INTO deadletters (stage, upload_id, reason) VALUES ('worker', %s, %s)",
                               (upload_ids[0], reason))

        await _in_transaction(record, upload_ids)
    kind = envelopes[0].record.kind if envelopes else "tick" if _is_tick(event) else "unknown"
    await _deadletter(event.key, event.value, reason, kind, upload_ids)


async def _deadletter(key: bytes | None, value: bytes, reason: str, kind: str = "unknown",
                      upload_ids: list[str] | None = None) -> None:
    telemetry.EVENTS_PROCESSED.labels(settings.measurements_topic, kind, "deadletter").inc()
    log.warning("event dead-lettered", extra={"reason": reason, "kind": kind, "upload_ids": upload_ids or []})
    await deadletter.send(key=key, value=json.dumps({"stage": "worker", "reason": reason,
                                                     "payload": value.decode("utf-8", "replace")}).encode())


dispatcher = Dispatcher(settings)


@app.timer(interval=settings.dispatch_interval_s)
async def dispatch_alerts() -> None:
    """Deliver what the outbox holds; failures back off per delivery, the timer keeps going."""
    try:
        p = await pool()
        async with p.connection() as conn:
            await dispatcher.dispatch_due(conn, http_client())
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


@app.timer(interval=settings.storage_upkeep_s)
async def storage_upkeep() -> None:
    """Create next months' partitions ahead and refresh the daily per-patient summary."""
    try:
        p = await pool()
        async with p.connection() as conn:
            await store.ensure_partitions(conn)
            await store.refresh_daily_summary(conn)
    except Exception as error:  # noqa: BLE001
        telemetry.DB_ERRORS.labels("upkeep").inc()
        log.warning("storage upkeep failed", extra={"error": type(error).__name__})


@app.page("/metrics")
async def metrics_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/healthz")
async def health_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    return web.json({"status": "ok"})


@app.page("/readyz")
async def ready_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
    """503 while the tables recover from their changelogs or PostgreSQL does not answer: events
    would wait either way (a load balancer or orchestrator should not count this worker yet)."""
    if app.in_recovery or not app.tables.recovery.completed.is_set():
        return web.json({"status": "recovering tables"}, status=503)
    if not await dbpool.answers_async(pool, timeout_s=3):
        return web.json({"status": "database unavailable"}, status=503)
    return web.json({"status": "ready"})


lag.register(app, measurements)


def main() -> None:
    """Run the worker in this process (`respmon worker`)."""
    sys.argv = [sys.argv[0], "worker", "--loglevel", settings.faust_log_level]
    app.main()
