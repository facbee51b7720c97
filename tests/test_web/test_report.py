"""The printable report: what the page says (compliance computed here from the stored nights), the PDF that
headless Chromium prints (read back with pypdf), scoping to the member's teams, and refused periods.

The report's patient is in a team of its own (`reportteam`), so the alerts, notes and care state written here
change nothing the inbox's or patient page's tests see."""

import io
import re
import statistics
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from alerts.lifecycle import DISCLAIMER
from alerts.sessions import set_password
from alerts.team import add_member
from processors.rules.loader import load_rules
from respmon.core.settings import Settings
from respmon.testing.cohort import seed
from respmon.web.app import create_app
from respmon.web.pdf import PdfUnavailable, for_file, print_pdf
from respmon.web.printcharts import Chart, Series, svg
from respmon.web.render import STATIC
from respmon.web.report import period_of
from tests.test_web.conftest import PASSWORD, WebWorld, logged_in

TEAM, NURSE = "reportteam", "report-nurse"
ACK_NOTE = "Called the patient: mask leak, refitted"
PATIENT_NOTE = "Discussed NIV at home visit; wife present"


@dataclass(frozen=True)
class ReportWorld:
    patient: str
    start: date
    end: date
    alert_rule: str


def _days_ago(n: int) -> datetime:
    return datetime.combine(datetime.now(UTC).date() - timedelta(days=n), time(9, 0), tzinfo=UTC)


def _alert(conn: psycopg.Connection, patient: str, rule: str, opened: datetime, resolved: datetime,
           events: list[tuple[datetime, str, str, str | None]]) -> None:
    rules = load_rules()
    spec = rules.get(rule)
    row = conn.execute(
        "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, status, resolution, evidence,"
        " action, citation, finding_at, opened_at, updated_at, acknowledged_at, acknowledged_by, resolved_at, rules)"
        " VALUES (%s, %s, %s, %s, 'warn', 'resolved', 'team', '{}', %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING alert_id",
        (patient, rule, rules.version, spec.category, "Check the mask and the settings.", "Test citation", opened,
         opened, resolved, opened + timedelta(hours=3), NURSE, resolved,
         f'{{"{rule}": {{"severity": "warn", "state": "resolved"}}}}')).fetchone()
    assert row is not None
    for at, actor, action, note in events:
        conn.execute("INSERT INTO alert_events (alert_id, at, actor, action, note) VALUES (%s, %s, %s, %s, %s)",
                     (row[0], at, actor, action, note))


@pytest.fixture(scope="module")
def report_world(web_world: WebWorld) -> Iterator[ReportWorld]:
    """RPT-00000 (starts NIV about 200 days before today) in team `reportteam`, with a clinician, an alert
    acknowledged with a note and resolved within the period, one resolved long before it, a patient note and
    a care state."""
    with psycopg.connect(web_world.db_url, autocommit=True) as conn:
        cohort = seed(conn, 1, 400, team=TEAM, prefix="RPT", seed_value=13)
        patient = cohort.patients[0]
        add_member(conn, NURSE, TEAM, "clinician", "tests")
        set_password(conn, NURSE, PASSWORD)
        opened = _days_ago(40)
        _alert(conn, patient, "NE-ADH", opened, _days_ago(30), [
            (opened, "rules", "opened", None), (opened + timedelta(hours=3), NURSE, "acknowledged", ACK_NOTE),
            (_days_ago(30), NURSE, "resolved", "Use back above 4 h")])
        _alert(conn, patient, "NS-T90", _days_ago(390), _days_ago(380), [(_days_ago(390), "rules", "opened", None)])
        conn.execute("INSERT INTO patient_notes (patient_id, at, author, note) VALUES (%s, %s, %s, %s)",
                     (patient, _days_ago(20), NURSE, PATIENT_NOTE))
        conn.execute("INSERT INTO care_states (change_id, patient_id, state, since, note, set_by, set_at)"
                     " VALUES ('rpt-1', %s, 'niv_declined', %s, 'Prefers to wait', %s, %s)",
                     (patient, _days_ago(10).date(), NURSE, _days_ago(10)))
    today = datetime.now(UTC).date()
    yield ReportWorld(patient, today - timedelta(days=150), today - timedelta(days=1), "NE-ADH")


@pytest.fixture(scope="module")
def report_nurse(web_app: TestClient, report_world: ReportWorld) -> TestClient:
    return logged_in(web_app, NURSE)


def _url(world: ReportWorld, suffix: str = "") -> str:
    return f"/patients/{world.patient}/report{suffix}?from={world.start}&to={world.end}"


