"""Fetches that wait for a batch of records instead of returning each record as it arrives.

Upstream (faust-streaming 0.15.3, aiokafka 0.14.0): faust builds the worker's aiokafka consumer with
`fetch_max_wait_ms=1500` and no `fetch_min_bytes` (faust/transport/drivers/aiokafka.py:603-630), so
aiokafka's default of 1 byte applies: the broker answers a fetch as soon as one record is there. With
uploads arriving steadily the worker asks for, and the broker serves, about one small fetch per record;
in bench/e2e.py that cost the broker and the worker about 1.5 ms of CPU each per upload. aiokafka hands
the consumer's `_fetch_min_bytes` and `_fetch_max_wait_ms` to its Fetcher when the consumer starts
(aiokafka/consumer/consumer.py:381-391), after faust built it.

`BatchingConsumerThread` sets both between the two, from the app's `fetch_min_bytes` and
`fetch_max_wait_ms` (`patched_app`, from `Settings.worker_fetch_min_bytes` / `worker_fetch_max_wait_ms`):
the broker holds a fetch until that many bytes are there or the wait is over, so an event waits at most
`fetch_max_wait_ms` more before the worker sees it. Patched: `AIOKafkaConsumerThread._create_worker_consumer`
(extended) and `Consumer._new_consumer_thread` (through `RewindingConsumer`'s subclass).
"""

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from processors.faustfix.rewind import RewindingConsumer, RewindingConsumerThread

FAUST_FETCH_MIN_BYTES = 1
FAUST_FETCH_MAX_WAIT_MS = 1500


def batch_fetches(consumer: Any, min_bytes: int, max_wait_ms: int) -> None:
    """Make a consumer not yet started ask the broker for at least `min_bytes` per fetch, waiting at most
    `max_wait_ms` for them. (`consumer`: an `aiokafka.AIOKafkaConsumer`, which ships no type information.)"""
    consumer._fetch_min_bytes = min_bytes
    consumer._fetch_max_wait_ms = max_wait_ms


class BatchingConsumerThread(RewindingConsumerThread):
    """The rewinding consumer thread whose worker consumer batches its fetches as the app says."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app: Any = self.app
        batch_fetches(consumer, getattr(app, "fetch_min_bytes", FAUST_FETCH_MIN_BYTES),
                      getattr(app, "fetch_max_wait_ms", FAUST_FETCH_MAX_WAIT_MS))
        return consumer


class BatchingConsumer(RewindingConsumer):
    """faust's aiokafka consumer running a `BatchingConsumerThread` (which also rewinds)."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return BatchingConsumerThread(self, loop=self.loop, beacon=self.beacon)
