"""Scale out by processes (README "Scale out by processes"): several worker processes in one consumer group
share the measurements topic's partitions, and when one dies the others take its partitions.

1. Two live workers on 8 partitions (RocksDB table, one standby replica each) share the scenario cohort;
   one is SIGKILLed in the middle of its batches and not restarted. The other takes all 8 partitions, and
   every record is stored once, the findings equal the offline replay, no alert is lost or doubled.
2. The capacity model's shape on loopback (correctness, not speed): a 3-broker cluster (RF 3), ingest with
   two processes on one port, two workers; devices upload through HTTP; every acknowledged upload is
   stored exactly once and the findings equal the offline replay.
"""

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_scenarios_stream import _distinct_records, _stored_records
from tests.reliability.cluster import KafkaCluster
from tests.reliability.conftest import (
    Device,
    Services,
    make_cohort,
    prepare,
    records_of,
    report,
    verify_pipeline,
    wait_all_stored,
)
from tests.reliability.stack import PrivateStack, wait_for
from tests.reliability.test_worker_kill import publish_scenarios

PARTITIONS = 8
WORKERS = ("worker-a", "worker-b")


def owned(services: Services, name: str) -> set[int]:
    """The measurements partitions a worker reports owning (its lag gauge), empty when it does not answer."""
    topic = f"{services.env['RESPMON_TOPIC_PREFIX']}.measurements"
    try:
        page = httpx.get(f"{services.url(name)}/metrics", timeout=2).text
    except httpx.HTTPError:
        return set()
    return {int(s.labels["partition"]) for f in text_string_to_metric_families(page)
            if f.name == "respmon_worker_consumer_lag" for s in f.samples if s.labels.get("topic") == topic}


def fresh_topics(services: Services, **settings: str) -> None:
    """A new topic prefix and consumer group with these settings (the fixture made 4 partitions)."""
    run = uuid.uuid4().hex[:8]
    services.env.update({"RESPMON_TOPIC_PREFIX": f"rel-{run}", "RESPMON_WORKER_APP_ID": f"respmon-rel-{run}",
                         "RESPMON_TOPIC_PARTITIONS": str(PARTITIONS), **settings})
    prepare(services.env)


