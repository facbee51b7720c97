"""Kafka's own no-loss bar (kafkatest replication_test, `hard_bounce`): three brokers, the measurements
topic with RF 3 and min.insync.replicas 2, ingest's kafka-python producer with acks=all + idempotence
(ingest/publisher.py), the faust worker's aiokafka producer likewise (processors/faustfix/producer.py).

The leader of partition 0 is SIGKILLed and restarted five times in a row ("chase the leader") while
devices keep uploading through the real ingest service and the real worker stores into PostgreSQL.
Before each kill every partition is fully replicated again, so each bounce is a fresh single failure.
Every upload answered 202 is in the log (no producer duplicate of a first-try send) and stored exactly
once, the findings equal the offline replay, and the worker's log does not flood while a broker is down.
"""

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from schemas import decode_envelope
from tests.reliability.cluster import KafkaCluster
from tests.reliability.conftest import (
    Device,
    LogBurst,
    Services,
    UploadLog,
    library_errors,
    prepare,
    provision,
    records_of,
    report,
    session_body,
    verify_pipeline,
    wait_all_stored,
)
from tests.reliability.stack import PrivateStack, wait_for

BOUNCES = 5  # kafkatest hard_bounce: five times, each time the current leader
PATIENTS = 6
MAX_ERRORS_PER_S = 2  # worker aiokafka ERROR lines a second of outage: 7-14 unfiltered, 0.1-0.3 filtered


class StreamingDevice(Device):
    """One patient's device that keeps uploading a session a day until `finish` is set; the upload under
    way is still retried to its acknowledgement, so every upload made is acknowledged in the end."""

    def __init__(self, ingest_url: str, token: str, patient: str, stop: threading.Event, finish: threading.Event,
                 pause_s: float) -> None:
        super().__init__(ingest_url, token, [], stop, pause_s=pause_s)
        self.patient, self.finish = patient, finish

    def _queue(self) -> Iterator[UploadLog]:
        day = 0
        while not self.finish.is_set():
            fvc_pct = round(80 - 0.75 * (day % 40), 1)  # declines, then a new device baseline: rules keep firing
            self.uploads.append(UploadLog(self.patient, session_body(self.patient, day, fvc_pct)))
            yield self.uploads[-1]
            day += 1


@dataclass
class Bounce:
    victim: int
    acked_at_kill: int
    acked_before_restart: int  # while the victim was down: the two others took the writes
    acked_until_isr_full: int
    new_leader: int
    leader_moved_s: float
    isr_full_s: float
    killed_at: float  # wall clock, to find the outage in the service logs
    back_at: float


def fully_replicated(cluster: KafkaCluster, timeout_s: float = 90) -> None:
    wait_for(lambda: cluster.under_replicated() == 0, timeout_s, "every partition's ISR complete", 0.5)


def hard_bounce(cluster: KafkaCluster, topic: str, acked: Callable[[], int]) -> Bounce:
    """kafkatest's hard bounce, once: SIGKILL partition 0's leader, wait until the controller fenced it
    (the leader moved) and uploads were acknowledged without it, then restart it and wait for its ISR."""
    fully_replicated(cluster)
    victim = wait_for(lambda: cluster.leader(topic), 30, "a leader for partition 0")
    acked_at_kill, killed_at, t0 = acked(), time.time(), time.monotonic()
    cluster.kill(victim, signal.SIGKILL)
    new_leader = wait_for(lambda: (lead := cluster.leader(topic)) not in (None, victim) and lead, 45,
                          "partition 0 to elect a new leader")
    leader_moved_s = time.monotonic() - t0
    wait_for(lambda: acked() > acked_at_kill, 60, "an upload acknowledged while a broker is down")
    acked_before_restart = acked() - acked_at_kill
    cluster.restart(victim)  # its own metadata caught up: no stale "ISR complete" from before the kill
    fully_replicated(cluster)
    return Bounce(victim, acked_at_kill, acked_before_restart, acked() - acked_at_kill, new_leader,
                  round(leader_moved_s, 1), round(time.monotonic() - t0, 1), killed_at, time.time())


