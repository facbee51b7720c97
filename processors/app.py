"""The worker: a faust app whose agent turns each measurement into stored rows, findings and alerts.

Flow of one event (keyed by patient id, so a patient's events arrive in order on one partition):
  measurements topic -> `process_measurements` -> PatientHistory (faust table, changelog-backed)
  -> rules engine step -> one PostgreSQL transaction for the batch of events already fetched (record
  upserts, findings, alerts + outbox) -> table update -> ack. Delivery is at-least-once; every effect
  is idempotent, so a replay doubles nothing.

Built by `create_app(settings)` (or `Worker(settings)`, which also holds the topics, table, rules and
pool): importing this module reads no settings, loads no rules and patches nothing. The faust
workarounds live in processors/faustfix/.
"""

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import faust
import httpx
import psycopg
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import EventT, StreamT, TableT, TopicT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from alerts.carestate import record_async as record_care_state
from alerts.decide import Notification
from alerts.dispatcher import Dispatcher
from alerts.escalation import escalate_due
from alerts.lifecycle import apply_findings
from processors import faustfix, lag, store, telemetry
from processors.batch import Batch, Unprocessable, envelopes, evaluate_all, is_care_state, is_tick, raw_value
from processors.faustfix import internals
from processors.rules.loader import load_rules
from respmon.core import dbpool
from respmon.core.exits import CRASH_EXIT
from respmon.core.logs import logging_config
from respmon.core.settings import Settings
from schemas import Tick

__all__ = ["Worker", "create_app", "run"]
log = logging.getLogger("respmon.worker")


def faust_options(settings: Settings) -> dict[str, Any]:
    """The faust settings of the worker's app, from the one typed `Settings`."""
    return {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "store": f"{settings.worker_store}://",  # RocksDB files under datadir/<app id>-data/v1/tables/
        "table_standby_replicas": settings.worker_standby_replicas,
        "autodiscover": False,
        "datadir": str(settings.worker_data_dir),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "producer_acks": -1,
        # a batch's changelog writes and findings gather for 5 ms into one produce request instead of one
        # each (faust's default is 0): the broker's CPU per upload fell 2.3 -> 1.9 ms in bench/e2e.py
        "producer_linger": 0.005,
        "producer_max_request_size": 8 * 1024 * 1024,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.worker_session_timeout_s,
        "broker_heartbeat_interval": max(1.0, settings.worker_session_timeout_s / 5),
        "web_host": settings.worker_host,
        "web_bind": settings.worker_host,  # faust binds 0.0.0.0 unless told (F_WEB_BIND); web_host only names it
        "web_port": settings.worker_web_port,
        "web_in_thread": False,
        # faust's built-in views off (faustfix's web registers none of them either): no /table/<patient> (a whole
        # history, without a credential), /router (the cluster), statistics, graph, performance
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_metrics_enabled": False,
        "logging_config": logging_config(settings.log_level, settings.log_repeat_window_s),  # as every service
    }


def table_options(settings: Settings) -> dict[str, Any] | None:
    """RocksDB options of the patient-history table: faust's defaults give each partition's database a
    2 GiB block cache and 3 x 64 MiB memtables, so memory would grow with the partitions a worker holds;
    these bound the whole table by `worker_rocksdb_cache_mib` plus small memtables. None in memory."""
    if settings.worker_store != "rocksdb":
        return None
    per_partition = max(1, settings.worker_rocksdb_cache_mib // settings.topic_partitions) * 1024 * 1024
    return {"block_cache_size": per_partition, "write_buffer_size": 8 * 1024 * 1024, "max_write_buffer_number": 2,
            "target_file_size_base": 32 * 1024 * 1024}


def _raw_topic(app: faust.App, name: str, partitions: int | None = None) -> TopicT:
    """A topic of raw bytes: keys are patient ids, values JSON the worker encodes and decodes itself."""
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)