def start_workers(services: Services, tmp_path: Path) -> None:
    """Two workers in one group, each with its own data folder (RocksDB locks its files) and port."""
    for name in WORKERS:
        services.start(name, RESPMON_WORKER_DATA_DIR=str(tmp_path / name), RESPMON_WORKER_STORE="rocksdb",
                       RESPMON_WORKER_STANDBY_REPLICAS="1")
    wait_for(lambda: all(owned(services, n) for n in WORKERS)
             and set.union(*(owned(services, n) for n in WORKERS)) == set(range(PARTITIONS)),
             120, "both workers owning partitions, all 8 owned")


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_batch_leaves_its_partitions_to_the_other(private_stack: PrivateStack,
                                                                      services: Services, tmp_path: Path) -> None:
    fresh_topics(services)
    start_workers(services, tmp_path)
    split = {n: sorted(owned(services, n)) for n in WORKERS}
    assert not set(split["worker-a"]) & set(split["worker-b"]), split
    published = publish_scenarios(private_stack.bootstrap, f"{services.env['RESPMON_TOPIC_PREFIX']}.measurements")
    total = sum(_distinct_records(r) for r in published.values())
    db_url = services.env["RESPMON_DATABASE_URL"]
    with psycopg.connect(db_url, autocommit=True) as db:
        def stored() -> int:
            return sum(_stored_records(db, p) for p in published)

        wait_for(lambda: stored() >= total // 3, 120, "a third of the records stored", interval_s=0.05)
        at_kill = stored()
        services.kill("worker-a", signal.SIGKILL)
        assert stored() < total, "the workers finished before one was killed: nothing was tested"
        t0 = time.monotonic()
        wait_for(lambda: owned(services, "worker-b") == set(range(PARTITIONS)), 90, "worker-b owning all 8")
        takeover_s = time.monotonic() - t0
        wait_for(lambda: stored() >= total, 180, "every record stored by the surviving worker", interval_s=0.5)
    verdict = verify_pipeline(db_url, published, services.receiver)
    log_b = (services.log_dir / "worker-b.log").read_text(errors="replace")
    report("scale_out_worker_sigkill", partitions=PARTITIONS, split_before=split, distinct_records=total,
           stored_at_kill=at_kill, takeover_s=round(takeover_s, 1), findings=verdict.findings,
           finding_mismatches=verdict.finding_mismatches, alerts=verdict.alerts, doubled_alerts=verdict.doubled_alerts,
           webhook_deliveries=verdict.deliveries, resent_after_2xx=verdict.resent_after_2xx)
    assert "Error in recovery" not in log_b
    assert verdict.finding_mismatches == []
    assert verdict.duplicate_rows == 0 and verdict.doubled_alerts == 0 and verdict.alerts > 0
    assert verdict.webhook_keys == verdict.deliveries  # every alert queued reached the webhook
    # a re-send after a 2xx only when the kill fell between the receiver's 2xx and the commit of the attempt
    assert len(verdict.resent_after_2xx) <= 1, verdict.resent_after_2xx


def spawned_children(pid: int) -> int:
    """Processes `pid` started with multiprocessing's spawn (uvicorn's workers)."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().split(")")[-1].split()[1]) == pid and \
                    b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                count += 1
        except (OSError, ValueError, IndexError):
            continue
    return count


@pytest.fixture
def cluster() -> Iterator[KafkaCluster]:
    kafka = KafkaCluster(3)
    try:
        kafka.start()
        yield kafka
    finally:
        kafka.stop()
        kafka.remove()


@pytest.mark.timeout(300)
def test_three_brokers_two_ingest_processes_two_workers_store_every_upload_once(
        private_stack: PrivateStack, services: Services, cluster: KafkaCluster, tmp_path: Path) -> None:
    services.env.update({"RESPMON_KAFKA_BOOTSTRAP": cluster.bootstrap, "RESPMON_TOPIC_REPLICATION": "3"})
    fresh_topics(services)
    ingest = services.start("ingest", RESPMON_INGEST_PROCESSES="2")
    wait_for(lambda: spawned_children(ingest.pid) == 2, 60, "two ingest processes")
    start_workers(services, tmp_path)
    db_url = services.env["RESPMON_DATABASE_URL"]
    cohort = make_cohort(db_url, patients=8, per_patient=6, tag="scale")
    stop = threading.Event()
    devices = [Device(services.url("ingest"), token, uploads, stop) for token, uploads in cohort.values()]
    for device in devices:
        device.start()
    for device in devices:
        device.join(180)
    assert all(d.error is None for d in devices), [d.error for d in devices if d.error]
    uploads = [u for _, ups in cohort.values() for u in ups]
    assert all(u.acknowledged for u in uploads), [u.attempts for u in uploads if not u.acknowledged]
    wait_all_stored(db_url, {p: len(ups) for p, (_, ups) in cohort.items()}, 120)
    records = {p: records_of(ups) for p, (_, ups) in cohort.items()}
    verdict = verify_pipeline(db_url, records, services.receiver)
    with psycopg.connect(db_url) as db:
        per_upload = dict(db.execute("SELECT upload_id::text, count(*) FROM spirometry_sessions"
                                     " WHERE patient_id = ANY(%s) GROUP BY upload_id", (list(cohort),)).fetchall())
    split = {n: sorted(owned(services, n)) for n in WORKERS}
    report("scale_out_cluster", brokers=3, ingest_processes=2, workers=split, uploads=len(uploads),
           stored_rows=verdict.stored_rows, findings=verdict.findings, alerts=verdict.alerts,
           webhook_deliveries=verdict.deliveries)
    assert per_upload == {u.upload_id: 1 for u in uploads}  # every acknowledged upload stored exactly once
    assert all(split.values()), split  # both workers still share the partitions
    assert verdict.finding_mismatches == [] and verdict.duplicate_rows == 0
    assert verdict.doubled_alerts == 0 and verdict.alerts > 0
    assert verdict.webhook_keys == verdict.deliveries and verdict.resent_after_2xx == {}
