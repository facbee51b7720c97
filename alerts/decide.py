"""The alert lifecycle as pure decisions: (the alert as it stands, the findings of one evaluation, now)
-> (the alert after them, what to record, whether to notify). The worker's PostgreSQL path
(`alerts.lifecycle`) and the offline evaluator (`respmon evaluate --alerts`, through :class:`AlertBook`)
call the same functions, so a rules change can be backtested for the notifications it would send.

* **One decision, one alert**: findings of one patient and category share one active alert; it lists
  every contributing rule and has the worst severity of those still open.
* **Notify news only**: an alert is notified when it opens and when its severity rises above what the
  team was last told; a milder severity, another rule joining at no worse a level and a resolution are
  recorded without a message (the rules engine already waited out flapping: `resolve_after`).
* **Backfill is history**: a finding dated more than the horizon before now is recorded, not notified;
  :func:`announce` later notifies an alert that still holds once the patient's data reach the present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from schemas.findings import SEVERITY_ORDER, Finding

__all__ = ["CONDITION_CLEARED", "Alert", "AlertBook", "Contribution", "Decision", "Notification", "announce",
           "decide", "evaluations"]

CONDITION_CLEARED = "condition_cleared"
"""The resolution of a finding that carries none (the engine writes it in the evidence)."""
Status = Literal["open", "acknowledged", "resolved"]


@dataclass(frozen=True)
class Contribution:
    """One rule's part in an alert: its latest finding."""

    severity: str
    state: Literal["open", "resolved"]
    at: datetime
    rule_version: str
    action: str
    citation: str
    resolution: str | None = None


@dataclass(frozen=True)
class Alert:
    """One patient's alert for one category, as the `alerts` table holds it."""

    patient_id: str
    category: str
    severity: str
    finding_at: datetime
    """The newest finding applied: findings older than it are replays."""
    rules: Mapping[str, Contribution] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    """Rule id -> the evidence of its latest finding."""
    status: Status = "open"
    notified_severity: str | None = None
    """The severity the team was last told (lowered with the alert); None = never notified."""
    resolution: str | None = None
    alert_id: int | None = None

    @property
    def active(self) -> bool:
        return self.status != "resolved"

    @property
    def open_rules(self) -> tuple[str, ...]:
        """Contributing rules still open, worst first (then oldest)."""
        live = [(rid, c) for rid, c in self.rules.items() if c.state == "open"]
        live.sort(key=lambda rc: (-SEVERITY_ORDER[rc[1].severity], rc[1].at, rc[0]))
        return tuple(rid for rid, _ in live)

    @property
    def lead(self) -> str | None:
        """The rule whose action, citation and evidence head the alert's messages."""
        ranked = self.open_rules
        return ranked[0] if ranked else max(self.rules, key=lambda r: self.rules[r].at, default=None)


@dataclass(frozen=True)
class Notification:
    """A message the team is sent (to every matching route): what `respmon evaluate --alerts` prints."""

    patient_id: str
    category: str
    severity: str
    change: Literal["opened", "worsened"]
    rules: tuple[str, ...]
    at: datetime
    alert_id: int | None = field(default=None, compare=False)
    """The alert row's id once stored (the worker); None offline."""

    def to_json(self) -> dict[str, Any]:
        return {"patient_id": self.patient_id, "category": self.category, "severity": self.severity,
                "change": self.change, "rules": list(self.rules), "at": self.at.isoformat()}


Event = tuple[str, str | None]
"""An `alert_events` row: action (opened, worsened, improved, updated, resolved, announced) and note."""


@dataclass(frozen=True)
class Decision:
    """What the findings of one evaluation (or an announcement) do to an alert."""

    alert: Alert | None
    """The alert after them (None: there was none and there is none)."""
    events: tuple[Event, ...] = ()
    """What to record, in order; empty when nothing changed."""
    notification: Notification | None = None
    created: bool = False


def evaluations(findings: Iterable[Finding]) -> list[list[Finding]]:
    """The findings grouped as `decide` takes them: one patient, one category, one evaluation time (in the
    order they first appear; a patient's findings come in time order)."""
    groups: dict[tuple[str, str, datetime], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.patient_id, f.category, f.at), []).append(f)
    return list(groups.values())


def decide(current: Alert | None, findings: Sequence[Finding], now: datetime, horizon: timedelta) -> Decision:
    """Apply the findings of one evaluation of one patient and category to their latest alert of that
    category (active or resolved); one notification at most. Rules that open join before rules that
    resolve leave, so an alert handed from one rule to another stays one alert."""
    alert, created = current, False
    events: list[Event] = []
    for finding in sorted(findings, key=lambda f: f.state != "open"):
        changed, event, new = _apply(alert, finding)
        if event is not None:
            alert, created = changed, created or new
            events.append(event)
    if not events:
        return Decision(current)
    return _news(Decision(alert, tuple(events), created=created), max(f.at for f in findings), now, horizon)


def announce(current: Alert, data_at: datetime, now: datetime, horizon: timedelta) -> Decision:
    """Notify an active alert the team was never told about at its level (raised by backfilled findings),
    once the patient's newest data (`data_at`) lie within the horizon: it holds now."""
    decision = _news(Decision(current, (("announced", "holds after backfilled data"),)), data_at, now, horizon)
    return decision if decision.notification is not None else Decision(current)


Step = tuple[Alert | None, Event | None, bool]
"""(the alert after one finding, the event to record or None, whether the alert is new)."""


