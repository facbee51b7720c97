"""How the worker's faust app talks to Kafka: an idempotent producer, and a consumer that never skips
the records of a partition nobody has committed yet.

Producer: aiokafka defaults to acks=1 without idempotence, and faust only switches idempotence on inside
exactly-once transactions; we run at-least-once with idempotent effects, so we set both explicitly.

Consumer: after a (re)start faust starts its fetch loop while it recovers the table from the changelog
(faust/tables/recovery.py:443-452). aiokafka prefetches the stream partitions meanwhile, and faust hands
its *live* set of active partitions to `Fetcher.fetched_records` (faust/transport/consumer.py:795-805,
drivers/aiokafka.py:1100-1104). When recovery pauses the changelog partitions that set is briefly
empty, and aiokafka reads an empty set as "every partition" (aiokafka/consumer/fetcher.py:1220-1221):
the prefetched stream records are taken, the consumer position moves past them, and faust drops them
because their partitions are not active yet (faust/transport/consumer.py:759-770). faust then relies on
`perform_seek()` (seek to committed, faust/tables/recovery.py:649-655) to fetch them again, but aiokafka
only seeks partitions whose committed offset is > 0 (aiokafka/consumer/consumer.py:901). A partition
with no committed offset (or offset 0) keeps the advanced position: its first records are never
processed, and its lag reads 0 because there is no commit to measure it from. Seen in the PostgreSQL
outage test (partition 3: position 8 = end offset, nothing delivered, nothing committed).

`RewindingConsumer` completes that seek: stream partitions without a committed offset go back to where
`consumer_auto_offset_reset` starts them, offset 0 included. Replaying them is harmless: every effect
is idempotent.
"""

import logging
from typing import Any, Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from processors.flow import keep_queues_on_resume

log = logging.getLogger("respmon.worker.transport")


class IdempotentProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


def uncommitted_stream_tps(committed: Mapping[TP, int | None], stream_topics: set[str]) -> dict[TP, int | None]:
    """Stream partitions that aiokafka's `seek_to_committed` left where they were: no commit, or 0."""
    return {tp: offset for tp, offset in committed.items()
            if tp.topic in stream_topics and (offset is None or offset <= 0)}


class RewindingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        rewind = uncommitted_stream_tps(committed, set(self.app.topics.acking_topics))
        if rewind:
            await self.call_thread(self._rewind, rewind)
        return committed

    async def _rewind(self, tps: Mapping[TP, int | None]) -> None:
        consumer = self._ensure_consumer()
        at_zero = [tp for tp, offset in tps.items() if offset == 0]
        unset = [tp for tp, offset in tps.items() if offset is None]
        for tp in at_zero:
            consumer.seek(tp, 0)
        if unset:
            if self.app.conf.consumer_auto_offset_reset == "earliest":
                await consumer.seek_to_beginning(*unset)
            else:
                await consumer.seek_to_end(*unset)
        log.info("stream partitions without a commit rewound to their start",
                 extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in tps)})


class RewindingConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)


def install_transport() -> None:
    """Install the producer, the consumer and the stream queues that survive a flow resume
    (processors/flow.py); processors/app.py calls it before the app is created."""
    faust_aiokafka.Transport.Producer = IdempotentProducer
    faust_aiokafka.Transport.Consumer = RewindingConsumer
    keep_queues_on_resume()
