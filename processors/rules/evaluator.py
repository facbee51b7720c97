"""The one evaluation loop shared by the offline evaluator (``respmon evaluate``) and the stream.

* :func:`step` — add one record to a patient's history and evaluate as of its event time
  (the stream worker calls this per message, with the history kept in a faust table);
* :func:`tick` — evaluate at a given time without a new record (time-based rules such as
  DQ-NOUPLOAD and DQ-PFT6M; the stream calls it from a timer);
* :func:`replay` — sort records by event time, :func:`step` each, then :func:`tick` at ``as_of``
  (:func:`steps` gives the same one evaluation at a time, with the patient's history, for
  ``respmon evaluate --alerts`` to run the alert lifecycle after each as the worker does);
* the files given to ``respmon evaluate`` are parsed and replayed by ``respmon.evaluate`` (top layer: it
  joins ingest's parsers and these rules);
* :func:`change_care_state` — keep a team's care-state change and evaluate (it may silence rules: their
  open findings resolve as no longer applying); :func:`replay` takes changes among the records;
* :func:`findings_to_jsonl` — one JSON object per finding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from processors.rules.engine import evaluate_changes, transition
from processors.rules.history import PatientHistory, Record, event_time, record_kind
from processors.rules.loader import RuleSet
from schemas import CareStateChange, Envelope, Finding

__all__ = ["Item", "change_care_state", "findings_to_jsonl", "replay", "step", "steps", "tick"]

Item = Record | Envelope | CareStateChange
"""What a replay takes: records (bare or in their envelope) and the team's care-state changes."""


def tick(
    history: PatientHistory,
    rules: RuleSet,
    at: datetime,
    *,
    upload_id: str | None = None,
    received_at: datetime | None = None,
    fresh: str | None = None,
) -> list[Finding]:
    """Evaluate all rules for one patient at ``at`` and return the finding transitions.

    ``at`` never moves backwards: if the history was already evaluated later, that time is used.
    ``fresh`` is the store of the record just added (:func:`step`); None means time passed (a timer),
    which does not count as an evaluation toward a rule's ``resolve_after.evaluations``.
    """
    if history.evaluated_at is not None:
        last = datetime.fromisoformat(history.evaluated_at)
        at = max(at, last)
    verdicts = evaluate_changes(rules, history, at, fresh=fresh)
    findings = transition(history, verdicts, at, upload_id=upload_id, received_at=received_at)
    history.evaluated_at = at.isoformat()
    return findings


def step(
    history: PatientHistory,
    record: Record | Envelope,
    rules: RuleSet,
    *,
    upload_id: str | None = None,
    received_at: datetime | None = None,
) -> list[Finding]:
    """Add one record (or an Envelope, whose upload id is carried into the findings) and evaluate
    as of the record's event time (or the last evaluation time, for a late-arriving record)."""
    if isinstance(record, Envelope):
        upload_id = upload_id or record.upload_id
        received_at = received_at or record.received_at
        record = record.record
    history.keep_days = rules.keep_days  # the rule set's retention (its file's history.keep_days)
    history.keep_max = rules.keep_max_per_kind  # and its count bound (history.keep_max_per_kind)
    if not history.add(record):
        # a replay (the worker re-reads events after a crash; a device sends the same data again) or a
        # record older than the history keeps: evaluating again would count as new data toward a rule's
        # resolve_after and resolve it early (seen in the SIGKILL fault test)
        return []
    return tick(history, rules, event_time(record), upload_id=upload_id, received_at=received_at,
                fresh=record_kind(record))


def change_care_state(history: PatientHistory, change: CareStateChange, rules: RuleSet) -> list[Finding]:
    """Keep the change and evaluate as of its start (or the last evaluation, when later: a state set for
    the past applies from now on, earlier findings stand), so what it silences resolves at once."""
    history.set_care_state(change)
    return tick(history, rules, change.starts_at)


def replay(
    records: Iterable[Item],
    rules: RuleSet,
    as_of: datetime | None = None,
    *,
    histories: dict[str, PatientHistory] | None = None,
) -> list[Finding]:
    """Replay records in event-time order through :func:`step`, then evaluate once more at ``as_of``.

    With ``as_of``, records whose event time is after it are left out (the result is what would
    have been known at that time). ``histories`` (patient id -> history) may be passed to keep or
    inspect the per-patient state.
    """
    return [f for _, found in steps(records, rules, as_of, histories=histories) for f in found]


def steps(
    records: Iterable[Item],
    rules: RuleSet,
    as_of: datetime | None = None,
    *,
    histories: dict[str, PatientHistory] | None = None,
) -> Iterator[tuple[PatientHistory, list[Finding]]]:
    """What :func:`replay` does, one evaluation at a time: (the patient's history, its findings)."""
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    store = histories if histories is not None else {}
    items = sorted(((_time(r), _tiebreak(r), i, r) for i, r in enumerate(records)), key=lambda x: x[:3])
    for t, _, _, rec in items:
        if as_of is not None and t > as_of:
            continue
        pid = rec.patient_id
        history = store.get(pid)
        if history is None:
            history = store[pid] = PatientHistory(pid)
        if isinstance(rec, CareStateChange):
            yield history, change_care_state(history, rec, rules)
        else:
            yield history, step(history, rec, rules)
    if as_of is not None:
        for pid in sorted(store):
            yield store[pid], tick(store[pid], rules, as_of)


def _time(item: Item) -> datetime:
    """A record's event time; a care-state change's start."""
    return item.starts_at if isinstance(item, CareStateChange) else event_time(item)


def _tiebreak(record: Item) -> tuple[str, str, str]:
    """Records with the same event time replay in a fixed order (patient, kind, source), not input order."""
    if isinstance(record, CareStateChange):
        return (record.patient_id, record.kind, record.set_at.isoformat())
    rec = record.record if isinstance(record, Envelope) else record
    return (rec.patient_id, rec.kind, rec.source)


def findings_to_jsonl(findings: Iterable[Finding]) -> str:
    """JSON Lines: one finding per line (patient_id, rule_id, category, severity, state, at,
    evidence, action, citation, rule_version, ...), keys sorted; empty string for no findings."""
    lines = [json.dumps(f.model_dump(mode="json"), sort_keys=True, ensure_ascii=False) for f in findings]
    return "".join(line + "\n" for line in lines)
