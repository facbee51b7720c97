"""The team sets a patient's care state (`schemas.CareStateChange`): published on the measurements topic,
keyed by patient, so it is ordered with their data and applied by the worker that holds their history
(which silences rules and resolves what no longer applies), and recorded in `care_states`, the append-only
audit of who set what, when, from which day, with which note.

Both the publisher (`respmon care-state`, `alerts/carestate_api.py`) and the worker insert
the row, idempotently on `change_id`: the audit exists as soon as the change is acknowledged, and a change
published by anything else still reaches it. A device never sets a care state: ingest has no parser for it.
"""

from typing import Any

import psycopg
from kafka import KafkaProducer
from psycopg import AsyncConnection

from respmon.core.settings import Settings
from schemas.carestate import CareStateChange

__all__ = ["publish", "record", "record_async"]

_INSERT = ("INSERT INTO care_states (change_id, patient_id, state, since, note, set_by, set_at)"
           " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (change_id) DO NOTHING")


def _row(change: CareStateChange) -> tuple[Any, ...]:
    return (change.change_id, change.patient_id, change.state, change.since, change.note, change.set_by,
            change.set_at)


def record(conn: psycopg.Connection[Any], change: CareStateChange) -> bool:
    """Append the change to `care_states`; False when it is there already."""
    return conn.execute(_INSERT, _row(change)).rowcount > 0


async def record_async(conn: AsyncConnection[Any], change: CareStateChange) -> bool:
    """`record` in the worker's transaction."""
    return (await conn.execute(_INSERT, _row(change))).rowcount > 0


def publish(settings: Settings, change: CareStateChange) -> None:
    """Send the change keyed by patient and wait for the broker's acknowledgement (acks=all). A producer per
    change: the team sets a state a few times a day, and nothing is left open between them."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, client_id="respmon-care-state",
                             acks="all", enable_idempotence=True, retries=10,
                             request_timeout_ms=int(settings.publish_timeout_s * 1000))
    try:
        producer.send(settings.measurements_topic, key=change.patient_id.encode(),
                      value=change.model_dump_json().encode()).get(timeout=settings.publish_timeout_s)
    finally:
        producer.close(timeout=5)
