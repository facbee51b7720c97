"""processors/faustfix: each patch still hooks into the upstream code it was written for (faust-streaming
0.15.3, aiokafka 0.14.0, mode-streaming 0.7.1, aiohttp 3.14.5), the upstream behaviour it works around
still reproduces, and the patch changes it. A failure here after an upgrade names the patch to review:
remove it if upstream fixed the bug, port it if upstream moved the code.

Where a behaviour needs a running broker to show, the test reads the upstream source for the line that
causes it (a canary, marked as such)."""

import asyncio
import inspect
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any, cast

import aiokafka
import faust
import pytest
from aiohttp import http as aiohttp_http
from aiohttp import web_response
from aiohttp.test_utils import make_mocked_request
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.subscription_state import TopicPartitionState
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.web.drivers import aiohttp as faust_aiohttp
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from processors import faustfix
from processors.faustfix import internals
from processors.faustfix.app import PatchedApp, Transport
from processors.faustfix.fetch import BatchingConsumer, BatchingConsumerThread
from processors.faustfix.flow import KeepQueuesOnResume
from processors.faustfix.producer import IdempotentProducer
from processors.faustfix.rewind import RewindingConsumer, RewindingConsumerThread, uncommitted_stream_tps
from processors.faustfix.web import SERVER_NAME, HealthOnlyWeb

STREAM = "faustfix-test.measurements"
CHANGELOG = "faustfix-test-history-changelog"


