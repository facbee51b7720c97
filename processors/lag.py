"""Consumer lag of the worker as a Prometheus gauge, per assigned partition of the measurements topic.

    respmon_worker_consumer_lag{topic,partition} = end offset (high watermark) - committed offset

in messages. The committed offset is the next offset the consumer group will resume from (faust keeps
it in a private attribute, read through processors/faustfix/internals.py); before the group has
committed anything on a partition, the consumer's current position stands in for it. Each worker
reports the partitions it owns; a partition that moves to another worker after a rebalance is removed
from this worker's series, so summing over workers never counts a partition twice. A worker that is
down reports nothing: the `up` series (alert RespmonTargetDown) covers that case.
"""

import asyncio
import gc
import logging
import os
import time
import traceback
import types
from collections.abc import Iterable, Mapping
from typing import TypeVar

import faust
from faust.types import TP
from prometheus_client import Counter, Gauge

from processors import telemetry
from processors.faustfix.internals import committed_offset, consumer_state
from respmon.core.exits import STALL_EXIT

log = logging.getLogger("respmon.worker.lag")

LAG_INTERVAL_S = 5.0

CONSUMER_LAG = Gauge(
    "respmon_worker_consumer_lag",
    "Messages not yet committed by this worker's consumer group, per assigned partition",
    ["topic", "partition"],
)
LAG_ERRORS = Counter(
    "respmon_worker_consumer_lag_errors_total",
    "Rounds of the consumer-lag measurement that failed (broker unreachable, consumer not started)",
)


Partition = TypeVar("Partition")


def compute_lag(highwaters: Mapping[Partition, int | None], committed: Mapping[Partition, int | None],
                positions: Mapping[Partition, int | None]) -> dict[Partition, int]:
    """Lag per partition: high watermark minus committed offset (or position when nothing is committed).

    Partitions without a known high watermark, or with neither committed offset nor position, are left
    out (no value is better than a wrong one). Never negative.
    """
    lags: dict[Partition, int] = {}
    for tp, end in highwaters.items():
        if end is None:
            continue
        done = committed.get(tp)
        if done is None:
            done = positions.get(tp)
        if done is None:
            continue
        lags[tp] = max(0, int(end) - int(done))
    return lags


def _topic_names(topic: object) -> set[str]:
    names = getattr(topic, "topics", None)
    if names:
        return {str(n) for n in names}
    return {str(topic)}


async def measure(app: faust.App, topics: Iterable[str]) -> dict[TP, int]:
    """One round: read assignment, end offsets and committed offsets from faust's consumer."""
    consumer = app.consumer
    wanted = set(topics)
    assigned = sorted((tp for tp in consumer.assignment() if tp.topic in wanted),
                      key=lambda tp: (tp.topic, tp.partition))
    if not assigned:
        return {}
    try:
        highwaters: Mapping[TP, int | None] = dict(await consumer.highwaters(*assigned))
    except Exception:  # noqa: BLE001 - fall back on the fetcher's last known high watermark
        highwaters = {tp: consumer.highwater(tp) for tp in assigned}
    committed = {tp: committed_offset(consumer, tp) for tp in assigned}
    positions: dict[TP, int | None] = {}
    for tp in assigned:
        if committed[tp] is None:
            positions[tp] = await consumer.position(tp)
    return compute_lag(highwaters, committed, positions)


def publish(lags: Mapping[TP, int], topics: Iterable[str], reported: set[tuple[str, str]]) -> None:
    """Set the gauge for the partitions measured; drop the series of partitions no longer assigned."""
    current = {(tp.topic, str(tp.partition)): lag for tp, lag in lags.items()}
    for labels, lag in current.items():
        CONSUMER_LAG.labels(*labels).set(lag)
    wanted = set(topics)
    for labels in list(reported):
        if labels not in current and labels[0] in wanted:
            try:
                CONSUMER_LAG.remove(*labels)
            except KeyError:
                pass
            reported.discard(labels)
    reported.update(current)


STALL_S = 30.0
# longer than `_write`'s longest pause between retries (30 s) plus one pool timeout (respmon/core/dbpool.py)
DB_QUIET_S = 45.0
STALLS = Counter(
    "respmon_worker_stream_stalls_total",
    "Partitions with lag whose stream made no progress for 30 s while the database answered; the worker restarts",
)


class StallWatch:
    """Notices a partition with lag whose stream makes no progress at all: neither the fetch position nor
    the committed offset moves for `stall_s`, and the database has not failed a write for `db_quiet_s`.

    The fetch position alone is no measure of progress: faust fetches a partition to its end in seconds
    and then works through its buffer, so a partition whose events wait for PostgreSQL (an outage) or for
    a slow machine stands still there for minutes while the worker is healthy. Watching only the
    position made the watch restart healthy workers in the PostgreSQL-outage test, and under CPU load.
    """

    def __init__(self, stall_s: float = STALL_S, db_quiet_s: float = DB_QUIET_S) -> None:
        self.stall_s = stall_s
        self.db_quiet_s = db_quiet_s
        self.since: dict[object, tuple[object, float]] = {}
        self.db_errors: float | None = None
        self.db_failed_at = float("-inf")

    def note_db_errors(self, total: float, now: float) -> None:
        """Feed the worker's database error count; a change means the stream may be waiting for it."""
        if self.db_errors is not None and total != self.db_errors:
            self.db_failed_at = now
        self.db_errors = total

    def check(self, lags: Mapping[Partition, int], progress: Mapping[Partition, object],
              now: float) -> list[Partition]:
        """Partitions stalled now; `progress` is anything that changes when a partition moves
        (here: fetch position and committed offset)."""
        stalled: list[Partition] = []
        db_quiet = now - self.db_failed_at >= self.db_quiet_s
        for tp, lag in lags.items():
            mark = progress.get(tp)
            previous = self.since.get(tp)
            if lag <= 0 or previous is None or previous[0] != mark:
                self.since[tp] = (mark, now)
            elif now - previous[1] >= self.stall_s and db_quiet:
                stalled.append(tp)
                self.since[tp] = (mark, now)
        return stalled


