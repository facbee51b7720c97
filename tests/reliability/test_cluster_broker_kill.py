"""Three brokers, measurements topic with RF 3 and min.insync.replicas 2, ingest's kafka-python producer
with acks=all + idempotence (ingest/publisher.py). The leader of a partition is SIGKILLed while devices
upload: every upload ingest acknowledged is in the log, read back by a fresh consumer, exactly once."""

import json
import signal
import threading
import time
from collections import Counter

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from tests.reliability.cluster import KafkaCluster
from tests.reliability.conftest import Device, Services, make_cohort, prepare, report
from tests.reliability.stack import PrivateStack, wait_for

PATIENTS, PER_PATIENT = 6, 15


def read_topic(bootstrap: str, topic: str) -> Counter[str]:
    """upload_id -> how many times it is in the log, from the beginning to the end offsets of now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=10000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        seen: Counter[str] = Counter()
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=2000).values():
                for record in records:
                    seen[json.loads(record.value)["upload_id"]] += 1
        return seen
    finally:
        consumer.close()


@pytest.mark.timeout(240)
def test_leader_sigkill_in_three_broker_cluster_loses_no_acknowledged_upload(private_stack: PrivateStack,
                                                                            services: Services) -> None:
    cluster = KafkaCluster(3)
    try:
        cluster.start()
        services.env.update({"RESPMON_KAFKA_BOOTSTRAP": cluster.bootstrap, "RESPMON_TOPIC_REPLICATION": "3",
                             "RESPMON_PUBLISH_TIMEOUT_S": "15"})
        prepare(services.env)
        topic = f"{services.env['RESPMON_TOPIC_PREFIX']}.measurements"
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        try:
            (described,) = admin.describe_topics([topic])
            assert all(len(p["replica_nodes"]) == 3 for p in described["partitions"])
            deadline = time.monotonic() + 15  # a broker may answer before the topic config reached it
            while True:
                configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                                 config_filter="all")
                found = configs.get("topic", {}).get(topic, {}).get("min.insync.replicas")
                if found is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert found is not None and found["value"] == "2", configs
        finally:
            admin.close()

        db_url = services.env["RESPMON_DATABASE_URL"]
        services.start("ingest")
        cohort = make_cohort(db_url, PATIENTS, PER_PATIENT, "cluster")
        uploads = [u for _, ups in cohort.values() for u in ups]
        stop = threading.Event()
        devices = [Device(services.url("ingest"), token, ups, stop, pause_s=0.1) for token, ups in cohort.values()]
        for d in devices:
            d.start()
        wait_for(lambda: sum(u.acknowledged for u in uploads) >= len(uploads) // 3, 60, "a third acknowledged")
        victim = cluster.leaders(topic)[0]
        acked_at_kill = sum(u.acknowledged for u in uploads)
        t0 = time.monotonic()
        cluster.kill(victim, signal.SIGKILL)
        for d in devices:
            d.join(150)
        stream_s = time.monotonic() - t0
        stop.set()
        assert all(d.error is None for d in devices), [d.error for d in devices if d.error]
        assert all(u.acknowledged for u in uploads), [u.attempts for u in uploads if not u.acknowledged]
        new_leaders = cluster.leaders(topic)
        log = read_topic(cluster.bootstrap, topic)
    finally:
        services.stop_all()
        cluster.stop()
        cluster.remove()

    acked = [u for u in uploads if u.acknowledged]
    missing = [u.upload_id for u in acked if log[u.upload_id] == 0]
    first_try = [u for u in acked if u.attempts == [202]]
    retried = [u for u in acked if u.attempts != [202]]
    doubled_first_try = {u.upload_id: log[u.upload_id] for u in first_try if log[u.upload_id] != 1}
    doubled_retried = {u.upload_id: log[u.upload_id] for u in retried if log[u.upload_id] != 1}
    report("cluster_leader_sigkill", uploads=len(uploads), acknowledged=len(acked), acked_at_kill=acked_at_kill,
           killed_node=victim, leaders_after=new_leaders, answered_503_then_retried=len(retried),
           in_log=len(log), records_in_log=sum(log.values()), missing=len(missing),
           duplicates_first_try=len(doubled_first_try), duplicates_after_503_retry=len(doubled_retried),
           after_kill_s=round(stream_s, 1))
    assert victim not in new_leaders.values()
    assert missing == []
    assert doubled_first_try == {}
    # a retry after a 503 reuses the archived upload id; a copy of the timed-out send may have landed
    # too. That is an application-level resend (the worker's upserts absorb it), not a producer duplicate.
    assert set(log) == {u.upload_id for u in acked}