def _new_app(cls: type[faust.App] = PatchedApp, **options: Any) -> faust.App:
    return cls("faustfix-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False, **options)


@pytest.fixture
def app() -> faust.App:
    return faustfix.patched_app("faustfix-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)


def _source(obj: object) -> str:
    return inspect.getsource(cast(Any, obj))


# -- versions -------------------------------------------------------------------------------------------

def test_the_patches_run_on_the_versions_they_were_written_for() -> None:
    """pyproject.toml pins these two exactly; mode and aiohttp come with them."""
    assert (version("faust-streaming"), version("aiokafka")) == ("0.15.3", "0.14.0")


# -- App: the factory methods the patches plug into ---------------------------------------------------

def test_faust_builds_transport_flow_control_and_web_through_the_methods_patched_app_overrides() -> None:
    for name in ("_new_transport", "_new_producer_transport", "_new_web"):
        assert callable(getattr(faust.App, name)), name
        assert list(inspect.signature(getattr(faust.App, name)).parameters) == ["self"], name
    assert "flow_control" in vars(faust.App)  # a cached property PatchedApp shadows
    assert type(vars(faust.App)["flow_control"]) is type(vars(PatchedApp)["flow_control"])
    assert faust.transport.by_url("kafka://") is faust_aiokafka.Transport  # what the broker URL names


def test_a_patched_app_gets_every_patch_and_a_plain_app_none(app: faust.App) -> None:
    assert type(app.transport) is Transport and type(app.producer_transport) is Transport
    assert type(app.producer) is IdempotentProducer and type(app.consumer) is BatchingConsumer
    assert type(cast(Any, app.consumer)._thread) is BatchingConsumerThread
    assert isinstance(app.consumer, RewindingConsumer) and isinstance(cast(Any, app.consumer)._thread,
                                                                       RewindingConsumerThread)
    assert type(app.flow_control) is KeepQueuesOnResume and type(app.web) is HealthOnlyWeb
    plain = _new_app(faust.App)
    assert type(plain.producer) is faust_aiokafka.Producer and type(plain.consumer) is faust_aiokafka.Consumer
    assert type(plain.flow_control) is FlowControlEvent and type(plain.web) is faust_aiohttp.Web
    assert faust_aiokafka.Transport.Producer is faust_aiokafka.Producer  # nothing patched at module level


# -- producer -------------------------------------------------------------------------------------------

def test_faust_asks_for_acks_all_and_idempotence_only_in_transactions(app: faust.App) -> None:
    plain = faust_aiokafka.Producer(app.transport)
    assert "_settings_extra()" in _source(faust_aiokafka.Producer._new_producer)  # where the extra goes
    assert plain._settings_extra() == {}  # the upstream behaviour: at-least-once apps get acks=1


def test_the_idempotent_producer_builds_an_aiokafka_producer_with_acks_all_and_idempotence(app: faust.App) -> None:
    async def build() -> Any:
        return cast(IdempotentProducer, app.producer)._new_producer()

    producer = asyncio.run(build())
    assert isinstance(producer, aiokafka.AIOKafkaProducer)
    assert producer._sender._acks == -1 and producer._txn_manager is not None  # idempotence on


# -- rewind ---------------------------------------------------------------------------------------------

class _Seeks:
    """The calls of aiokafka's consumer that `seek_to_committed` and `_rewind` make."""

    def __init__(self, committed: dict[Any, int | None]) -> None:
        self.committed_offsets, self.calls = committed, cast(list[tuple[str, object]], [])

    async def committed(self, tp: TP) -> int | None:
        return self.committed_offsets[tp]

    def seek(self, tp: TP, offset: int) -> None:
        self.calls.append(("seek", (tp, offset)))

    async def seek_to_beginning(self, *tps: TP) -> None:
        self.calls.append(("beginning", tps))

    async def seek_to_end(self, *tps: TP) -> None:
        self.calls.append(("end", tps))

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return dict(self.committed_offsets)


def test_aiokafka_seek_to_committed_leaves_partitions_without_a_commit_or_at_zero_where_they_are() -> None:
    """The upstream bug: only a committed offset > 0 is sought (aiokafka/consumer/consumer.py:901)."""
    none, zero, five = (aiokafka.TopicPartition(STREAM, p) for p in range(3))
    fake = _Seeks({none: None, zero: 0, five: 5})
    consumer = cast(Any, aiokafka.AIOKafkaConsumer.__new__(aiokafka.AIOKafkaConsumer))
    consumer._subscription = type("Sub", (), {"assigned_partitions": lambda self: {none, zero, five}})()
    consumer.committed = fake.committed
    consumed: list[tuple[aiokafka.TopicPartition, int]] = []
    consumer._fetcher = type("Fetch", (), {"seek_to": lambda self, tp, offset: consumed.append((tp, offset))})()
    committed = asyncio.run(aiokafka.AIOKafkaConsumer.seek_to_committed(consumer, none, zero, five))
    assert committed == {none: None, zero: 0, five: 5}
    assert consumed == [(five, 5)]


def test_faust_fetches_with_its_live_active_set_and_aiokafka_reads_an_empty_set_as_all() -> None:
    """Canary: how aiokafka prefetched stream records reach faust before their partitions are active."""
    assert "if partitions and tp not in partitions" in _source(Fetcher.fetched_records)
    assert "active_partitions is None" in _source(faust_consumer.Consumer.getmany)
    assert "perform_seek()" in _source(Recovery.on_recovery_completed)  # faust relies on the seek


def test_the_hooks_the_rewinding_consumer_uses_still_exist() -> None:
    thread = faust_aiokafka.AIOKafkaConsumerThread
    assert inspect.iscoroutinefunction(thread.seek_to_committed)
    assert list(inspect.signature(thread.seek_to_committed).parameters) == ["self"]
    assert "seek_to_committed" in _source(thread.seek_to_committed)  # delegates to aiokafka's
    assert callable(thread._ensure_consumer) and inspect.iscoroutinefunction(thread.call_thread)
    assert "_new_consumer_thread()" in _source(faust_consumer.ThreadDelegateConsumer.__init__)


def test_the_rewinding_thread_rewinds_stream_partitions_without_a_commit_and_keeps_the_result(app: faust.App) -> None:
    none, zero, five, changelog = TP(STREAM, 0), TP(STREAM, 1), TP(STREAM, 2), TP(CHANGELOG, 0)
    fake = _Seeks({none: None, zero: 0, five: 5, changelog: None})
    thread = cast(Any, app.consumer)._thread
    thread._consumer = fake

    async def call_thread(method: Any, *args: Any, **kwargs: Any) -> Any:
        return await method(*args, **kwargs)

    thread.call_thread = call_thread
    cast(Any, app.topics)._acking_topics.add(STREAM)  # the agent's stream topic
    committed = asyncio.run(thread.seek_to_committed())
    assert committed == {none: None, zero: 0, five: 5, changelog: None}
    assert fake.calls == [("seek", (zero, 0)), ("beginning", (none,))]
    assert uncommitted_stream_tps(committed, {STREAM}) == {none: None, zero: 0}


# -- fetch ----------------------------------------------------------------------------------------------

def test_faust_builds_its_consumer_without_fetch_min_bytes_and_aiokafka_reads_both_at_start() -> None:
    """Canary: faust leaves aiokafka's 1-byte fetch_min_bytes (an answer per record); aiokafka hands the
    consumer's private fields to its Fetcher only in `start`, so setting them before then takes effect."""
    built = _source(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_min_bytes" not in built and "fetch_max_wait_ms=1500" in built
    started = _source(aiokafka.AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in started
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in started
    assert inspect.signature(aiokafka.AIOKafkaConsumer).parameters["fetch_min_bytes"].default == 1


def _worker_consumer(app: faust.App) -> Any:
    async def build() -> Any:
        thread = cast(Any, app.consumer)._thread
        return thread._create_worker_consumer(app.transport)
    return asyncio.run(build())


def test_the_worker_consumer_batches_its_fetches_as_the_app_says() -> None:
    app = faustfix.patched_app("faustfix-test", broker="kafka://127.0.0.1:1", store="memory://",
                               autodiscover=False, fetch_min_bytes=256 * 1024, fetch_max_wait_ms=100)
    consumer = _worker_consumer(app)
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (256 * 1024, 100)


def test_without_fetch_settings_the_worker_consumer_fetches_as_faust_does(app: faust.App) -> None:
    consumer = _worker_consumer(app)
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1, 1500)


def test_the_worker_passes_its_fetch_settings_to_the_app() -> None:
    from processors.app import Worker
    from respmon.core.settings import Settings

    worker = Worker(Settings(worker_fetch_min_bytes=4096, worker_fetch_max_wait_ms=50, worker_store="memory"))
    consumer = _worker_consumer(worker.app)
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (4096, 50)


# -- flow -----------------------------------------------------------------------------------------------

def _queue_after_resume(event_type: type[FlowControlEvent]) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        flow = event_type()
        queue: FlowControlQueue[int] = FlowControlQueue(maxsize=10, flow_control=flow, clear_on_resume=True)
        flow.resume()
        for n in range(3):
            await queue.put(n)
        flow.resume()  # faust does this again at the end of table recovery
        kept = queue.qsize()
        flow.clear()  # faust does this when partitions are revoked
        return kept, queue.qsize()
    return asyncio.run(run())


def test_mode_resume_empties_the_queues_which_is_why_it_is_replaced() -> None:
    assert _queue_after_resume(FlowControlEvent) == (0, 0)


def test_resume_keeps_delivered_events_and_clear_still_empties() -> None:
    assert _queue_after_resume(KeepQueuesOnResume) == (3, 0)


def test_faust_stream_queues_clear_on_resume_and_recovery_resumes_after_the_seek(app: faust.App) -> None:
    queue = cast(Any, app.channel().queue)
    assert queue._clear_on_resume is True and queue._flow_control is app.flow_control
    source = _source(Recovery.on_recovery_completed)  # canary: the window events were lost in
    assert source.index("perform_seek()") < source.index("flow_control.resume()")
    assert {"_suspend", "_resume"} <= set(vars(FlowControlEvent()))  # what KeepQueuesOnResume.resume sets


# -- web ------------------------------------------------------------------------------------------------

def _routes(app: faust.App) -> set[str]:
    web = cast(faust_aiohttp.Web, app.web)
    web.init_server()
    return {r.resource.canonical for r in web.web_app.router.routes() if r.resource is not None}


@pytest.fixture(autouse=True)
def server_software(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """HealthOnlyWeb sets aiohttp's module default; put it back after each test."""
    monkeypatch.setattr(web_response, "SERVER_SOFTWARE", aiohttp_http.SERVER_SOFTWARE)  # aiohttp's own
    yield


def test_faust_serves_its_tables_and_router_views_unless_its_blueprints_are_left_out() -> None:
    assert {"/table/{name}/{key}/", "/router/"} <= _routes(_new_app(faust.App))  # the upstream behaviour
    assert "self._enabled_blueprints()" in _source(faust.web.Web.__init__)


def test_health_only_web_serves_no_builtin_view_even_with_every_faust_view_setting_on() -> None:
    app = _new_app(web_tables_enabled=True, web_router_enabled=True, web_stats_enabled=True,
                   web_graph_enabled=True, web_metrics_enabled=True)
    assert _routes(app) == set()


def test_aiohttp_names_itself_from_a_module_default_and_health_only_web_replaces_it() -> None:
    async def server_header() -> str:
        response = web_response.Response()
        await response.prepare(make_mocked_request("GET", "/"))
        return response.headers["Server"]

    assert asyncio.run(server_header()).startswith("Python/")  # aiohttp's default names the versions
    assert _new_app().web is not None
    assert web_response.SERVER_SOFTWARE == SERVER_NAME and asyncio.run(server_header()) == SERVER_NAME
    assert hasattr(cast(faust_aiohttp.Web, _new_app().web).web_app, "on_response_prepare")


# -- internals ------------------------------------------------------------------------------------------

def test_faust_consumer_keeps_the_private_state_the_lag_gauge_and_stall_log_read(app: faust.App) -> None:
    consumer = cast(Any, app.consumer)
    tp = TP(STREAM, 0)
    assert internals.committed_offset(app.consumer, tp) is None
    consumer._committed_offset[tp] = 42
    assert internals.committed_offset(app.consumer, tp) == 42
    for name in ("_active_partitions", "_paused_partitions", "_buffered_partitions"):
        assert isinstance(getattr(consumer, name), set), name
    assert hasattr(consumer, "_read_offset") and isinstance(consumer.flow_active, bool)
    state = internals.consumer_state(app, [tp])  # aiokafka not started: faust's part only
    assert {"flow_active", "queued", "generation"} <= set(state) and f"{STREAM}:0" not in state


def test_aiokafka_keeps_the_private_state_the_stall_log_reads() -> None:
    """aiokafka's consumer state exists only once it runs: read where it is set."""
    assert "self._records = " in _source(Fetcher.__init__) and "self._in_flight = " in _source(Fetcher.__init__)
    assert "self._position = " in _source(TopicPartitionState.__init__)
    assert isinstance(vars(TopicPartitionState)["paused"], property)
    consumer_init = _source(aiokafka.AIOKafkaConsumer.__init__)
    assert "self._subscription = " in consumer_init and "self._fetcher = " in consumer_init


def test_a_stream_writes_tables_to_its_current_event_and_buffers_fetched_events(app: faust.App) -> None:
    channel = app.channel()
    stream = app.stream(channel)
    event = cast(Any, object.__new__(faust.Event))
    internals.set_current_event(stream, event)
    assert stream.current_event is event
    assert internals.more_waiting(stream) is False
    cast(Any, stream.channel).queue.put_nowait("next")  # the stream's own clone of the channel
    assert internals.more_waiting(stream) is True


def test_tables_count_as_recovered_only_once_faust_says_so(app: faust.App) -> None:
    assert internals.tables_recovered(app) is False  # not started
    cast(Any, app.tables).recovery.completed.set()
    assert internals.tables_recovered(app) is True


# -- RocksDB table store --------------------------------------------------------------------------------

class _FakeMessage:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class _FakeEvent:
    """What faust's RocksDB store reads of the current event: `message.partition`."""

    def __init__(self, partition: int) -> None:
        self.message = _FakeMessage(partition)


def test_rocksdb_reads_a_key_from_the_current_events_partition_which_is_why_the_worker_focuses_each_event(
        tmp_path: Any) -> None:
    """faust's RocksDB store keeps one database per partition and looks a key up in the database of the
    current event's partition only (faust/stores/rocksdb.py `Store._get`): a batch mixing partitions must
    make each event current before reading its patient's history (processors/app.py `Worker.evaluate`),
    or a patient on another partition reads as new. `internals.rocksdb_databases` sees the open databases."""
    rocks = faustfix.patched_app("faustfix-rocks", broker="kafka://127.0.0.1:1", store="rocksdb://",
                                 datadir=str(tmp_path), autodiscover=False)
    table = rocks.Table("history", default=None, partitions=2, key_type=str, value_type=bytes,
                        options={"block_cache_size": 1024 * 1024})
    stream = rocks.stream(rocks.channel())
    on_0, on_1 = _FakeEvent(0), _FakeEvent(1)
    store = cast(Any, table.data)
    internals.set_current_event(stream, cast(Any, on_0))
    store._set(b"P1", b"history of P1")
    internals.set_current_event(stream, cast(Any, on_1))
    assert store._get(b"P1") is None  # the other partition's database: upstream behaviour
    internals.set_current_event(stream, cast(Any, on_0))
    assert store._get(b"P1") == b"history of P1"
    databases = internals.rocksdb_databases(table)
    assert databases is not None and len(databases) == 2
    memory_table = faustfix.patched_app("faustfix-mem", broker="kafka://127.0.0.1:1", store="memory://",
                                        autodiscover=False).Table("history", partitions=2)
    assert internals.rocksdb_databases(memory_table) is None
