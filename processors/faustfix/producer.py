"""An idempotent producer for faust's own sends (dead letters, findings, table changelogs, ticks).

Upstream (faust-streaming 0.15.3, aiokafka 0.14.0): aiokafka defaults to acks=1 without idempotence,
and faust's `Producer._settings_extra()` (faust/transport/drivers/aiokafka.py:1323) asks for
`acks="all"` and idempotence only inside exactly-once transactions. The worker runs at-least-once
with idempotent effects, so it wants both always.
"""

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


class IdempotentProducer(faust_aiokafka.Producer):
    """faust's aiokafka producer with acks=all and idempotence outside transactions too."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}
