"""One batch of the worker's events evaluated against the rules, with no I/O: the records to store,
the findings in order and the histories changed. processors/app.py stores the batch in one
transaction and writes the histories to the table only once it is stored, so a batch taken again
(event by event, after a refusal) starts from the table's state."""

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from faust.types import EventT
from pydantic import ValidationError

from processors.rules.evaluator import change_care_state, step, tick
from processors.rules.history import PatientHistory, future_field
from processors.rules.loader import RuleSet
from schemas import CareStateChange, Envelope, Finding, Tick, WireError, decode_envelope

StoredHistory = Callable[[str], bytes | None]
"""A patient's history as the worker's table holds it (compact JSON bytes), None when it has none."""

FROM_THE_FUTURE = "a device clock or a record from the future"


class Unprocessable(Exception):
    """A batch that no retry can store: the rules engine failed on one of its events, or PostgreSQL
    refused one of its records. `reason` names the failure, never a value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Batch:
    """What one batch of events changes: records to store, findings in order, histories touched."""

    stored: StoredHistory
    envelopes: list[Envelope] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    histories: dict[str, PatientHistory] = field(default_factory=dict)
    last_event: dict[str, EventT] = field(default_factory=dict)
    rejected: list[tuple[EventT, str]] = field(default_factory=list)  # dead-lettered once stored
    kinds: list[str] = field(default_factory=list)  # of the events evaluated, counted once stored
    care_states: list[CareStateChange] = field(default_factory=list)  # recorded in `care_states` with the batch

    def history(self, patient: str) -> PatientHistory:
        if patient not in self.histories:
            stored = self.stored(patient)
            self.histories[patient] = PatientHistory.from_json(stored) if stored else PatientHistory(patient)
        return self.histories[patient]

    def knows(self, patient: str) -> bool:
        """True when the patient has a history (stored, or started in this batch)."""
        return patient in self.histories or bool(self.stored(patient))


def raw_value(event: EventT) -> bytes:
    """The event's value as the raw codec hands it over (the worker's topics are all raw bytes)."""
    value = event.value
    return value if isinstance(value, bytes) else b""


def envelopes(events: list[EventT]) -> list[Envelope]:
    """The envelopes among `events` (for upload ids in a log line; what does not parse is skipped)."""
    out = []
    for event in events:
        raw = raw_value(event)
        if is_tick(event) or is_care_state(event):
            continue
        try:
            out.append(decode_envelope(raw))
        except (ValidationError, ValueError):  # WireError is a ValueError
            continue
    return out


def readable_payload(raw: bytes) -> str:
    """A message as text for its dead letter: JSON as it came, a binary envelope as its JSON, and bytes
    that decode to nothing as base64 (prefixed `base64:`), so the team can always read or restore it."""
    if raw[:1] == b"{":
        return raw.decode("utf-8", "replace")
    try:
        return decode_envelope(raw).model_dump_json()
    except (ValidationError, ValueError):
        return "base64:" + base64.b64encode(raw).decode()


def is_tick(event: EventT) -> bool:
    """A timer's re-evaluation request for one patient (keyed by patient id), not a measurement."""
    return bool(event.key) and raw_value(event).startswith(b'{"tick_at"')


def is_care_state(event: EventT) -> bool:
    """A care-state change the team set (`schemas.CareStateChange`: its `kind` comes first), not a measurement."""
    return bool(event.key) and raw_value(event).startswith(b'{"kind":"care_state"')


async def evaluate_all(events: list[EventT], stored: StoredHistory, rules: RuleSet,
                       max_clock_skew_s: float, focus: Callable[[EventT], None] | None = None) -> Batch:
    """Evaluate the events in order, giving the event loop a turn after each: a batch of events of a
    patient with a long history takes seconds, and /healthz, /readyz, /metrics, the dispatcher and the
    Kafka heartbeats must not wait for all of it. Safe: only the agent changes the batch and the
    histories, and it waits here; the timers and web pages only read the table. `focus` is called with
    each event before it is evaluated (the worker makes it the stream's current event)."""
    batch = Batch(stored)
    latest = datetime.now(UTC) + timedelta(seconds=max_clock_skew_s)
    for event in events:
        if focus is not None:
            focus(event)
        try:
            evaluate(batch, event, rules, latest)
        except Exception as error:  # pure code: the same event fails the same way again
            raise Unprocessable(f"rules evaluation failed: {type(error).__name__}") from error
        await asyncio.sleep(0)
    return batch


def evaluate(batch: Batch, event: EventT, rules: RuleSet, latest: datetime) -> None:
    """Run the rules for one event against its patient's history (kept in the batch until written).
    A record dated after `latest` (now + max_clock_skew_s) is rejected before it reaches the history:
    it would be the patient's "latest" until that date (see `future_field`)."""
    if is_tick(event):
        _tick(batch, event, rules)
        return
    if is_care_state(event):
        _care_state(batch, event, rules, latest)
        return
    try:
        env = decode_envelope(raw_value(event))  # the binary envelope, or the JSON of the previous release
    except ValidationError as error:
        where = ".".join(map(str, error.errors()[0]["loc"]))
        batch.rejected.append((event, f"invalid envelope: {error.error_count()} error(s), first at {where}"))
        return
    except WireError as error:
        batch.rejected.append((event, f"invalid envelope: {error}"))
        return
    future = future_field(env, latest)
    if future is not None:
        batch.rejected.append((event, f"{future} is later than now + max_clock_skew_s: {FROM_THE_FUTURE}"))
        return
    batch.findings += step(batch.history(env.patient_id), env, rules)
    batch.envelopes.append(env)
    batch.last_event[env.patient_id] = event
    batch.kinds.append(env.record.kind)


def _tick(batch: Batch, event: EventT, rules: RuleSet) -> None:
    """Re-evaluate a patient the worker holds a history of (a tick for anyone else does nothing)."""
    patient = event.key.decode() if isinstance(event.key, bytes) else str(event.key)
    if batch.knows(patient):
        batch.findings += tick(batch.history(patient), rules, Tick.model_validate_json(raw_value(event)).tick_at)
        batch.last_event[patient] = event
    batch.kinds.append("tick")


def _care_state(batch: Batch, event: EventT, rules: RuleSet, latest: datetime) -> None:
    """Keep the team's change in the patient's history (a new one if none yet: their data will read it) and
    evaluate, so the rules it silences resolve as no longer applying; the change is recorded with the batch.
    One starting after `latest` would move the patient's evaluation time forward for good: rejected."""
    try:
        change = CareStateChange.model_validate_json(raw_value(event))
    except ValidationError as error:
        where = ".".join(map(str, error.errors()[0]["loc"]))
        batch.rejected.append((event, f"invalid care-state change: {error.error_count()} error(s), first at {where}"))
        return
    key = event.key.decode() if isinstance(event.key, bytes) else str(event.key)
    if key != change.patient_id:
        batch.rejected.append((event, "care-state change keyed by another patient than its own"))
        return
    if change.starts_at > latest:
        reason = f"care-state change since is later than now + max_clock_skew_s: {FROM_THE_FUTURE}"
        batch.rejected.append((event, reason))
        return
    batch.findings += change_care_state(batch.history(change.patient_id), change, rules)
    batch.care_states.append(change)
    batch.last_event[change.patient_id] = event
    batch.kinds.append("care_state")