class Worker:
    """One worker: its settings, faust app, topics, table, rules, database pool and HTTP client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rules = load_rules(settings.rules_file, settings.rules_overrides)
        self.app = faustfix.patched_app(settings.worker_app_id, fetch_min_bytes=settings.worker_fetch_min_bytes,
                                       fetch_max_wait_ms=settings.worker_fetch_max_wait_ms,
                                       **faust_options(settings))
        self.measurements = _raw_topic(self.app, settings.measurements_topic, settings.topic_partitions)
        self.deadletter = _raw_topic(self.app, settings.deadletter_topic)
        self.findings_topic = _raw_topic(self.app, settings.findings_topic)
        # Values are the histories' own compact JSON bytes (`PatientHistory.to_json`), held as they are: a decoded
        # dict took 2.8x the memory (bench/history_cost.py). The bytes are what faust's JSON codec wrote before,
        # so a changelog written by an older worker recovers unchanged. (value_type=dict had failed on every
        # changelog record: faust decodes a non-Model value_type with `value_type.from_data`.)
        self.histories = self.app.Table("patient-history", default=None, partitions=settings.topic_partitions,
                                        key_type=str, value_type=bytes,  # bytes: the raw codec
                                        options=table_options(settings))
        self.dispatcher = Dispatcher(settings)
        self._pool: AsyncConnectionPool | None = None
        self._http: httpx.AsyncClient | None = None
        _register(self)

    def stored_history(self, patient: str) -> bytes | None:
        """A patient's history as the table holds it (compact JSON bytes), None when none."""
        value = self.histories.get(patient)
        return value if isinstance(value, bytes) else None

    async def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            # bounded reconnects: see dbpool
            self._pool = dbpool.new_async_pool(self.settings.database_url, min_size=1, max_size=4)
            await self._pool.open(wait=True, timeout=60)
        return self._pool

    def http_client(self) -> httpx.AsyncClient:
        """One client for every dispatch round: a new one per round built a TLS context each time
        (measured: 30 % of the worker's CPU under load, for rounds that mostly had nothing to send)."""
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    async def evaluate(self, stream: StreamT, events: list[EventT]) -> Batch:
        """Evaluate `events` in order against the histories the table holds (nothing written). Each event is
        made the stream's current one first: RocksDB reads a key from the database of the current event's
        partition, and a batch holds events of several partitions."""
        return await evaluate_all(events, self.stored_history, self.rules, self.settings.max_clock_skew_s,
                                  focus=lambda event: internals.set_current_event(stream, event))

    async def consume(self, stream: StreamT) -> None:
        """Events are gathered while more are already waiting (up to `worker_batch_max`), then written in
        one PostgreSQL transaction and only then acknowledged (committed offsets never pass an unwritten
        event). An idle stream flushes at once, so a lone upload is not held back waiting for company.

        faust's `take_events` was tried and rejected: it held the last event of a partition back until
        another arrived (measured: an oximetry night stayed unprocessed, lag 1, for minutes).
        """
        stream.enable_acks = False  # acked below, after the batch is stored
        pending: list[EventT] = []
        async for event in stream.events():
            pending.append(event)
            if len(pending) >= self.settings.worker_batch_max or not internals.more_waiting(stream):
                try:
                    await self.handle_batch(stream, pending)
                except Exception as error:  # noqa: BLE001 - see `_crash`
                    _crash(error, pending)
                for done in pending:
                    await stream.ack(done)
                pending = []

    async def handle_batch(self, stream: StreamT, events: list[EventT]) -> None:
        """Evaluate the events in order, store everything in one transaction, then update the table.

        A batch that cannot be stored as a whole is taken again one event at a time, and an event that
        still cannot is dead-lettered: one bad record must not stop the monitoring of every patient on its
        partition. Histories change only once a batch is stored, so each retry starts from a clean state.
        """
        try:
            batch = await self.evaluate(stream, events)
            await self._write(batch)
        except Unprocessable as error:
            if len(events) == 1:
                await self._deadletter_unprocessable(events[0], error.reason)
                return
            log.warning("batch refused; taking its events one at a time", extra={"events": len(events),
                                                                              "reason": error.reason})
            for event in events:
                await self.handle_batch(stream, [event])
            return
        await self._apply(stream, batch)

    async def _apply(self, stream: StreamT, batch: Batch) -> None:
        """After the batch is stored: table writes, counters, dead letters and the findings topic."""
        for patient, history in batch.histories.items():
            # a table write goes to the changelog partition of the current event: the patient's own
            internals.set_current_event(stream, batch.last_event[patient])
            self.histories[patient] = history.to_json()
        for kind in batch.kinds:
            telemetry.EVENTS_PROCESSED.labels(self.settings.measurements_topic, kind, "ok").inc()
        for event, reason in batch.rejected:
            await self._deadletter_unprocessable(event, reason)
        now = datetime.now(UTC)
        for finding in batch.findings:
            telemetry.FINDINGS.labels(finding.category, finding.severity, finding.state).inc()
            await self.findings_topic.send(key=finding.patient_id.encode(), value=finding.model_dump_json().encode())
            if finding.received_at is not None:
                telemetry.UPLOAD_TO_FINDING.observe((now - finding.received_at).total_seconds())

    async def _write(self, batch: Batch) -> None:
        """One transaction per batch: record upserts, findings, alerts and their outbox rows."""
        telemetry.BATCH_EVENTS.observe(len(batch.envelopes))
        queued: list[Notification] = []
        # patient -> time of their newest data: alerts a backfill raised silently are announced once it is recent
        latest = {p: t for p, h in batch.histories.items() if (t := h.last_event()) is not None}

        async def store_batch(conn: AsyncConnection) -> None:
            queued.clear()
            with telemetry.DB_WRITE_SECONDS.time():
                await store.store_records(conn, batch.envelopes)
                for change in batch.care_states:  # the audit row, in the transaction of what it resolves
                    await record_care_state(conn, change)
                await store.store_findings(conn, batch.findings)
                # one decision per evaluation and category: rules opening together share one notification
                queued.extend(await apply_findings(conn, batch.findings, self.settings, latest=latest))

        await self._in_transaction(store_batch, sorted({str(e.upload_id) for e in batch.envelopes})[:10])
        for note in queued:
            telemetry.ALERTS_QUEUED.labels(note.category, note.severity).inc()

    async def _in_transaction(self, work: Callable[[AsyncConnection], Awaitable[None]],
                              upload_ids: list[str]) -> None:
        """Run `work` in one transaction, retried with backoff until PostgreSQL takes it (never skipped).
        A refusal of the data itself would be refused again on every retry: it raises Unprocessable."""
        delay = 0.5
        while True:
            try:
                p = await self.pool()
                async with p.connection() as conn, conn.transaction():
                    await work(conn)
                return
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
                telemetry.DB_ERRORS.labels("write").inc()
                raise Unprocessable(f"PostgreSQL refused the records: {error.sqlstate} "
                                    f"{type(error).__name__}") from error
            except Exception as error:  # noqa: BLE001 - any other DB failure is retried, the events are not lost
                telemetry.DB_ERRORS.labels("write").inc()
                log.warning("database write failed, retrying", extra={
                    "upload_ids": upload_ids, "error": type(error).__name__, "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _deadletter_unprocessable(self, event: EventT, reason: str) -> None:
        """Dead-letter one event nothing can store (or the worker refuses: an invalid envelope, a record
        from the future), and name its upload in the deadletters table (next to ingest's rejections), so
        the team can find the archived upload and send it again once fixed."""
        found = envelopes([event])
        upload_ids = [str(e.upload_id) for e in found]
        if upload_ids:
            async def record(conn: AsyncConnection) -> None:
                await conn.execute("INSERT INTO deadletters (stage, upload_id, reason) VALUES ('worker', %s, %s)",
                                   (upload_ids[0], reason))

            await self._in_transaction(record, upload_ids)
        kind = found[0].record.kind if found else _message_kind(event)
        telemetry.EVENTS_PROCESSED.labels(self.settings.measurements_topic, kind, "deadletter").inc()
        log.warning("event dead-lettered", extra={"reason": reason, "kind": kind, "upload_ids": upload_ids})
        payload = raw_value(event).decode("utf-8", "replace")
        await self.deadletter.send(key=event.key, value=json.dumps({"stage": "worker", "reason": reason,
                                                                     "payload": payload}).encode())

    async def with_connection(self, stage: str, failed: str,
                              work: Callable[[AsyncConnection], Awaitable[object]]) -> None:
        """One round of a timer on a pooled connection; a failure is counted and logged, the timer goes on."""
        try:
            p = await self.pool()
            async with p.connection() as conn:
                await work(conn)
        except Exception as error:  # noqa: BLE001 - counted and logged: the next round tries again
            telemetry.DB_ERRORS.labels(stage).inc()
            log.warning(failed, extra={"error": type(error).__name__})

    async def tick_patients(self) -> None:
        """Ask for a re-evaluation of every patient whose state lives on this worker's partitions."""
        now = Tick(tick_at=datetime.now(UTC)).model_dump_json().encode()
        for patient in list(self.histories.keys()):
            await self.measurements.send(key=patient.encode(), value=now)

    async def readiness(self) -> tuple[str, int]:
        """503 while the tables recover from their changelogs or PostgreSQL does not answer: events
        would wait either way (a load balancer or orchestrator should not count this worker yet)."""
        if not internals.tables_recovered(self.app):
            return "recovering tables", 503
        if not await dbpool.answers_async(self.pool, timeout_s=3):
            return "database unavailable", 503
        return "ready", 200


def history_footprint(table: TableT) -> tuple[int, int]:
    """Patient histories the table holds and their bytes. In memory: counted exactly (~1 ms for 10,000).
    On RocksDB, reading every value at each scrape would read the whole table from disk: RocksDB's own
    estimates of keys and of bytes (live data in its files, compressed, plus its memtables; standby partitions
    included), which are coarse: a small write does not move them."""
    databases = internals.rocksdb_databases(table)
    if databases is None:
        return telemetry.history_footprint(table.values())
    keys = size = 0
    for db in databases:
        offset_key = int(db.get(RocksDBStore.offset_key) is not None)  # faust's changelog offset, no patient
        keys += max(0, (db.property_int_value("rocksdb.estimate-num-keys") or 0) - offset_key)
        size += (db.property_int_value("rocksdb.estimate-live-data-size") or 0) + \
            (db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0)
    return keys, size


def _message_kind(event: EventT) -> str:
    """What a message that is no envelope is, for the counters and log lines."""
    return "tick" if is_tick(event) else "care_state" if is_care_state(event) else "unknown"


def _crash(error: Exception, pending: list[EventT]) -> NoReturn:
    """A batch failed with anything but a database error (retried inside) or a bad record (dead-lettered):
    Kafka, a bug outside the rules. faust would restart the agent in place, and these fetched,
    unacknowledged events would wait for the stall watch; a new process re-reads them from the committed
    offsets instead (the supervisor starts it)."""
    log.error("batch failed; restarting the worker", extra={
        "error": type(error).__name__, "events": len(pending),
        "upload_ids": sorted({str(e.upload_id) for e in envelopes(pending)})[:10]})
    logging.shutdown()
    os._exit(CRASH_EXIT)


def _register(worker: Worker) -> None:
    """The agent, the timers, the pages and the lag gauge of `worker.app`."""
    worker.app.agent(worker.measurements, name=f"{__name__}.process_measurements")(worker.consume)
    # respmon_worker_patient_history{ies,_bytes}: memory (or disk) planning
    telemetry.watch_histories(lambda: history_footprint(worker.histories))
    _register_timers(worker)
    _register_pages(worker)
    lag.register(worker.app, worker.measurements)


def _register_timers(worker: Worker) -> None:
    app, settings = worker.app, worker.settings

    async def dispatch_alerts() -> None:
        """Deliver what the outbox holds; failures back off per delivery, the timer keeps going."""
        await worker.with_connection("dispatch", "dispatch round failed",
                                     lambda conn: worker.dispatcher.dispatch_due(conn, worker.http_client()))

    async def escalate_alerts() -> None:
        """Re-send open alerts nobody acknowledged in time to the escalation routes."""
        await worker.with_connection("escalation", "escalation round failed", lambda conn: escalate_due(conn, settings))

    async def storage_upkeep() -> None:
        """Create next months' partitions ahead and refresh the daily per-patient summary."""
        async def upkeep(conn: AsyncConnection) -> None:
            await store.ensure_partitions(conn)
            await store.refresh_daily_summary(conn)

        await worker.with_connection("upkeep", "storage upkeep failed", upkeep)

    for interval, timer in ((settings.dispatch_interval_s, dispatch_alerts),
                            (settings.escalation_check_s, escalate_alerts),
                            (settings.tick_interval_s, worker.tick_patients),
                            (settings.storage_upkeep_s, storage_upkeep)):
        app.timer(interval=interval, name=f"{__name__}.{timer.__name__}")(timer)


def _register_pages(worker: Worker) -> None:
    app = worker.app

    @app.page("/metrics")
    async def metrics_page(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return view.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def health_page(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return view.json({"status": "ok"})

    @app.page("/readyz")
    async def ready_page(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        status, code = await worker.readiness()
        return view.json({"status": status}, status=code)


def create_app(settings: Settings) -> faust.App:
    """The worker's faust app, built from `settings` (as ingest's and the team API's `create_app`)."""
    return Worker(settings).app


def run(settings: Settings) -> NoReturn:
    """Run the worker in this process (the child `respmon worker` supervises)."""
    app = create_app(settings)
    sys.argv = [sys.argv[0], "worker", "--loglevel", settings.faust_log_level]
    app.main()
