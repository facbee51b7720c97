"""The faust App class the worker runs: faust's own, with the patches of this package plugged in
through the factory methods faust builds them with, so nothing is changed for other apps or at import.

Upstream (faust-streaming 0.15.3): `App._new_transport` / `_new_producer_transport` pick the transport
class from the broker URL (faust/app/base.py:1932-1944), whose `Producer` and `Consumer` class
attributes faust instantiates (faust/transport/base.py:87-93); `App.flow_control` is a cached property
building mode's `FlowControlEvent` (faust/app/base.py:2167-2174); `App._new_web` builds the web driver
named by the `web` setting (faust/app/base.py:2231-2232).
"""

from typing import ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerT, ProducerT, TransportT
from faust.web import Web
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from processors.faustfix.fetch import FAUST_FETCH_MAX_WAIT_MS, FAUST_FETCH_MIN_BYTES, BatchingConsumer
from processors.faustfix.flow import KeepQueuesOnResume
from processors.faustfix.producer import IdempotentProducer
from processors.faustfix.web import HealthOnlyWeb


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the idempotent producer and the rewinding, batching consumer."""

    Producer: ClassVar[type[ProducerT]] = IdempotentProducer
    Consumer: ClassVar[type[ConsumerT]] = BatchingConsumer


class PatchedApp(faust.App):
    """A faust App with every patch of `processors.faustfix` (the broker must be Kafka: aiokafka)."""

    fetch_min_bytes: int = FAUST_FETCH_MIN_BYTES
    """Bytes the broker gathers before it answers the worker consumer's fetch (`faustfix.fetch`)."""
    fetch_max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS
    """How long the broker may wait for them."""

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> TransportT:
        return Transport(self.conf.broker_producer, self)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return KeepQueuesOnResume(loop=self.loop)

    def _new_web(self) -> Web:
        return HealthOnlyWeb(self)
