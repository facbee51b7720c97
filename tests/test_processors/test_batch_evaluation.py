"""The worker's evaluation of one batch: an event the rules engine fails on makes the batch
Unprocessable (it is then taken event by event, and that event dead-lettered; see
tests/integration/test_worker_poison.py), nothing is sent while a batch is only evaluated, a record
from the future is rejected before it reaches a history, and the event loop gets a turn per event."""

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from processors import batch as batches
from processors.batch import Batch, Unprocessable
from processors.rules.history import PatientHistory
from processors.rules.loader import RuleSet, load_rules
from schemas import Envelope, Finding, NivNight, SpirometrySession

RULES = load_rules()
SKEW_S = 86400.0  # the default RESPMON_MAX_CLOCK_SKEW_S


def evaluate(events: list[Any], rules: RuleSet = RULES) -> Batch:
    """The worker's evaluation of one batch, for patients without a stored history."""
    return asyncio.run(evaluate_async(events, rules))


async def evaluate_async(events: list[Any], rules: RuleSet = RULES) -> Batch:
    """`events` are SimpleNamespaces with faust's `key` and `value`: all the evaluation reads."""
    return await batches.evaluate_all(events, lambda patient: None, rules, SKEW_S)


def niv_event(patient: str) -> SimpleNamespace:
    env = Envelope(upload_id=str(uuid.uuid4()), device_id="unit", received_at=datetime.now(UTC),
                   record=NivNight(patient_id=patient, night_date=date(2026, 11, 1), usage_hours=7.5, ahi=2.0,
                                   leak_p95_lpm=10.0))
    return SimpleNamespace(key=patient.encode(), value=env.model_dump_json().encode())


def test_an_event_the_rules_engine_fails_on_makes_the_batch_unprocessable(monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = batches.step

    def step(history: PatientHistory, env: Envelope, rules: RuleSet) -> list[Finding]:
        if env.patient_id == "P-BUG":
            raise ZeroDivisionError("a value that must not reach the reason")
        return real_step(history, env, rules)

    monkeypatch.setattr(batches, "step", step)  # a bug in the rules engine, for one patient
    events = [niv_event("P-ONE"), niv_event("P-BUG"), niv_event("P-TWO")]
    with pytest.raises(Unprocessable) as refused:
        evaluate(events)
    assert refused.value.reason == "rules evaluation failed: ZeroDivisionError"

    alone = [evaluate([event]) for event in (events[0], events[2])]
    assert [b.kinds for b in alone] == [["niv_night"], ["niv_night"]]
    assert [list(b.histories) for b in alone] == [["P-ONE"], ["P-TWO"]]


def test_an_invalid_envelope_is_kept_for_the_dead_letter_topic_not_sent_while_evaluating() -> None:
    bad = SimpleNamespace(key=b"P-X", value=b'{"upload_id": "not-a-uuid"}')
    batch = evaluate([bad, niv_event("P-Y")])
    assert [(event is bad, reason.split(":")[0]) for event, reason in batch.rejected] == [(True, "invalid envelope")]
    assert batch.kinds == ["niv_night"] and [e.patient_id for e in batch.envelopes] == ["P-Y"]


def spiro_event(patient: str, taken_at: datetime, fvc_pct: float) -> SimpleNamespace:
    env = Envelope(upload_id=str(uuid.uuid4()), device_id="unit", received_at=datetime.now(UTC),
                   record=SpirometrySession(patient_id=patient, taken_at=taken_at, fvc_l=3.0, fvc_pct_pred=fvc_pct,
                                            posture="sitting", source="unit"))
    return SimpleNamespace(key=patient.encode(), value=env.model_dump_json().encode())


def test_a_record_from_the_future_is_rejected_naming_its_field_and_never_reaches_the_history() -> None:
    patient = f"P-FUT-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC).replace(microsecond=0)  # history rows round event times to 0.1 ms
    skew = timedelta(seconds=SKEW_S)
    future = spiro_event(patient, datetime(2099, 1, 1, tzinfo=UTC), 80.0)
    just_beyond = spiro_event(patient, now + skew + timedelta(hours=1), 80.0)
    within = spiro_event(patient, now + skew - timedelta(hours=1), 38.0)  # a fast device clock: kept
    batch = evaluate([future, just_beyond, within])
    assert [(e is future or e is just_beyond, r.split(" ")[0]) for e, r in batch.rejected] == \
        [(True, "record.taken_at"), (True, "record.taken_at")]
    assert all("2099" not in r and "80" not in r for _, r in batch.rejected)  # no value in the reason
    assert batch.histories[patient].count("spiro") == 1
    assert [f.rule_id for f in batch.findings] == ["NS-FVC50"]  # the 38 % session decides, not 2099
    assert len(batch.envelopes) == 1 and batch.kinds == ["spirometry"]


def test_the_event_loop_gets_a_turn_between_the_events_of_a_batch() -> None:
    events = [niv_event(f"P-LOOP-{i}") for i in range(5)]
    turns: list[int] = []

    async def main() -> None:
        async def ticker() -> None:
            while True:
                turns.append(len(turns))
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = len(turns)
        await evaluate_async(events)
        turns_during = len(turns) - before
        task.cancel()
        assert turns_during >= len(events) - 1, turns_during

    asyncio.run(main())


def test_future_field_names_the_field_that_dates_each_kind() -> None:
    from processors.rules.history import future_field
    from tests.scenarios import alsfrs, niv_night, oxi_night, spiro

    night = date(2099, 6, 1)
    at = datetime(2099, 6, 1, 9, tzinfo=UTC)
    latest = datetime(2030, 1, 1, tzinfo=UTC)
    future = [spiro("P", at, 80.0), alsfrs("P", at), oxi_night("P", night, interval_s=60.0), niv_night("P", night)]
    assert [future_field(r, latest) for r in future] == \
        ["record.taken_at", "record.taken_at", "record.start", "record.night_date"]
    past = [spiro("P", latest, 80.0), niv_night("P", date(2029, 12, 30))]  # ends at noon of Dec 31
    assert [future_field(r, latest) for r in past] == [None, None]
