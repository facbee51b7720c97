"""The pure alert lifecycle (issue 12, alert burden): one alert per patient and category listing every
contributing rule, notifications only for news (opened, severity up), reasons for closing, and backfilled
findings recorded without a message."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.decide import Alert, AlertBook, Notification, announce, decide
from schemas import Finding

P = "A-1"
T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
HORIZON = timedelta(days=14)


def finding(rule: str, severity: str, day: int, *, state: str = "open", category: str = "NIV_START",
            resolution: str | None = None) -> Finding:
    evidence: dict[str, Any] = {"change": "resolved" if state == "resolved" else "opened", "values": {"x": day}}
    if resolution is not None:
        evidence["resolution"] = resolution
    return Finding.model_validate({
        "patient_id": P, "rule_id": rule, "rule_version": "t", "category": category, "severity": severity,
        "state": state, "at": T0 + timedelta(days=day), "evidence": evidence, "action": f"act on {rule}",
        "citation": f"cite {rule}"})


def run(findings: list[Finding], now: datetime | None = None) -> tuple[Alert | None, list[Notification]]:
    """Apply findings in order (each `now` = its own time unless given) to one patient's alerts."""
    book = AlertBook(HORIZON)
    sent = [n for f in findings for n in book.apply([f], now)]
    return book.alerts.get((P, "NIV_START")), sent


def test_two_niv_start_rules_make_one_alert_listing_both_at_the_worst_severity() -> None:
    alert, sent = run([finding("NS-SLOPE", "warn", 0), finding("NS-FVC50", "high", 30)])
    assert alert is not None and alert.active
    assert alert.open_rules == ("NS-FVC50", "NS-SLOPE") and alert.lead == "NS-FVC50"
    assert alert.severity == "high" and set(alert.evidence) == {"NS-SLOPE", "NS-FVC50"}
    assert [(n.change, n.severity, n.rules) for n in sent] == [
        ("opened", "warn", ("NS-SLOPE",)), ("worsened", "high", ("NS-FVC50", "NS-SLOPE"))]


def test_a_rule_joining_at_no_worse_a_level_updates_without_a_message() -> None:
    alert, sent = run([finding("NS-FVC50", "high", 0), finding("NS-OXI88", "warn", 1), finding("NS-SNIP40", "high", 2)])
    assert alert is not None and alert.open_rules == ("NS-FVC50", "NS-SNIP40", "NS-OXI88")
    assert [n.change for n in sent] == ["opened"]


def test_severity_up_notifies_at_once_and_down_is_recorded_silently() -> None:
    current = decide(None, [finding("NS-MIP60", "high", 0)], T0, HORIZON).alert
    worse = decide(current, [finding("NS-MIP60", "urgent", 1)], T0 + timedelta(days=1), HORIZON)
    assert worse.events[0][0] == "worsened" and worse.notification is not None
    assert worse.notification.severity == "urgent"
    better = decide(worse.alert, [finding("NS-MIP60", "high", 9)], T0 + timedelta(days=9), HORIZON)
    assert better.events[0][0] == "improved" and better.notification is None
    assert better.alert is not None and better.alert.severity == "high" and better.alert.notified_severity == "high"
    again = decide(better.alert, [finding("NS-MIP60", "urgent", 12)], T0 + timedelta(days=12), HORIZON)
    assert again.notification is not None and again.notification.change == "worsened"


def test_worse_severity_reopens_an_acknowledged_alert() -> None:
    current = decide(None, [finding("NS-OXI88", "warn", 0)], T0, HORIZON).alert
    assert current is not None
    acked = replace(current, status="acknowledged")
    assert decide(acked, [finding("NS-T90", "warn", 1)], T0, HORIZON).alert.status == "acknowledged"  # type: ignore[union-attr]
    assert decide(acked, [finding("NS-FVC50", "high", 1)], T0, HORIZON).alert.status == "open"  # type: ignore[union-attr]


def test_the_alert_resolves_when_its_last_rule_does_with_that_rules_reason() -> None:
    alert, _ = run([finding("NS-FVC50", "high", 0), finding("NS-OXI88", "warn", 1),
                    finding("NS-FVC50", "high", 5, state="resolved", resolution="condition_cleared")])
    assert alert is not None and alert.active and alert.severity == "warn" and alert.open_rules == ("NS-OXI88",)
    assert alert.rules["NS-FVC50"].state == "resolved"
    alert, sent = run([finding("NS-FVC50", "high", 0), finding("NS-OXI88", "warn", 1),
                       finding("NS-FVC50", "high", 5, state="resolved", resolution="condition_cleared"),
                       finding("NS-OXI88", "warn", 6, state="resolved", resolution="no_longer_applies")])
    assert alert is not None and alert.status == "resolved" and alert.resolution == "no_longer_applies"
    assert [n.change for n in sent] == ["opened"]  # closing sends nothing


