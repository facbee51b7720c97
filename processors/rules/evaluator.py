"""The one evaluation loop shared by the offline evaluator (``respmon evaluate``) and the stream.

* :func:`step` — add one record to a patient's history and evaluate as of its event time
  (the stream worker calls this per message, with the history kept in a faust table);
* :func:`tick` — evaluate at a given time without a new record (time-based rules such as
  DQ-NOUPLOAD and DQ-PFT6M; the stream calls it from a timer);
* :func:`replay` — sort records by event time, :func:`step` each, then :func:`tick` at ``as_of``;
* the files given to ``respmon evaluate`` are parsed and replayed by ``respmon.evaluate`` (top layer: it
  joins ingest's parsers and these rules);
* :func:`findings_to_jsonl` — one JSON object per finding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from processors.rules.engine import evaluate, transition
from processors.rules.history import PatientHistory, Record, event_time
from processors.rules.loader import RuleSet
from schemas import Envelope, Finding

__all__ = ["findings_to_jsonl", "replay", "step", "tick"]


def tick(
    history: PatientHistory,
    rules: RuleSet,
    at: datetime,
    *,
    upload_id: str | None = None,
    received_at: datetime | None = None,
) -> list[Finding]:
    """Evaluate all rules for one patient at ``at`` and return the finding transitions.

    ``at`` never moves backwards: if the history was already evaluated later, that time is used.
    """
    if history.evaluated_at is not None:
        last = datetime.fromisoformat(history.evaluated_at)
        at = max(at, last)
    verdicts = evaluate(rules, history, at, changes_only=True)
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
    history.add(record)
    return tick(history, rules, event_time(record), upload_id=upload_id, received_at=received_at)


def replay(
    records: Iterable[Record | Envelope],
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
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    store = histories if histories is not None else {}
    items = sorted(((event_time(r), _tiebreak(r), i, r) for i, r in enumerate(records)), key=lambda x: x[:3])
    out: list[Finding] = []
    for t, _, _, rec in items:
        if as_of is not None and t > as_of:
            continue
        pid = rec.patient_id
        history = store.get(pid)
        if history is None:
            history = store[pid] = PatientHistory(pid)
        out.extend(step(history, rec, rules))
    if as_of is not None:
        for pid in sorted(store):
            out.extend(tick(store[pid], rules, as_of))
    return out


def _tiebreak(record: Record | Envelope) -> tuple[str, str, str]:
    """Records with the same event time replay in a fixed order (patient, kind, source), not input order."""
    rec = record.record if isinstance(record, Envelope) else record
    return (rec.patient_id, rec.kind, rec.source)


def findings_to_jsonl(findings: Iterable[Finding]) -> str:
    """JSON Lines: one finding per line (patient_id, rule_id, category, severity, state, at,
    evidence, action, citation, rule_version, ...), keys sorted; empty string for no findings."""
    lines = [json.dumps(f.model_dump(mode="json"), sort_keys=True, ensure_ascii=False) for f in findings]
    return "".join(line + "\n" for line in lines)
