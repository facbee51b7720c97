"""`respmon topics` creates every topic the pipeline needs before any service starts, the worker's
table changelog included (left to faust, a first table write could run before the new topic reached the
worker's metadata and crash the agent: seen in the 3-broker fault test)."""

from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from respmon.core.settings import Settings
from tests.conftest import namespace


def test_topics_exist_with_the_changelog_compacted_and_partitioned_like_its_source(
        stack: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with namespace(tmp_path) as env:  # a new prefix and worker app id: no worker has run with them
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = Settings()
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            names = [settings.measurements_topic, settings.findings_topic, settings.deadletter_topic,
                     settings.history_changelog_topic]
            described = {t["name"]: t for t in admin.describe_topics(names)}
            assert set(described) == set(names)
            assert all(len(described[n]["partitions"]) == settings.topic_partitions for n in names)
            assert settings.history_changelog_topic == f"{env['RESPMON_WORKER_APP_ID']}-patient-history-changelog"
            changelog = ConfigResource(ConfigResourceType.TOPIC, settings.history_changelog_topic)
            configs = admin.describe_configs([changelog])
            assert configs["topic"][settings.history_changelog_topic]["cleanup.policy"]["value"] == "compact"
        finally:
            admin.close()


def test_the_local_broker_does_not_create_topics_on_first_use(stack: None) -> None:
    """As in compose and the fault-test cluster: a stray or misspelt topic name fails instead of
    silently creating a topic with the broker's default partitions (patients would be keyed apart)."""
    import uuid

    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    settings = Settings()
    stray = f"stray-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_block_ms=3000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(stray, b"x").get(timeout=5)
    finally:
        producer.close(timeout=5)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        assert stray not in admin.list_topics()
    finally:
        admin.close()