def task_stacks(limit: int = 8) -> list[str]:
    """The innermost frames of every asyncio task: where the stream, the fetcher and the timers wait."""
    out = []
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=limit)
        where = "".join(traceback.format_list(
            [traceback.FrameSummary(f.f_code.co_filename, f.f_lineno, f.f_code.co_name) for f in frames]))
        out.append(f"{task.get_name()}:\n{where}")
    return out + suspended_coroutines()


_WATCHED = ("/processors/", "/alerts/", "psycopg", "faust/streams", "faust/agents", "faust/channels",
            "faust/tables", "faust/topics")


def suspended_coroutines() -> list[str]:
    """Where our own (and faust's stream) coroutines and async generators wait. A task's stack stops at
    the first awaitable that is not a coroutine (faust's actor wrapper, an async generator), so the
    agent's body never shows in `task_stacks`; the suspended frames themselves do."""
    out = []
    for obj in gc.get_objects():
        if not isinstance(obj, (types.CoroutineType, types.AsyncGeneratorType)):
            continue
        frame = obj.cr_frame if isinstance(obj, types.CoroutineType) else obj.ag_frame
        if frame is None:
            continue
        if any(part in frame.f_code.co_filename for part in _WATCHED):
            awaiting = obj.cr_await if isinstance(obj, types.CoroutineType) else obj.ag_await
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                       f" awaiting {type(awaiting).__name__}")
    return sorted(out)


def diagnose(app: faust.App, tps: Iterable[TP]) -> dict[str, object]:
    """State and stacks for the log; a failure here must never keep the worker from restarting."""
    try:
        return {"state": consumer_state(app, tps), "tasks": task_stacks()}
    except Exception as error:  # noqa: BLE001
        return {"diagnose_error": repr(error)}


def db_error_total() -> float:
    """All database errors the worker counted (writes, dispatch, escalation, upkeep)."""
    return sum(sample.value for metric in telemetry.DB_ERRORS.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


def unprocessed(highwater: int | None, committed: int | None, earliest: int | None, gauge_lag: int) -> int:
    """Lag for the stall watch. The gauge measures a partition nobody committed yet from the consumer's
    position, which reads 0 once its records were fetched, processed or not; here it is measured from
    the partition's first offset instead, so a stream that lost such records still shows lag."""
    if committed is not None or highwater is None or earliest is None:
        return gauge_lag
    return max(0, int(highwater) - int(earliest))


async def stall_lags(app: faust.App, lags: Mapping[TP, int]) -> dict[TP, int]:
    """The lags the stall watch judges (see `unprocessed`)."""
    consumer = app.consumer
    uncommitted = [tp for tp in lags if committed_offset(consumer, tp) is None]
    earliest: Mapping[TP, int] = dict(await consumer.earliest_offsets(*uncommitted)) if uncommitted else {}
    return {tp: unprocessed(consumer.highwater(tp), committed_offset(consumer, tp), earliest.get(tp), lag)
            for tp, lag in lags.items()}


async def unstall(app: faust.App, watch: StallWatch, lags: Mapping[TP, int]) -> None:
    """Exit (the supervisor starts a fresh worker) when a partition's stream stalled.

    Resuming the partition in place was tried first and never helped: in every stall recorded the
    records had already left aiokafka and were nowhere in faust; a new consumer starts again from the
    committed offset. At-least-once consumption with idempotent effects makes the replay harmless.
    """
    consumer = app.consumer
    progress = {tp: (await consumer.position(tp), committed_offset(consumer, tp)) for tp in lags}
    now = time.monotonic()
    watch.note_db_errors(db_error_total(), now)
    stalled = watch.check(await stall_lags(app, lags), progress, now)
    if not stalled:
        return
    names = [f"{tp.topic}:{tp.partition}" for tp in stalled]
    STALLS.inc(len(stalled))
    log.error("stream stalled with lag; restarting the worker", extra={"partitions": names, **diagnose(app, stalled)})
    logging.shutdown()
    os._exit(STALL_EXIT)


def register(app: faust.App, topic: object) -> None:
    """Define a faust timer on `app` that refreshes the lag gauge for `topic` every few seconds."""
    names = _topic_names(topic)
    reported: set[tuple[str, str]] = set()
    watch = StallWatch()

    @app.timer(interval=LAG_INTERVAL_S, name=f"{__name__}.consumer_lag")
    async def consumer_lag() -> None:
        try:
            lags = await measure(app, names)
        except Exception as error:  # noqa: BLE001 - a failed round must not stop the timer
            LAG_ERRORS.inc()
            log.debug("consumer lag not measured", extra={"error": type(error).__name__})
            return
        publish(lags, names, reported)
        try:
            await unstall(app, watch, lags)
        except Exception as error:  # noqa: BLE001
            log.warning("stall check failed", extra={"error": type(error).__name__})

