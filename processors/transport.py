"""Make faust's aiokafka producer idempotent with acks=all.

aiokafka defaults to acks=1 without idempotence, and faust only switches idempotence on inside
exactly-once transactions; we run at-least-once with idempotent effects, so we set both explicitly.
"""

from typing import Any, Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka


class IdempotentProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


def use_idempotent_producer() -> None:
    faust_aiokafka.Transport.Producer = IdempotentProducer
