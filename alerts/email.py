"""Alert e-mails: plain text and HTML, with a small table of the values behind the alert."""

import html
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from respmon.core.settings import Settings


def trend_rows(evidence: dict[str, Any], limit: int = 14) -> list[tuple[str, str, str]]:
    """(measure, date, value) rows from the evidence inputs that carry dated points."""
    rows: list[tuple[str, str, str]] = []
    for name, item in (evidence.get("inputs") or {}).items():
        if not isinstance(item, dict):
            continue
        points = item.get("points") or ([{"date": item.get("date"), "value": item.get("value")}]
                                        if item.get("date") is not None else [])
        for point in points[-limit:]:
            value = point.get("value")
            shown = f"{value:.1f}" if isinstance(value, float) else str(value)
            rows.append((name, str(point.get("date", ""))[:10], shown))
    return rows


def _subject(payload: dict[str, Any], escalation: bool) -> str:
    prefix = "[ESCALATION] " if escalation else ""
    return (f"{prefix}[{str(payload['severity']).upper()}] {payload['category']} {payload['rule_id']}"
            f" - patient {payload['patient_id']}")


def build_message(payload: dict[str, Any], to: str, settings: Settings) -> EmailMessage:
    escalation = payload.get("kind") == "escalation"
    rows = trend_rows(payload.get("evidence") or {})
    text = "\n".join([
        _subject(payload, escalation), "",
        f"Recommended action: {payload['recommended_action']}",
        f"Guideline: {payload['citation']}",
        f"Rule {payload['rule_id']} (rules version {payload['rule_version']}), finding at {payload['finding_at']}",
        "", "Values behind this alert:",
        *(f"  {d:<10}  {v:>8}  {m}" for m, d, v in rows),
        "", f"Open the alert: {payload['links']['alert']}", "", str(payload["disclaimer"]),
    ])
    table = "".join(f"<tr><td>{html.escape(d)}</td><td style='text-align:right'>{html.escape(v)}</td>"
                    f"<td>{html.escape(m)}</td></tr>" for m, d, v in rows)
    body = (
        f"<h2>{html.escape(_subject(payload, escalation))}</h2>"
        f"<p><b>Recommended action:</b> {html.escape(str(payload['recommended_action']))}</p>"
        f"<p><b>Guideline:</b> {html.escape(str(payload['citation']))}</p>"
        f"<table border='1' cellpadding='4'><tr><th>date</th><th>value</th><th>measure</th></tr>{table}</table>"
        f"<p><a href='{html.escape(str(payload['links']['alert']))}'>Open the alert</a></p>"
        f"<p><i>{html.escape(str(payload['disclaimer']))}</i></p>"
    )
    message = EmailMessage()
    message["Subject"] = _subject(payload, escalation)
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Message-ID"] = make_msgid(idstring=str(payload["idempotency_key"]), domain="respmon")
    message["X-Respmon-Idempotency-Key"] = str(payload["idempotency_key"])
    message.set_content(text)
    message.add_alternative(f"<html><body>{body}</body></html>", subtype="html")
    return message


def send(message: EmailMessage, settings: Settings) -> None:
    """Blocking SMTP send (the dispatcher runs it in a thread)."""
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.delivery_timeout_s) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)
