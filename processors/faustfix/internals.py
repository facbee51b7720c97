"""Read and write access to faust and aiokafka state their public types do not offer.

Upstream (faust-streaming 0.15.3, aiokafka 0.14.0), each function names what it reads:
- `committed_offset`: faust's `Consumer._committed_offset` (faust/transport/consumer.py:417), the
  next offset the group resumes from, as faust last committed it (no broker round trip);
- `set_current_event`: `Stream._set_current_event` (faust/streams.py:1203): a table write goes to the
  changelog partition of the stream's current event, and a batch writes after its last event;
- `more_waiting`: `Channel.queue` (faust/channels.py:134), the stream's buffer of fetched events;
- `tables_recovered`: `TableManager.recovery.completed` (faust/tables/recovery.py:182);
- `rocksdb_databases`: a RocksDB table store's open databases, `Store._dbs` (faust/stores/rocksdb.py:292),
  one rocksdict `Rdict` per partition this worker holds (active or standby);
- `consumer_state`: the stall diagnostics, faust's partition sets and offsets and aiokafka's
  subscription, partition state and fetcher buffers. Diagnostics only: a failure there is reported.
"""

from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.channels import Channel
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import Stream
from faust.tables.manager import TableManager
from faust.transport.consumer import Consumer
from faust.types import TP, ConsumerT, EventT, StreamT, TableT


def committed_offset(consumer: ConsumerT, tp: TP) -> int | None:
    """The offset faust last committed for `tp` (None before the group's first commit on it)."""
    return cast(Consumer, consumer)._committed_offset.get(tp)


def set_current_event(stream: StreamT, event: EventT) -> None:
    """Make `event` the stream's current event: table writes then go to its partition."""
    cast(Stream, stream)._set_current_event(event)


def more_waiting(stream: StreamT) -> bool:
    """True when the stream's channel already holds the next event (fetched, not yet iterated)."""
    queue = getattr(stream.channel, "queue", None)
    return queue is not None and not queue.empty()


def tables_recovered(app: faust.App) -> bool:
    """True once the tables recovered from their changelogs after the last assignment."""
    return not app.in_recovery and cast(TableManager, app.tables).recovery.completed.is_set()


def rocksdb_databases(table: TableT) -> list[Any] | None:
    """The RocksDB databases (rocksdict `Rdict`) a table's store holds open, None when it is no RocksDB store."""
    store = cast(Any, table).data
    if not isinstance(store, RocksDBStore):
        return None
    return list(store._dbs.values())


def _queued(app: faust.App) -> dict[str, int]:
    """Events waiting in each stream's buffer (a channel that never iterated has none)."""
    return {str(chan): chan._queue.qsize() for chan in app.topics
            if isinstance(chan, Channel) and chan._queue is not None}


def consumer_state(app: faust.App, tps: Iterable[TP]) -> dict[str, object]:
    """What faust and aiokafka believe about `tps`: enough to tell a paused partition, a fetch that
    never returns and a stream that does not take its records apart."""
    consumer = cast(Consumer, app.consumer)
    state: dict[str, object] = {
        "flow_active": consumer.flow_active, "rebalancing": app.rebalancing, "in_recovery": app.in_recovery,
        "unacked": len(consumer.unacked), "flow_control_active": app.flow_control.is_active(),
        "generation": app.consumer_generation_id, "queued": _queued(app),
    }
    try:
        aio: Any = cast(Any, consumer)._thread._ensure_consumer()  # aiokafka's AIOKafkaConsumer (untyped)
        assignment = aio._subscription.subscription.assignment
        fetcher = aio._fetcher
    except Exception:  # noqa: BLE001 - diagnostics only
        return state
    for tp in tps:
        tp_state = assignment.state_value(tp) if assignment is not None else None
        state[f"{tp.topic}:{tp.partition}"] = {
            "faust_active": tp in consumer._active_partitions, "faust_paused": tp in consumer._paused_partitions,
            "faust_buffered": tp in consumer._buffered_partitions,
            "read_offset": consumer._read_offset.get(tp), "committed": consumer._committed_offset.get(tp),
            "aiokafka_paused": getattr(tp_state, "paused", None),
            "aiokafka_position": getattr(tp_state, "_position", None),
            "highwater": aio.highwater(tp), "in_fetch_buffer": repr(fetcher._records.get(tp)),
            "fetch_in_flight": sorted(fetcher._in_flight),
        }
    return state