def _apply(current: Alert | None, finding: Finding) -> Step:
    """One finding's change to the alert, before any notification is considered."""
    if current is not None and _replayed(current, finding):
        return current, None, False
    active = current if current is not None and current.active else None
    if finding.state == "resolved":
        return _resolved(active, finding) if active is not None else (current, None, False)
    if active is None:
        alert = Alert(patient_id=finding.patient_id, category=finding.category, severity=finding.severity,
                      finding_at=finding.at, rules={finding.rule_id: _contribution(finding)},
                      evidence={finding.rule_id: finding.evidence})
        return alert, ("opened", _note(finding)), True
    return _joined(active, finding)


def _replayed(alert: Alert, finding: Finding) -> bool:
    """A finding the alert has already taken (a batch taken again): a patient's findings come in time order."""
    if finding.at != alert.finding_at:
        return finding.at < alert.finding_at
    seen = alert.rules.get(finding.rule_id)
    return seen is not None and (seen.at, seen.state, seen.severity) == (finding.at, finding.state, finding.severity)


def _contribution(finding: Finding) -> Contribution:
    resolution = finding.evidence.get("resolution", CONDITION_CLEARED) if finding.state == "resolved" else None
    return Contribution(severity=finding.severity, state=finding.state, at=finding.at,
                        rule_version=finding.rule_version, action=finding.action, citation=finding.citation,
                        resolution=resolution)


def _note(finding: Finding) -> str:
    return f"{finding.rule_id} {finding.state} {finding.severity} (rules {finding.rule_version})"


def _with(alert: Alert, finding: Finding) -> Alert:
    """The alert with the finding's rule updated, its severity the worst open rule's."""
    rules = {**alert.rules, finding.rule_id: _contribution(finding)}
    evidence = {**alert.evidence, finding.rule_id: finding.evidence}
    updated = replace(alert, rules=rules, evidence=evidence, finding_at=max(alert.finding_at, finding.at))
    worst = updated.open_rules
    severity = updated.rules[worst[0]].severity if worst else alert.severity
    told = updated.notified_severity
    if told is not None and _rank(severity) < _rank(told):
        told = severity  # the team's picture is capped by what the alert now shows
    return replace(updated, severity=severity, notified_severity=told)


def _joined(active: Alert, finding: Finding) -> Step:
    """An open finding on an active alert: a new contributing rule, or a rule's new severity."""
    alert = _with(active, finding)
    if _rank(alert.severity) > _rank(active.severity):
        return replace(alert, status="open"), ("worsened", _note(finding)), False  # to be acknowledged afresh
    return alert, (_milder_or_same(alert, active), _note(finding)), False


def _resolved(active: Alert, finding: Finding) -> Step:
    """A rule stopped holding: the alert resolves with its reason once no contributing rule is open."""
    seen = active.rules.get(finding.rule_id)
    if seen is None or seen.state != "open":
        return active, None, False
    alert = _with(active, finding)
    if alert.open_rules:
        return alert, (_milder_or_same(alert, active), _note(finding)), False
    resolution = alert.rules[finding.rule_id].resolution
    return replace(alert, status="resolved", resolution=resolution), ("resolved", _why(resolution, finding)), False


def _why(resolution: str | None, finding: Finding) -> str | None:
    """The resolution, with the care state that made the rule stop applying (who set it, from which day,
    or the data that show it), so the audit row says why without opening the evidence."""
    applies = finding.evidence.get("applies")
    states = applies.get("care_state") if isinstance(applies, dict) else None
    if not states:
        return resolution
    told = "; ".join(f"{name} " + (f"set by {how['set_by']} from {how['since']}" if "set_by" in how
                                   else f"shown by {how.get('shown_by')}") for name, how in sorted(states.items()))
    return f"{resolution}: care state {told}"


def _milder_or_same(alert: Alert, before: Alert) -> str:
    return "improved" if alert.severity != before.severity else "updated"


def _news(decision: Decision, at: datetime, now: datetime, horizon: timedelta) -> Decision:
    """Add the notification when the change is recent and the team has not been told this level."""
    alert = decision.alert
    if alert is None or not alert.active or now - at > horizon:
        return decision
    if alert.notified_severity is not None and _rank(alert.severity) <= _rank(alert.notified_severity):
        return decision
    change: Literal["opened", "worsened"] = "opened" if alert.notified_severity is None else "worsened"
    note = Notification(alert.patient_id, alert.category, alert.severity, change, alert.open_rules, at)
    return replace(decision, alert=replace(alert, notified_severity=alert.severity), notification=note)


def _rank(severity: str) -> int:
    return SEVERITY_ORDER[severity]


class AlertBook:
    """Alerts kept in memory as the `alerts` table keeps them, for the offline evaluator."""

    def __init__(self, horizon: timedelta) -> None:
        self.horizon = horizon
        self.alerts: dict[tuple[str, str], Alert] = {}

    def apply(self, findings: Iterable[Finding], now: datetime | None = None) -> list[Notification]:
        """Decide on the findings, one evaluation and category at a time; `now` None: each arrives when
        it was computed (live monitoring)."""
        out = []
        for group in evaluations(findings):
            key = (group[0].patient_id, group[0].category)
            decision = decide(self.alerts.get(key), group, now or group[0].at, self.horizon)
            if decision.alert is not None:
                self.alerts[key] = decision.alert
            if decision.notification is not None:
                out.append(decision.notification)
        return out

    def announce(self, patient_id: str, data_at: datetime, now: datetime) -> list[Notification]:
        """Notify the patient's active alerts that were raised silently and hold now."""
        out = []
        for key, alert in sorted(self.alerts.items()):
            if key[0] == patient_id and alert.active:
                decision = announce(alert, data_at, now, self.horizon)
                if decision.notification is not None:
                    self.alerts[key] = decision.alert or alert
                    out.append(decision.notification)
        return out
