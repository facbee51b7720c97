"""Kafka topics of the pipeline, created explicitly with the configured partitions and replication."""

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from respmon.core.settings import Settings


def topic_names(settings: Settings) -> list[str]:
    return [settings.measurements_topic, settings.findings_topic, settings.deadletter_topic,
            settings.history_changelog_topic]


def _configs(name: str, settings: Settings) -> dict[str, str]:
    configs = {"min.insync.replicas": str(min(2, settings.topic_replication))}
    if name == settings.history_changelog_topic:
        # created here, before the worker starts, with its source topic's partitions: left to faust, the
        # first table write could run before the new topic reached the worker's metadata ("changelog
        # topic has 0 partitions", PartitionsMismatch), which crashed the agent in the 3-broker fault test
        configs["cleanup.policy"] = "compact"
    return configs


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; returns the names it created. Safe to run twice."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="respmon-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in topic_names(settings) if t not in existing]
        new = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs=_configs(name, settings),
            )
            for name in wanted
        ]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return wanted
    finally:
        admin.close()
