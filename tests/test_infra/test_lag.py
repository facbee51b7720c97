"""processors/lag.py: lag = high watermark - committed offset (position before the first commit), per
assigned partition of the measurements topic; partitions that left this worker drop their series."""

import asyncio
from typing import NamedTuple

import faust
from prometheus_client import REGISTRY

from processors import lag

TOPIC = "lagtest.measurements"


class TP(NamedTuple):
    topic: str
    partition: int


class FakeConsumer:
    """The calls of faust's Consumer that lag.measure uses."""

    def __init__(self, assigned: set[TP], ends: dict[TP, int], committed: dict[TP, int | None],
                 positions: dict[TP, int], highwaters_fail: bool = False) -> None:
        self.assigned, self.ends, self.positions, self.fail = assigned, ends, positions, highwaters_fail
        self._committed_offset = committed

    def assignment(self) -> set[TP]:
        return self.assigned

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        if self.fail:
            raise ConnectionError("broker away")
        return {tp: self.ends[tp] for tp in tps}

    def highwater(self, tp: TP) -> int:
        return self.ends[tp] - 1  # the fetcher's last known value, older than end_offsets

    async def position(self, tp: TP) -> int:
        return self.positions[tp]


class FakeApp:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer


def _gauge(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("respmon_worker_consumer_lag", {"topic": topic, "partition": str(partition)})


def test_compute_lag_uses_committed_then_position_and_never_goes_negative() -> None:
    a, b, c, d = (TP(TOPIC, i) for i in range(4))
    lags = lag.compute_lag({a: 10, b: 10, c: None, d: 5}, {a: 7, b: None, c: 1, d: 9}, {b: 4})
    assert lags == {a: 3, b: 6, d: 0}  # c: end offset unknown -> no value rather than a wrong one


def test_measure_reads_only_the_topics_partitions_and_falls_back_on_the_fetchers_highwater() -> None:
    p0, p1, other = TP(TOPIC, 0), TP(TOPIC, 1), TP("lagtest.other", 0)
    consumer = FakeConsumer({p0, p1, other}, {p0: 100, p1: 50, other: 9}, {p0: 90, p1: None, other: 0}, {p1: 20})
    assert asyncio.run(lag.measure(FakeApp(consumer), {TOPIC})) == {p0: 10, p1: 30}  # type: ignore[arg-type]
    consumer.fail = True
    assert asyncio.run(lag.measure(FakeApp(consumer), {TOPIC})) == {p0: 9, p1: 29}  # type: ignore[arg-type]
    consumer.assigned = set()
    assert asyncio.run(lag.measure(FakeApp(consumer), {TOPIC})) == {}  # type: ignore[arg-type]


def test_publish_sets_the_gauge_and_drops_revoked_partitions() -> None:
    reported: set[tuple[str, str]] = set()
    lag.publish({TP(TOPIC, 0): 3, TP(TOPIC, 1): 0}, {TOPIC}, reported)
    assert _gauge(TOPIC, 0) == 3 and _gauge(TOPIC, 1) == 0
    lag.publish({TP(TOPIC, 1): 7}, {TOPIC}, reported)  # partition 0 moved to another worker
    assert _gauge(TOPIC, 0) is None and _gauge(TOPIC, 1) == 7
    lag.publish({}, {TOPIC}, reported)
    assert _gauge(TOPIC, 1) is None and reported == set()


def test_register_adds_a_timer_to_the_app() -> None:
    app = faust.App("respmon-lag-test", broker="kafka://127.0.0.1:1", autodiscover=False, store="memory://")
    topic = app.topic("lagtest.registered", key_serializer="raw", value_serializer="raw")
    before = len(app._app_tasks)
    lag.register(app, topic)
    assert len(app._app_tasks) == before + 1
    assert lag._topic_names(topic) == {"lagtest.registered"}

