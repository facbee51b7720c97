"""Publishes canonical records to Kafka, keyed by patient so one patient's events stay in order."""

from kafka import KafkaProducer

from respmon.core.settings import Settings
from schemas import Envelope, encode_envelope


class Publisher:
    """A kafka-python producer with acks=all and idempotence set explicitly (no reliance on defaults)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="respmon-ingest",
            acks="all",
            enable_idempotence=True,
            retries=10,
            linger_ms=2,
            compression_type="lz4",
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=int(settings.publish_timeout_s * 1000),
            metrics_enabled=False,  # kafka-python's own sensors, read by nobody here (ingest exports Prometheus)
        )

    def publish(self, envelopes: list[Envelope]) -> None:
        """Send and wait for every acknowledgement: the HTTP answer promises the records are durable.
        Each message is the binary envelope (`schemas.wire`: series as int16 bytes, not JSON lists)."""
        futures = [
            self._producer.send(
                self._settings.measurements_topic,
                key=env.patient_id.encode(),
                value=encode_envelope(env),
            )
            for env in envelopes
        ]
        for future in futures:
            future.get(timeout=self._settings.publish_timeout_s)

    def publish_deadletter(self, key: str, value: bytes) -> None:
        self._producer.send(self._settings.deadletter_topic, key=key.encode(), value=value).get(
            timeout=self._settings.publish_timeout_s
        )

    def close(self) -> None:
        self._producer.close(timeout=5)