def test_no_longer_applies_and_condition_cleared_are_told_apart() -> None:
    cleared, _ = run([finding("NS-FVC50", "high", 0),
                      finding("NS-FVC50", "high", 3, state="resolved", resolution="condition_cleared")])
    started_niv, _ = run([finding("NS-FVC50", "high", 0),
                          finding("NS-FVC50", "high", 3, state="resolved", resolution="no_longer_applies")])
    assert cleared is not None and cleared.resolution == "condition_cleared"
    assert started_niv is not None and started_niv.resolution == "no_longer_applies"


def test_a_finding_after_resolution_opens_a_new_alert_and_a_replay_changes_nothing() -> None:
    first = decide(None, [finding("NS-FVC50", "high", 0)], T0, HORIZON).alert
    closed = decide(first, [finding("NS-FVC50", "high", 3, state="resolved")], T0, HORIZON)
    assert closed.alert is not None and closed.alert.status == "resolved"
    replayed = decide(closed.alert, [finding("NS-FVC50", "high", 0)], T0, HORIZON)
    assert replayed.events == () and replayed.notification is None  # the batch taken again
    assert decide(first, [finding("NS-FVC50", "high", 0)], T0, HORIZON).events == ()
    reopened = decide(closed.alert, [finding("NS-FVC50", "high", 10)], T0 + timedelta(days=10), HORIZON)
    assert reopened.created and reopened.notification is not None and reopened.notification.change == "opened"


def test_backfilled_findings_are_recorded_not_notified() -> None:
    now = T0 + timedelta(days=365)
    alert, sent = run([finding("NS-SLOPE", "warn", 0), finding("NS-FVC50", "high", 30)], now=now)
    assert sent == [] and alert is not None and alert.severity == "high" and alert.notified_severity is None


def test_an_alert_raised_by_backfill_is_announced_once_the_data_reach_the_present() -> None:
    now = T0 + timedelta(days=365)
    alert, _ = run([finding("NS-FVC50", "high", 0)], now=now)
    assert alert is not None
    assert announce(alert, T0 + timedelta(days=100), now, HORIZON).notification is None  # data end long ago
    held = announce(alert, now - timedelta(days=1), now, HORIZON)
    assert held.notification is not None and held.notification.change == "opened" and held.events[0][0] == "announced"
    assert announce(held.alert, now, now, HORIZON).notification is None  # type: ignore[arg-type]


def test_a_recent_finding_on_a_backfilled_alert_is_news() -> None:
    now = T0 + timedelta(days=60)
    _, sent = run([finding("NS-FVC50", "high", 0), finding("NS-OXI88", "warn", 55)], now=now)
    assert [(n.change, n.severity, n.rules) for n in sent] == [("opened", "high", ("NS-FVC50", "NS-OXI88"))]


def test_categories_are_separate_alerts() -> None:
    book = AlertBook(HORIZON)
    book.apply([finding("NS-FVC50", "high", 0), finding("DQ-DEMOG", "warn", 0, category="DATA_QUALITY")], T0)
    assert sorted(book.alerts) == [(P, "DATA_QUALITY"), (P, "NIV_START")]
    assert book.announce(P, T0, T0) == []  # both were notified already


def test_rules_that_open_in_one_evaluation_share_one_notification() -> None:
    book = AlertBook(HORIZON)
    sent = book.apply([finding("NS-FVC50", "high", 0), finding("NS-SNIP40", "high", 0), finding("NS-OXI88", "warn", 0)])
    assert [(n.change, n.severity, n.rules) for n in sent] == [
        ("opened", "high", ("NS-FVC50", "NS-SNIP40", "NS-OXI88"))]


def test_an_alert_handed_from_one_rule_to_another_in_one_evaluation_stays_one_alert() -> None:
    first = decide(None, [finding("NS-OXI88", "warn", 0)], T0, HORIZON).alert
    handed = decide(first, [finding("NS-OXI88", "warn", 3, state="resolved"), finding("NS-T90", "warn", 3)],
                    T0 + timedelta(days=3), HORIZON)
    assert handed.alert is not None and handed.alert.active and not handed.created
    assert handed.alert.open_rules == ("NS-T90",) and handed.notification is None
    assert [action for action, _ in handed.events] == ["updated", "updated"]