def _expected_compliance(db_url: str, world: ReportWorld) -> dict[str, str]:
    """The compliance figures from the stored nights, computed here and not by the page's code."""
    with psycopg.connect(db_url) as conn:
        nights: dict[date, float] = dict(conn.execute(
            "SELECT night_date, max(usage_hours) FROM niv_nights WHERE patient_id = %s AND night_date BETWEEN %s"
            " AND %s GROUP BY night_date", (world.patient, world.start, world.end)).fetchall())
        first = conn.execute("SELECT min(night_date) FROM niv_nights WHERE patient_id = %s",
                             (world.patient,)).fetchone()[0]  # type: ignore[index]
    hours = list(nights.values())
    on_therapy = (world.end - max(first, world.start)).days + 1
    good = sum(1 for h in hours if h >= 4)
    assert len(hours) > 30 and 0 < good < len(hours), "the seeded patient should have mixed NIV nights"
    return {"Nights with data": str(len(hours)), "Nights ≥ 4 h": str(good),
            "% of nights with data ≥ 4 h": f"{100 * good / len(hours):.1f} %",
            "% of nights on therapy ≥ 4 h (a night without data counts as under)": f"{100 * good / on_therapy:.1f} %",
            "Median use per night with data": f"{statistics.median(hours):.1f} h"}


def _row_value(html: str, header: str) -> str:
    found = re.search(rf'<th scope="row">{re.escape(header)}</th><td class="num">([^<]*)</td>', html)
    assert found, f"no row {header!r} in the compliance table"
    return found.group(1)


def test_report_page_shows_the_period_compliance_alerts_notes_and_care_state(
        web_world: WebWorld, report_world: ReportWorld, report_nurse: TestClient) -> None:
    answer = report_nurse.get(_url(report_world))
    assert answer.status_code == 200
    html = answer.text
    assert f"Respiratory report: {report_world.patient}" in html
    assert f"{report_world.start} to {report_world.end}" in html
    assert f"<dt>By</dt><dd>{NURSE}</dd>" in html and f"<dd>{load_rules().version}</dd>" in html
    assert DISCLAIMER in html
    for header, value in _expected_compliance(web_world.db_url, report_world).items():
        assert _row_value(html, header) == value, header
    assert "NE-ADH" in html and ACK_NOTE in html and f"by {NURSE} at" in html and "resolved (team)" in html
    assert "NS-T90" not in html.split("Alerts in the period")[1]  # resolved long before the period
    assert PATIENT_NOTE in html and "niv declined" in html and "Prefers to wait" in html
    assert html.count('<svg class="print-chart"') == 5  # VC, T90, ODI, NIV use, ALSFRS-R
    assert 'href="/report/print.css"' in html


def test_report_page_keeps_to_the_csp_and_is_readable_without_scripts(report_world: ReportWorld,
                                                                      report_nurse: TestClient) -> None:
    html = report_nurse.get(_url(report_world)).text
    assert "<script" not in html and "<style" not in html and " style=" not in html
    assert 'Slope per month' in html and re.search(r"[−+]\d+\.\d\d</td>", html), "slopes are in a table"
    sheet = report_nurse.get("/report/print.css")
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")
    assert "@bottom-left" in sheet.text and "counter(pages)" in sheet.text
    assert DISCLAIMER.split(":")[0] in sheet.text


def test_reading_the_report_is_in_the_access_log(web_world: WebWorld, report_world: ReportWorld,
                                                 report_nurse: TestClient) -> None:
    report_nurse.get(_url(report_world))
    with psycopg.connect(web_world.db_url) as conn:
        looked = conn.execute("SELECT count(*) FROM access_log WHERE member_id = %s AND patient_id = %s"
                              " AND action = 'report'", (NURSE, report_world.patient)).fetchone()
    assert looked is not None and looked[0] >= 1


def _text(reader: PdfReader) -> list[str]:
    """Each page's text, whitespace collapsed and ligatures (ﬁ) unfolded."""
    return [" ".join(unicodedata.normalize("NFKC", page.extract_text() or "").split()) for page in reader.pages]


def test_the_pdf_holds_the_patient_period_disclaimer_on_every_page_and_the_alert(
        report_world: ReportWorld, report_nurse: TestClient) -> None:
    answer = report_nurse.get(_url(report_world, ".pdf"))
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="respmon-report-{report_world.patient}-{report_world.start}-{report_world.end}.pdf"')
    assert answer.content.startswith(b"%PDF")
    pages = _text(PdfReader(io.BytesIO(answer.content)))
    assert len(pages) >= 1
    whole = " ".join(pages)
    assert report_world.patient in whole and f"{report_world.start} to {report_world.end}" in whole
    assert report_world.alert_rule in whole and ACK_NOTE in whole
    disclaimer = " ".join(DISCLAIMER.split())
    assert all(disclaimer in page for page in pages), "the disclaimer is at the foot of every page"
    assert all(f"of {len(pages)}" in page for page in pages)