def check_topic(cluster: KafkaCluster, topic: str) -> None:
    """RF 3 and min.insync.replicas 2 on the topic, as the broker the admin client asks sees it."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
        assert all(len(p["replica_nodes"]) == 3 for p in described["partitions"])
        deadline = time.monotonic() + 15  # a broker may answer before the topic config reached it
        while True:
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
            found = configs.get("topic", {}).get(topic, {}).get("min.insync.replicas")
            if found is not None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert found is not None and found["value"] == "2", configs
    finally:
        admin.close()


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
                    seen[str(decode_envelope(record.value).upload_id)] += 1  # the binary envelope (wire.py)
        return seen
    finally:
        consumer.close()


def stored_upload_ids(db_url: str, patients: list[str]) -> Counter[str]:
    """upload_id -> stored spirometry rows carrying it."""
    with psycopg.connect(db_url) as db:
        rows = db.execute("SELECT upload_id::text, count(*) FROM spirometry_sessions WHERE patient_id = ANY(%s)"
                          " GROUP BY upload_id", (patients,)).fetchall()
    return Counter({upload_id: n for upload_id, n in rows})


def start_devices(services: Services, stop: threading.Event, finish: threading.Event) -> list[StreamingDevice]:
    db_url, devices = services.env["RESPMON_DATABASE_URL"], []
    for p in range(PATIENTS):
        patient = f"REL-bounce-{p}-{int(time.time() * 1000) % 10**8}"
        token = provision(db_url, f"dev-{patient}", patient)
        devices.append(StreamingDevice(services.url("ingest"), token, patient, stop, finish, pause_s=0.3))
    for d in devices:
        d.start()
    return devices


@pytest.mark.timeout(240)
def test_leader_hard_bounced_five_times_loses_and_doubles_nothing(private_stack: PrivateStack,
                                                                  services: Services) -> None:
    cluster = KafkaCluster(3)
    stop, finish = threading.Event(), threading.Event()
    devices: list[StreamingDevice] = []
    started = time.monotonic()
    try:
        cluster.start()
        services.env.update({"RESPMON_KAFKA_BOOTSTRAP": cluster.bootstrap, "RESPMON_TOPIC_REPLICATION": "3",
                             "RESPMON_PUBLISH_TIMEOUT_S": "15"})
        prepare(services.env)
        topic = f"{services.env['RESPMON_TOPIC_PREFIX']}.measurements"
        check_topic(cluster, topic)
        services.start("worker")
        services.start("ingest")
        services.worker_ready()
        devices = start_devices(services, stop, finish)

        def acked() -> int:
            return sum(u.acknowledged for d in devices for u in list(d.uploads))

        wait_for(lambda: acked() >= 2 * PATIENTS, 60, "uploads flowing before the first bounce")
        bounces = [hard_bounce(cluster, topic, acked) for _ in range(BOUNCES)]
        finish.set()
        for d in devices:
            d.join(150)
        uploads = [u for d in devices for u in d.uploads]
        assert all(d.error is None for d in devices), [d.error for d in devices if d.error]
        assert all(u.acknowledged for u in uploads), [u.attempts for u in uploads if not u.acknowledged]
        wait_all_stored(services.env["RESPMON_DATABASE_URL"], {d.patient: len(d.uploads) for d in devices}, 90)
        records = {d.patient: records_of(d.uploads) for d in devices}
        verdict = verify_pipeline(services.env["RESPMON_DATABASE_URL"], records, services.receiver)
        log = read_topic(cluster.bootstrap, topic)
        stored = stored_upload_ids(services.env["RESPMON_DATABASE_URL"], list(records))
    finally:
        finish.set()
        stop.set()
        services.stop_all()
        cluster.stop()
        cluster.remove()
    elapsed_s = time.monotonic() - started

    acked = [u for u in uploads if u.acknowledged]
    first_try = [u for u in acked if u.attempts == [202]]
    outages = [(b.killed_at, b.back_at) for b in bounces]
    worker_log = (services.log_dir / "worker.log").read_text(errors="replace")
    flood: dict[str, LogBurst] = {name: library_errors(services.log_dir / f"{name}.log", outages, prefix)
                                  for name, prefix in (("worker", "aiokafka"), ("ingest", "kafka"))}
    report("cluster_leader_hard_bounce", bounces=[asdict(b) for b in bounces], uploads=len(uploads),
           acknowledged=len(acked), answered_503_then_retried=len(acked) - len(first_try),
           acked_between_kill_and_full_isr=sum(b.acked_until_isr_full for b in bounces),
           records_in_log=sum(log.values()), stored_rows=verdict.stored_rows, duplicate_rows=verdict.duplicate_rows,
           findings=verdict.findings, alerts=verdict.alerts, webhook_deliveries=verdict.deliveries,
           outage_s=round(sum(e - s for s, e in outages), 1),
           errors_per_s={n: round(f.per_s, 2) for n, f in flood.items()},
           errors_suppressed={n: f.suppressed for n, f in flood.items()}, elapsed_s=round(elapsed_s, 1),
           worker_rejoins=worker_log.count("(Re-)joining group"),
           worker_restarts_on_stall=worker_log.count("worker exited on a stalled stream"))
    assert len(bounces) == BOUNCES and all(b.new_leader != b.victim for b in bounces)
    assert all(b.acked_before_restart > 0 for b in bounces)
    assert [u.upload_id for u in acked if log[u.upload_id] == 0] == []  # nothing acknowledged is lost
    assert {u.upload_id: log[u.upload_id] for u in first_try if log[u.upload_id] != 1} == {}  # no producer dup
    # stored exactly once: one row per acknowledged upload, none from anywhere else
    assert stored == Counter({u.upload_id: 1 for u in acked})
    assert verdict.stored_rows == len(acked) and verdict.duplicate_rows == 0
    assert verdict.finding_mismatches == []
    assert verdict.doubled_alerts == 0 and verdict.webhook_keys == verdict.deliveries
    assert verdict.resent_after_2xx == {}
    assert flood["worker"].per_s < MAX_ERRORS_PER_S, flood
