"""The worker's evaluation of one batch: an event the rules engine fails on makes the batch
Unprocessable (it is then taken event by event, and that event dead-lettered; see
tests/integration/test_worker_poison.py), and nothing is sent while a batch is only evaluated."""

import uuid
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from schemas import Envelope, NivNight


def niv_event(patient: str) -> SimpleNamespace:
    env = Envelope(upload_id=str(uuid.uuid4()), device_id="unit", received_at=datetime.now(UTC),
                   record=NivNight(patient_id=patient, night_date=date(2026, 11, 1), usage_hours=7.5, ahi=2.0,
                                   leak_p95_lpm=10.0))
    return SimpleNamespace(key=patient.encode(), value=env.model_dump_json().encode())


def test_an_event_the_rules_engine_fails_on_makes_the_batch_unprocessable(monkeypatch: pytest.MonkeyPatch) -> None:
    from processors import app as worker

    real_step = worker.step

    def step(history, env, rules):  # type: ignore[no-untyped-def]
        if env.patient_id == "P-BUG":
            raise ZeroDivisionError("a value that must not reach the reason")
        return real_step(history, env, rules)

    monkeypatch.setattr(worker, "step", step)
    events = [niv_event("P-ONE"), niv_event("P-BUG"), niv_event("P-TWO")]
    with pytest.raises(worker.Unprocessable) as refused:
        worker._evaluate_all(events)
    assert refused.value.reason == "rules evaluation failed: ZeroDivisionError"

    alone = [worker._evaluate_all([event]) for event in (events[0], events[2])]
    assert [b.kinds for b in alone] == [["niv_night"], ["niv_night"]]
    assert [list(b.histories) for b in alone] == [["P-ONE"], ["P-TWO"]]


def test_an_invalid_envelope_is_kept_for_the_dead_letter_topic_not_sent_while_evaluating() -> None:
    from processors import app as worker

    bad = SimpleNamespace(key=b"P-X", value=b'{"upload_id": "not-a-uuid"}')
    batch = worker._evaluate_all([bad, niv_event("P-Y")])
    assert [(event is bad, reason.split(":")[0]) for event, reason in batch.rejected] == [(True, "invalid envelope")]
    assert batch.kinds == ["niv_night"] and [e.patient_id for e in batch.envelopes] == ["P-Y"]