def test_another_teams_member_gets_404_for_page_and_pdf(report_world: ReportWorld, web_app: TestClient) -> None:
    south = logged_in(web_app, "nurse-south")
    for suffix in ("", ".pdf"):
        answer = south.get(_url(report_world, suffix), headers={"accept": "text/html"})
        assert answer.status_code == 404
        assert report_world.patient not in answer.text
    assert south.get("/patients/NOBODY-1/report").status_code == 404


def test_a_report_needs_a_session(report_world: ReportWorld, web_app: TestClient) -> None:
    answer = TestClient(web_app.app).get(_url(report_world, ".pdf"), follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(("start", "end", "says"), [
    ("2025-03-01", "2025-02-01", "must start on or before its end"),
    ("2019-01-01", "2024-01-02", "at most 5 years"),
    ("2025-02-30", "2025-03-01", "must be a date written YYYY-MM-DD"),
    ("yesterday", "2025-03-01", "must be a date written YYYY-MM-DD"),
])
def test_a_bad_period_is_refused_with_422_and_says_why(report_world: ReportWorld, report_nurse: TestClient,
                                                        start: str, end: str, says: str) -> None:
    for suffix in ("", ".pdf"):
        answer = report_nurse.get(f"/patients/{report_world.patient}/report{suffix}?from={start}&to={end}",
                                  headers={"accept": "text/html"})
        assert answer.status_code == 422
        assert says in answer.text and "<h1>" in answer.text  # the error page, not a traceback


def test_five_years_exactly_is_allowed_and_the_default_is_six_months() -> None:
    today = date(2026, 3, 1)
    assert period_of("2019-01-01", "2024-01-01", today).days == 1827
    assert period_of("2020-02-29", "2025-02-28", today).end == date(2025, 2, 28)
    default = period_of(None, None, today)
    assert default.end == today and default.days == 182


def test_a_period_without_data_says_so(report_world: ReportWorld, report_nurse: TestClient) -> None:
    html = report_nurse.get(f"/patients/{report_world.patient}/report?from=2010-01-01&to=2010-06-30").text
    for empty in ("No spirometry in this period.", "Not on NIV in this period", "No alert was active in this period.",
                  "No note was written in this period.", "No valid oximetry night in this period."):
        assert empty in html
    assert "not estimable" in html and '<svg class="print-chart"' not in html


def test_without_chromium_the_pdf_answers_503_saying_so(web_world: WebWorld, report_world: ReportWorld,
                                                        tmp_path: Path) -> None:
    settings = Settings(database_url=web_world.db_url, chromium_path=tmp_path / "no-chromium")
    with TestClient(create_app(settings)) as app:
        client = logged_in(app, NURSE)
        answer = client.get(_url(report_world, ".pdf"), headers={"accept": "text/html"})
    assert answer.status_code == 503
    assert "Chromium is not installed" in answer.text and "Traceback" not in answer.text


def test_chart_labels_are_escaped() -> None:
    chart = Chart("<b>T90</b>", "% & more", date(2025, 1, 1), date(2025, 3, 1),
                  [Series('"quoted" <label>', [(date(2025, 1, 2), 1.0), (date(2025, 2, 2), None)])])
    drawn = str(svg(chart))
    assert "<b>" not in drawn and "&lt;b&gt;T90&lt;/b&gt;" in drawn and "&lt;label&gt;" in drawn
    assert drawn.startswith("<svg") and drawn.endswith("</svg>")


def _fake_chromium(folder: Path, body: str) -> Path:
    script = folder / "chromium"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_a_print_that_hangs_is_stopped_and_one_that_fails_is_reported(tmp_path: Path) -> None:
    hangs = Settings(chromium_path=_fake_chromium(tmp_path, "sleep 60"), pdf_timeout_s=1)
    with pytest.raises(PdfUnavailable, match="longer than 1 s"):
        print_pdf("<p>x</p>", hangs)
    fails = Settings(chromium_path=_fake_chromium(tmp_path, "exit 3"))
    with pytest.raises(PdfUnavailable, match="exit code 3"):
        print_pdf("<p>x</p>", fails)


def test_the_printed_file_reads_its_stylesheets_from_disk() -> None:
    page = for_file('<link rel="stylesheet" href="/static/app.css"><a href="/patients/P">P</a>')
    assert f'href="{STATIC.as_uri()}/app.css"' in page and 'href="/patients/P"' in page
