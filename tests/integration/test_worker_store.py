"""The worker keeps patient histories on either table store (RESPMON_WORKER_STORE=rocksdb|memory) and gets
them back after a restart: the first half of every scenario is processed, the worker is stopped and
started again, the second half is processed, and the findings stored equal the offline replay of the
whole of each scenario. A worker that lost the histories would evaluate the second half as new patients,
which gives other findings (checked first, so the test can fail). The scenarios' patients spread over the
topic's partitions, so batches mix partitions (RocksDB keeps one database per partition)."""

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaProducer

from processors.rules.evaluator import _tiebreak, _time
from respmon.launcher import service
from tests.conftest import free_port, namespace
from tests.integration.test_scenarios_stream import (
    SCENARIOS,
    _distinct_records,
    _message,
    _stored_records,
    expected_findings,
    stored_findings,
)
from tests.integration.test_walking_skeleton import wait_until


def halves() -> dict[str, tuple[list[object], list[object]]]:
    """patient -> (first half, second half) of a scenario's records and care states, in event-time order."""
    run = uuid.uuid4().hex[:6]
    out = {}
    for scenario in SCENARIOS:
        patient = f"{scenario.patient_id}-{run}"
        items = [r.model_copy(update={"patient_id": patient}) for r in scenario.records]
        items += [c.model_copy(update={"patient_id": patient, "change_id": uuid.uuid4().hex})
                  for c in scenario.care_states]
        ordered = [item for _, item in sorted(enumerate(items), key=lambda ir: (_time(ir[1]), _tiebreak(ir[1]), ir[0]))]
        out[patient] = (ordered[: len(ordered) // 2], ordered[len(ordered) // 2:])
    return out


def publish(topic: str, items: dict[str, list[object]]) -> None:
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:19092", acks="all", enable_idempotence=True,
                             max_request_size=8 * 1024 * 1024, compression_type="gzip")
    try:
        for patient, records in items.items():
            for record in records:
                producer.send(topic, key=patient.encode(), value=_message(record))
        producer.flush()
    finally:
        producer.close()


def wait_processed(db_url: str, want: dict[str, list[object]]) -> None:
    """Every record stored and every patient's findings equal to the offline replay of `want`."""
    with psycopg.connect(db_url, autocommit=True) as db:
        def done() -> bool:
            return all(_stored_records(db, p) >= _distinct_records(r) and stored_findings(db, p) == expected_findings(r)
                       for p, r in want.items())
        try:
            wait_until(done, 120, "records and findings of the replay")
        except AssertionError:
            pass
        time.sleep(1.0)  # a late wrong finding would show now
        mismatched = {p: {"stream": stored_findings(db, p), "offline": expected_findings(r)}
                      for p, r in want.items() if stored_findings(db, p) != expected_findings(r)}
    assert mismatched == {}


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_worker_gets_patient_histories_back_after_a_restart(stack: None, tmp_path: Path, store: str) -> None:
    parts = halves()
    whole = {p: first + second for p, (first, second) in parts.items()}
    as_new = {p: set(expected_findings(first)) | set(expected_findings(second)) for p, (first, second) in parts.items()}
    assert any(as_new[p] != set(expected_findings(whole[p])) for p in parts), "losing the history would go unseen"

    port = free_port()
    with namespace(tmp_path / "worker") as env:
        env = {**env, "RESPMON_WORKER_STORE": store, "RESPMON_WORKER_WEB_PORT": str(port),
               "RESPMON_NOTIFY_HORIZON_DAYS": "3650"}
        db_url, topic = env["RESPMON_DATABASE_URL"], f"{env['RESPMON_TOPIC_PREFIX']}.measurements"
        health = f"http://127.0.0.1:{port}/healthz"
        with service(["worker"], env, health, tmp_path / "worker-1.log"):
            publish(topic, {p: first for p, (first, _) in parts.items()})
            wait_processed(db_url, {p: first for p, (first, _) in parts.items()})
        table_files = list((tmp_path / "worker").rglob("patient-history-*.db"))
        assert bool(table_files) == (store == "rocksdb"), table_files
        with service(["worker"], env, health, tmp_path / "worker-2.log"):
            publish(topic, {p: second for p, (_, second) in parts.items()})
            wait_processed(db_url, whole)
    assert "Error in recovery" not in (tmp_path / "worker-2.log").read_text(errors="replace")
