"""Synthetic patient trajectories give the same findings from the offline evaluator and the real stream.

The records go onto the real measurements topic (in the order a replay uses: event time), the faust
worker processes them, and the findings it stores in PostgreSQL must equal `replay()`'s, one for one. A
scenario's care-state changes go onto the same topic, keyed by patient, in the same order.
"""

import json
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from kafka import KafkaProducer

from processors.rules.evaluator import _tiebreak, _time, replay
from processors.rules.loader import load_rules
from schemas import CareStateChange, Envelope
from schemas.kinds import RECORD_KINDS, kind_of
from tests.integration.conftest import Pipeline
from tests.scenarios import all_scenarios

SCENARIOS = all_scenarios()


def stored_findings(db: psycopg.Connection, patient: str) -> list[tuple[str, str, str, str]]:
    rows = db.execute("SELECT rule_id, state, severity, at FROM findings WHERE patient_id = %s ORDER BY at, rule_id,"
                      " state", (patient,)).fetchall()
    return [(r, s, sev, at.isoformat()) for r, s, sev, at in rows]


def _message(item: object) -> bytes:
    """A care-state change as it is (like a Tick); a record in its envelope."""
    if isinstance(item, CareStateChange):
        return item.model_dump_json().encode()
    env = Envelope(upload_id=str(uuid.uuid4()), device_id="scenario", received_at=datetime.now(UTC),
                   record=item)
    return env.model_dump_json().encode()


def expected_findings(records: list[object]) -> list[tuple[str, str, str, str]]:
    found = replay(records, load_rules())
    return sorted(((f.rule_id, f.state, f.severity, f.at.isoformat()) for f in found), key=lambda x: (x[3], x[0], x[1]))


@pytest.fixture(scope="module")
def published(pipeline: Pipeline, stack_env: dict[str, str]) -> dict[str, list[object]]:
    """Publish every scenario's records under a per-run patient id, in event-time order."""
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:19092", acks="all", enable_idempotence=True,
                             max_request_size=8 * 1024 * 1024, compression_type="gzip")
    run = uuid.uuid4().hex[:6]
    by_patient: dict[str, list[object]] = {}
    for scenario in SCENARIOS:
        patient = f"{scenario.patient_id}-{run}"
        records = [r.model_copy(update={"patient_id": patient}) for r in scenario.records]
        records += [c.model_copy(update={"patient_id": patient, "change_id": uuid.uuid4().hex})
                    for c in scenario.care_states]
        by_patient[patient] = records
        ordered = sorted(enumerate(records), key=lambda ir: (_time(ir[1]), _tiebreak(ir[1]), ir[0]))
        for _, record in ordered:
            producer.send(f"{stack_env['RESPMON_TOPIC_PREFIX']}.measurements", key=patient.encode(),
                          value=_message(record))
    producer.flush()
    producer.close()
    return by_patient


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s.name for s in SCENARIOS])
def test_stream_and_offline_evaluator_agree(index: int, published: dict[str, list[object]],
                                            db: psycopg.Connection) -> None:
    scenario = SCENARIOS[index]
    patient = next(p for p in published if p.startswith(scenario.patient_id + "-"))
    records = published[patient]
    expected = expected_findings(records)
    assert {rule for rule, state, _, _ in expected if state == "open"} == scenario.expected - _tick_only(scenario)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        processed = _stored_records(db, patient)
        if processed >= _distinct_records(records) and stored_findings(db, patient) == expected:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    assert stored_findings(db, patient) == expected, json.dumps(
        {"stream": stored_findings(db, patient), "offline": expected}, indent=1)


def _tick_only(scenario: object) -> frozenset[str]:
    """Rules that need a final as-of evaluation (time passing with no record) are raised by ticks."""
    with_final = {f.rule_id for f in replay(scenario.items, load_rules(), scenario.as_of)}  # type: ignore[attr-defined]
    without = {f.rule_id for f in replay(scenario.items, load_rules())}  # type: ignore[attr-defined]
    return frozenset(with_final - without)


def _stored_records(db: psycopg.Connection, patient: str) -> int:
    return sum(db.execute(f"SELECT count(*) FROM {kind.table} WHERE patient_id = %s", (patient,)).fetchone()[0]
               for kind in RECORD_KINDS)


def _distinct_records(records: list[object]) -> int:
    keys = set()
    for r in records:
        if isinstance(r, CareStateChange):
            continue  # stored in care_states, not a record table
        kind = kind_of(r)  # its natural key (schemas.kinds): a re-sent record replaces its row
        field = {column: name for name, column in kind.columns.items()}
        keys.add((kind.name, *(getattr(r, field.get(column, column)) for column in kind.key)))
    return len(keys)


def test_tick_raises_time_based_findings_in_the_stream(published: dict[str, list[object]],
                                                       db: psycopg.Connection, stack_env: dict[str, str]) -> None:
    """Silence is data: a tick at the scenario's as-of date raises missing-upload and overdue-test findings."""
    from schemas import Tick

    scenario = next(s for s in SCENARIOS if s.patient_id == "SCN-MISSING")
    patient = next(p for p in published if p.startswith("SCN-MISSING-"))
    expected = sorted((f.rule_id, f.state, f.severity, f.at.isoformat())
                      for f in replay(published[patient], load_rules(), scenario.as_of))
    assert {"DQ-NOUPLOAD", "DQ-PFT6M"} <= {rule for rule, *_ in expected}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _stored_records(db, patient) < _distinct_records(published[patient]):
        time.sleep(0.5)
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:19092", acks="all")
    producer.send(f"{stack_env['RESPMON_TOPIC_PREFIX']}.measurements", key=patient.encode(),
                  value=Tick(tick_at=scenario.as_of).model_dump_json().encode())
    producer.flush()
    producer.close()
    while time.monotonic() < deadline and sorted(stored_findings(db, patient)) != expected:
        time.sleep(0.5)
    assert sorted(stored_findings(db, patient)) == expected
