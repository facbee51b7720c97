"""The worker's evaluation of a care-state change (`schemas.CareStateChange` on the measurements topic): kept in
the patient's history, evaluated in order with their records, recorded with the batch; a change keyed by
another patient or that does not parse is rejected for the dead-letter topic, never applied."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from processors import batch as batches
from processors.batch import Batch, is_care_state, is_tick
from processors.rules.loader import load_rules
from schemas import CareStateChange, Envelope, SpirometrySession, Tick

RULES = load_rules()
P = "CS-BATCH"
NOW = datetime.now(UTC)


def event(key: str, value: bytes) -> SimpleNamespace:
    return SimpleNamespace(key=key.encode(), value=value)


def low_fvc(at: datetime) -> SimpleNamespace:
    record = SpirometrySession(patient_id=P, taken_at=at, fvc_l=1.8, fvc_pct_pred=45.0, grade="A", sex="male",
                               age_years=60.0, height_cm=175.0)
    env = Envelope(upload_id=str(uuid.uuid4()), device_id="unit", received_at=NOW, record=record)
    return event(P, env.model_dump_json().encode())


def change(state: str, patient: str = P) -> CareStateChange:
    return CareStateChange(patient_id=patient, state=state, since=(NOW - timedelta(days=2)).date(),
                           note="a note that is never logged", set_by="dr-a", set_at=NOW)


def evaluate(events: list[SimpleNamespace]) -> Batch:
    return asyncio.run(batches.evaluate_all(events, lambda patient: None, RULES, 86400.0))


def test_a_change_resolves_what_it_silences_and_later_data_raise_nothing() -> None:
    declined = change("invasive_ventilation")
    message = event(P, declined.model_dump_json().encode())
    assert is_care_state(message) and not is_tick(message)
    batch = evaluate([low_fvc(NOW - timedelta(days=3)), message, low_fvc(NOW - timedelta(hours=1))])
    assert [(f.rule_id, f.state, f.evidence.get("resolution")) for f in batch.findings] == [
        ("NS-FVC50", "open", None), ("NS-FVC50", "resolved", "no_longer_applies")]
    assert batch.care_states == [declined] and batch.kinds == ["spirometry", "care_state", "spirometry"]
    assert batch.histories[P].care_states[0]["state"] == "invasive_ventilation"
    assert batch.rejected == []


def test_a_change_for_a_patient_without_history_starts_one() -> None:
    batch = evaluate([event(P, change("niv_declined").model_dump_json().encode())])
    assert batch.findings == [] and list(batch.histories) == [P]


def test_a_change_keyed_by_another_patient_or_unreadable_is_rejected() -> None:
    wrong_key = event("SOMEONE-ELSE", change("left_service").model_dump_json().encode())
    broken = event(P, b'{"kind":"care_state","state":"asleep"}')
    batch = evaluate([wrong_key, broken])
    reasons = [reason for _, reason in batch.rejected]
    assert reasons[0] == "care-state change keyed by another patient than its own"
    assert reasons[1].startswith("invalid care-state change: ") and "asleep" not in reasons[1]
    assert batch.histories == {} and batch.care_states == []


def test_a_change_from_the_future_is_rejected() -> None:
    later = NOW + timedelta(days=30)
    future = CareStateChange(patient_id=P, state="end_of_life", since=later.date(), set_by="dr-a", set_at=later)
    batch = evaluate([event(P, future.model_dump_json().encode())])
    assert batch.histories == {} and batch.rejected[0][1].startswith("care-state change since is later than now")


def test_a_tick_is_not_a_care_state() -> None:
    assert not is_care_state(event(P, Tick(tick_at=NOW).model_dump_json().encode()))
