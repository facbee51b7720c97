"""A consumer that never skips the records of a stream partition nobody has committed yet.

Upstream (faust-streaming 0.15.3, aiokafka 0.14.0): after a (re)start faust starts its fetch loop
while it recovers the table from the changelog (faust/tables/recovery.py:443-452). aiokafka prefetches
the stream partitions meanwhile, and faust hands its *live* set of active partitions to
`Fetcher.fetched_records` (faust/transport/consumer.py:795-805, drivers/aiokafka.py:1095-1104). When
recovery pauses the changelog partitions that set is briefly empty, and aiokafka reads an empty set as
"every partition" (aiokafka/consumer/fetcher.py:1220-1221): the prefetched stream records are taken,
the consumer position moves past them, and faust drops them because their partitions are not active
yet (faust/transport/consumer.py:758-766). faust then relies on `perform_seek()` (seek to committed,
faust/tables/recovery.py:650-656) to fetch them again, but `AIOKafkaConsumer.seek_to_committed` only
seeks partitions whose committed offset is > 0 (aiokafka/consumer/consumer.py:901). A partition with
no committed offset (or offset 0) keeps the advanced position: its first records are never processed,
and its lag reads 0 because there is no commit to measure it from. Seen in the PostgreSQL outage test
(partition 3: position 8 = end offset, nothing delivered, nothing committed).

`RewindingConsumer` completes that seek: stream partitions without a committed offset go back to where
`consumer_auto_offset_reset` starts them, offset 0 included. Replaying them is harmless: every effect
of the worker is idempotent. Patched: `AIOKafkaConsumerThread.seek_to_committed` (extended, result
unchanged) and `Consumer._new_consumer_thread` (faust's factory of the consumer thread).
"""

import logging
from collections.abc import Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger("respmon.worker.transport")


def uncommitted_stream_tps(committed: Mapping[TP, int | None], stream_topics: set[str]) -> dict[TP, int | None]:
    """Stream partitions that aiokafka's `seek_to_committed` left where they were: no commit, or 0."""
    return {tp: offset for tp, offset in committed.items()
            if tp.topic in stream_topics and (offset is None or offset <= 0)}


class RewindingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Seeks to the committed offsets, then rewinds the stream partitions aiokafka left alone."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        rewind = uncommitted_stream_tps(committed, set(self.app.topics.acking_topics))
        if rewind:
            await self.call_thread(self._rewind, rewind)
        return committed

    async def _rewind(self, tps: Mapping[TP, int | None]) -> None:
        consumer = self._ensure_consumer()
        for tp in (tp for tp, offset in tps.items() if offset == 0):
            consumer.seek(tp, 0)
        unset = [tp for tp, offset in tps.items() if offset is None]
        if unset and self.app.conf.consumer_auto_offset_reset == "earliest":
            await consumer.seek_to_beginning(*unset)
        elif unset:
            await consumer.seek_to_end(*unset)
        log.info("stream partitions without a commit rewound to their start",
                 extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in tps)})


class RewindingConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer running a `RewindingConsumerThread`."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)
