"""The team's web view in Debian's Chromium, as a member of the respiratory team uses it: log in, read the
inbox in its order, acknowledge an alert, open a patient and a night, download the PDF report, log out;
and a member of another team cannot reach the patient by its address."""

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pypdf import PdfReader
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from alerts.lifecycle import DISCLAIMER
from schemas.findings import SEVERITIES
from tests.browser.conftest import PASSWORD, Browser, Site

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def test_login_through_the_form_lands_on_the_inbox(browser: Browser) -> None:
    browser.open("/")
    assert browser.path == "/login?next=%2F"
    browser.shot("login")
    browser.login("nurse-north")
    assert browser.path == "/"
    assert "nurse-north" in browser.find("header.top .who").text
    assert browser.find(".disclaimer").text == DISCLAIMER


def test_a_wrong_password_stays_on_the_form_with_a_message(browser: Browser) -> None:
    browser.open("/login")
    browser.fill("Member id", "nurse-north")
    browser.fill("Password", "not the password")
    browser.find("form.login button[type=submit]").click()
    browser.wait(lambda d: d.find_elements("css selector", "p.error"), "the login error")
    assert browser.find("p.error").text == "Unknown member or wrong password."
    assert browser.path.startswith("/login") and not browser.driver.get_cookies()


def tab_to(browser: Browser, css: str, most: int = 40) -> None:
    """Press Tab until the element matching `css` has the keyboard focus (fails after `most` presses)."""
    for _ in range(most):
        if browser.driver.execute_script("return document.activeElement.matches(arguments[0]);", css):
            return
        ActionChains(browser.driver).send_keys(Keys.TAB).perform()
    raise AssertionError(f"{css} is not reachable with Tab")


def test_the_keyboard_alone_logs_in_and_opens_a_patient_from_the_inbox(browser: Browser, site: Site) -> None:
    browser.open("/")
    tab_to(browser, "#member_id")
    ActionChains(browser.driver).send_keys("nurse-north", Keys.TAB, PASSWORD, Keys.ENTER).perform()
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "form.logout"), "the inbox after login")
    assert browser.heading() == "Inbox"
    first = inbox_rows(browser)[0]
    tab_to(browser, f"#row-{first} th a")
    ActionChains(browser.driver).send_keys(Keys.ENTER).perform()
    browser.wait(lambda d: d.current_url.endswith(f"/patients/{first}"), "the patient page")
    assert browser.heading() == f"Patient {first}"


def test_a_member_of_another_team_cannot_reach_the_patient_by_its_address(browser: Browser, site: Site) -> None:
    patient = site.north.patients[0]
    browser.login("nurse-south")
    browser.open(f"/patients/{patient}")
    assert browser.heading() == "Not available"
    assert "not found" in browser.find("p.error").text
    assert patient not in browser.driver.page_source.replace(f"/patients/{patient}", "")
    assert browser.status(f"/patients/{patient}") == 404
    browser.shot("patient-of-another-team")
    assert browser.status(f"/patients/{site.south.patients[0]}") == 200  # the member's own patient is there


def test_logout_ends_the_session_and_pages_send_to_the_login_form(browser: Browser, site: Site) -> None:
    browser.login("viewer-north")
    session = browser.driver.get_cookies()
    assert browser.status("/") == 200
    browser.find("form.logout button[type=submit]").click()
    browser.wait(lambda d: "/login" in d.current_url, "the login form after logout")
    assert browser.path == "/login" and not browser.driver.get_cookies()
    for cookie in session:  # the old cookie, put back, no longer opens a page: the session ended on the server
        browser.driver.add_cookie({"name": cookie["name"], "value": cookie["value"], "path": "/"})
    assert browser.status("/") == 303
    browser.driver.delete_all_cookies()
    patient = site.north.patients[0]
    browser.open(f"/patients/{patient}")
    assert browser.path == f"/login?next=%2Fpatients%2F{patient}"
    assert browser.find("form.login")


# --------------------------------------------------------------------------- the inbox
SEVERITY_RANK: dict[str, int] = {severity: rank for rank, severity in enumerate(SEVERITIES)}


def inbox_rows(browser: Browser) -> list[str]:
    """The patients of the inbox table, top to bottom."""
    return [str(row.get_attribute("id")).removeprefix("row-") for row in browser.all("table.inbox-table tbody tr[id]")]


def alerted_in_order(db: psycopg.Connection[Any], team: str) -> list[str]:
    """The team's patients with an active, un-snoozed alert, as the inbox must list them: by their most severe
    alert, then the oldest of that severity first."""
    rows = db.execute(
        "SELECT a.patient_id, a.severity, a.opened_at FROM alerts a JOIN patient_teams pt"
        " ON pt.patient_id = a.patient_id AND pt.ended_at IS NULL WHERE pt.team = %s AND a.status <> 'resolved'"
        " AND (a.snoozed_until IS NULL OR a.snoozed_until <= (now() AT TIME ZONE 'UTC')::date)", (team,)).fetchall()
    lead: dict[str, tuple[int, datetime]] = {}
    for patient, severity, opened_at in rows:
        key = (-SEVERITY_RANK[severity], opened_at)
        lead[patient] = min(lead.get(patient, key), key)
    return sorted(lead, key=lambda patient: (*lead[patient], patient))


def test_the_inbox_lists_the_teams_patients_most_severe_alert_first_then_oldest(
        browser: Browser, site: Site, db: psycopg.Connection[Any]) -> None:
    browser.login("nurse-north")
    assert browser.heading() == "Inbox"
    shown = inbox_rows(browser)
    alerted = alerted_in_order(db, "north")
    assert len(alerted) >= 4 and len({SEVERITY_RANK[a.severity] for a in site.north.alerts}) >= 2
    assert shown[:len(alerted)] == alerted
    assert sorted(shown[len(alerted):]) == sorted(set(site.north.patients) - set(alerted))
    for patient in alerted:
        alert = next(a for a in site.north.alerts if a.patient_id == patient)
        row = browser.find(f"#row-{patient}")
        assert row.find_element(By.CSS_SELECTOR, ".sev").get_attribute("textContent") == alert.severity
        assert row.find_element(By.CSS_SELECTOR, ".category").text == alert.category
    assert "SOUTH-" not in browser.find("table.inbox-table").text
    browser.shot("inbox", readme=True)


def test_acknowledge_from_the_inbox_changes_the_row_in_place_and_the_database(
        browser: Browser, site: Site, db: psycopg.Connection[Any]) -> None:
    open_alerts = db.execute("SELECT patient_id, alert_id FROM alerts WHERE status = 'open' AND patient_id = ANY(%s)",
                             (site.north.patients,)).fetchall()
    patient, alert_id = dict(open_alerts).popitem() if open_alerts else ("", 0)
    assert patient, "no open alert left in the north team"
    browser.login("nurse-north")
    browser.driver.execute_script("window.respmonSamePage = true;")  # gone if the whole page reloads
    row = browser.find(f"#row-{patient}")
    row.find_element(By.XPATH, ".//button[normalize-space()='Acknowledge']").click()
    browser.wait(lambda d: "acknowledged by nurse-north" in d.find_element(By.ID, f"row-{patient}").text,
                 "the row to show the acknowledgement")
    assert not browser.find(f"#row-{patient}").find_elements(By.XPATH, ".//button[normalize-space()='Acknowledge']")
    assert browser.driver.execute_script("return window.respmonSamePage === true;") and browser.path == "/"
    status, by = db.execute("SELECT status, acknowledged_by FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone() \
        or ("", "")
    assert (status, by) == ("acknowledged", "nurse-north")
    assert db.execute("SELECT count(*) FROM alert_events WHERE alert_id = %s AND action = 'acknowledged'"
                      " AND actor = 'nurse-north'", (alert_id,)).fetchone() == (1,)
    browser.shot("inbox-acknowledged")
    browser.open("/")
    assert "acknowledged by nurse-north" in browser.find(f"#row-{patient}").text


def test_a_viewer_reads_the_inbox_without_action_buttons(browser: Browser, site: Site,
                                                          db: psycopg.Connection[Any]) -> None:
    browser.login("viewer-north")
    assert inbox_rows(browser)[:len(alerted_in_order(db, "north"))] == alerted_in_order(db, "north")
    assert not browser.all("table.inbox-table button")
    assert "Your role reads only" in browser.find("table.inbox-table").text


def test_the_report_downloads_as_a_pdf_with_the_patients_period_and_alert(browser: Browser, site: Site,
                                                                         db: psycopg.Connection[Any]) -> None:
    patient, rule_id = on_niv_with_an_alert(db, site.north.patients)
    browser.login("nurse-north")
    browser.open(f"/patients/{patient}/report")
    assert browser.heading() == f"Respiratory report: {patient}"
    browser.shot("report")
    start, end = (browser.find(f"input[name={name}]").get_attribute("value") for name in ("from", "to"))
    for old in browser.output.glob("downloads/*"):
        old.unlink()
    link = browser.driver.find_element(By.LINK_TEXT, "Download PDF")
    link.click()
    pdf = browser.wait(lambda d: downloaded(browser.output / "downloads"), "the PDF download", timeout_s=90)
    assert pdf.name == f"respmon-report-{patient}-{start}-{end}.pdf"
    pages = [page.extract_text() for page in PdfReader(pdf).pages]
    text = " ".join(" ".join(pages).split())
    assert 2 <= len(pages) <= 12 and all(page.strip() for page in pages)
    assert f"Respiratory report: {patient}" in pages[0] and f"{start} to {end}" in text
    nights, compliant = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE usage_hours >= 4) FROM niv_nights"
        " WHERE patient_id = %s AND night_date BETWEEN %s AND %s", (patient, start, end)).fetchone() or (0, 0)
    assert nights > 0
    assert f"Nights with data {nights}" in text and f"Nights ≥ 4 h {compliant}" in text
    assert "Alerts in the period and their outcome" in text and rule_id in text
    assert " ".join(DISCLAIMER.split()) in text


def on_niv_with_an_alert(db: psycopg.Connection[Any], patients: list[str]) -> tuple[str, str]:
    """A patient of the list with an active alert and NIV nights in the last six months, and its rule."""
    row = db.execute(
        "SELECT a.patient_id, a.rule_id FROM alerts a WHERE a.patient_id = ANY(%s) AND a.status <> 'resolved'"
        " AND EXISTS (SELECT 1 FROM niv_nights n WHERE n.patient_id = a.patient_id"
        "             AND n.night_date > current_date - 150)"
        " ORDER BY a.patient_id LIMIT 1", (patients,)).fetchone()
    assert row is not None, "the seeded cohort has no patient on NIV with an alert"
    return str(row[0]), str(row[1])


def downloaded(folder: Path) -> Path | None:
    """The finished download in the folder (Chromium writes `*.crdownload` until it is complete)."""
    done = [p for p in folder.iterdir() if not p.name.endswith(".crdownload") and p.stat().st_size > 0]
    partial = [p for p in folder.iterdir() if p.name.endswith(".crdownload")]
    return done[0] if len(done) == 1 and not partial else None


# --------------------------------------------------------------------------- the patient page and a night
CHART_POINTS = {  # chart id -> SQL counting the points its x axis should have for one patient and range
    "vc": "SELECT count(*) FROM spirometry_sessions WHERE patient_id = %(p)s AND taken_at >= %(lo)s"
          " AND taken_at < %(hi)s AND (fvc_pct_pred IS NOT NULL OR svc_l IS NOT NULL)",
    "pressures": "SELECT count(*) FROM spirometry_sessions WHERE patient_id = %(p)s AND taken_at >= %(lo)s"
                 " AND taken_at < %(hi)s AND coalesce(mip_cmh2o, snip_cmh2o, mep_cmh2o) IS NOT NULL",
    "pcf": "SELECT count(*) FROM spirometry_sessions WHERE patient_id = %(p)s AND taken_at >= %(lo)s"
           " AND taken_at < %(hi)s AND pcf_lpm IS NOT NULL",
    "niv_use": "SELECT count(DISTINCT night_date) FROM niv_nights WHERE patient_id = %(p)s"
               " AND night_date BETWEEN %(start)s AND %(end)s AND usage_hours IS NOT NULL",
    "niv_leak": "SELECT count(DISTINCT night_date) FROM niv_nights WHERE patient_id = %(p)s"
                " AND night_date BETWEEN %(start)s AND %(end)s AND coalesce(leak_p95_lpm, ahi) IS NOT NULL",
    "niv_vent": "SELECT count(DISTINCT night_date) FROM niv_nights WHERE patient_id = %(p)s AND night_date BETWEEN"
                " %(start)s AND %(end)s AND coalesce(resp_rate, minute_vent_lpm, tidal_volume_ml) IS NOT NULL",
    "oximetry": "SELECT count(DISTINCT night_date) FROM oximetry_nights WHERE patient_id = %(p)s AND night_date"
                " BETWEEN %(start)s AND %(end)s AND coalesce(t90_pct, t88_pct, odi3, min_spo2) IS NOT NULL",
    "co2": "SELECT (SELECT count(*) FROM blood_gases WHERE patient_id = %(p)s AND taken_at >= %(lo)s"
           " AND taken_at < %(hi)s) + (SELECT count(*) FROM capnography_nights WHERE patient_id = %(p)s"
           " AND night_date BETWEEN %(start)s AND %(end)s)",
    "alsfrs": "SELECT count(*) FROM alsfrs_r WHERE patient_id = %(p)s AND taken_at >= %(lo)s AND taken_at < %(hi)s",
}
DRAWN = """return (window.respmonCharts || []).map(function (p) {
  return [p.root.parentNode.getAttribute('data-chart'), p.data[0].length,
          p.series.slice(1).map(function (s, i) {
            return [s.label, p.data[i + 1].filter(function (v) { return v != null; }).length]; })]; });"""


def expected_points(db: psycopg.Connection[Any], patient: str, start: date, end: date) -> dict[str, int]:
    """Points per chart by the database, for the charts that have any."""
    span = {"p": patient, "start": start, "end": end, "lo": datetime.combine(start, time(0), tzinfo=UTC),
            "hi": datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC)}
    counts = {chart: int((db.execute(sql, span).fetchone() or (0,))[0]) for chart, sql in CHART_POINTS.items()}
    return {chart: n for chart, n in counts.items() if n}


def open_patient(browser: Browser, patient: str, navigate: bool = True) -> tuple[date, date]:
    """The patient page with its charts drawn (opened by its address unless already on the way); returns its
    date range."""
    if navigate:
        browser.open(f"/patients/{patient}")
    browser.wait(lambda d: d.find_element(By.CSS_SELECTOR, "main h1").text == f"Patient {patient}",
                 f"the page of {patient}")
    browser.wait(lambda d: all(p.get_attribute("data-drawn") for p in browser.all(".plot[data-chart]")),
                 "every chart to be drawn")
    start, end = (browser.find(f"form.range input[name={name}]").get_attribute("value") for name in ("from", "to"))
    return date.fromisoformat(str(start)), date.fromisoformat(str(end))


def test_the_patient_page_draws_each_chart_with_the_right_number_of_points(
        browser: Browser, site: Site, db: psycopg.Connection[Any]) -> None:
    patient, _ = on_niv_with_an_alert(db, site.north.patients)
    browser.login("nurse-north")
    browser.find(f"#row-{patient} th a").click()  # from the inbox
    start, end = open_patient(browser, patient, navigate=False)
    expected = expected_points(db, patient, start, end)
    assert {"vc", "pressures", "niv_use", "oximetry", "alsfrs"} <= set(expected)  # what the cohort seeds
    drawn = {chart: n for chart, n, _ in browser.driver.execute_script(DRAWN)}
    assert drawn == expected
    for plot in browser.all(".plot[data-chart]"):
        assert int(str(plot.get_attribute("data-drawn"))) == expected[str(plot.get_attribute("data-chart"))]
        canvas = plot.find_element(By.TAG_NAME, "canvas")
        assert canvas.size["width"] > 300 and canvas.size["height"] > 100
    for chart in set(CHART_POINTS) - set(expected):  # nothing of that kind: said in words, no empty chart
        assert browser.find(f"#chart-{chart} .empty").text.startswith("No ")
    series = {chart: dict(values) for chart, _, values in browser.driver.execute_script(DRAWN)}
    sitting, supine = db.execute(
        "SELECT count(*) FILTER (WHERE posture <> 'supine'), count(*) FILTER (WHERE posture = 'supine')"
        " FROM spirometry_sessions WHERE patient_id = %s AND taken_at >= %s AND taken_at < %s",
        (patient, start, end + timedelta(days=1))).fetchone() or (0, 0)
    assert series["vc"]["FVC sitting"] == sitting and series["vc"]["FVC supine"] == supine
    browser.shot("patient", readme=True)


def test_a_drag_on_one_chart_zooms_every_chart(browser: Browser, site: Site, db: psycopg.Connection[Any]) -> None:
    patient, _ = on_niv_with_an_alert(db, site.north.patients)
    browser.login("nurse-north")
    open_patient(browser, patient)
    scales = "return window.respmonCharts.map(function (p) { return [p.scales.x.min, p.scales.x.max]; });"
    before = browser.driver.execute_script(scales)
    over = browser.find(".plot[data-chart=vc] .u-over")
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", over)
    width = over.size["width"]
    ActionChains(browser.driver).move_to_element_with_offset(over, -width // 4, 0).click_and_hold() \
        .move_by_offset(width // 8, 0).move_by_offset(width // 8, 0).release().perform()

    def zoomed(driver: Any) -> list[list[float]] | None:
        now: list[list[float]] = driver.execute_script(scales)
        return now if now[0] != before[0] else None

    after = browser.wait(zoomed, "the charts to zoom")
    assert len({tuple(x) for x in after}) == 1, after  # one shared axis
    (lo, hi), (old_lo, old_hi) = after[0], before[0]
    assert old_lo < lo < hi < old_hi and (hi - lo) < (old_hi - old_lo) / 2


def test_an_alert_marker_on_a_chart_opens_its_evidence_citation_and_action(
        browser: Browser, site: Site, db: psycopg.Connection[Any]) -> None:
    patient, rule_id = on_niv_with_an_alert(db, site.north.patients)
    alert_id, action, citation = db.execute(
        "SELECT alert_id, action, citation FROM alerts WHERE patient_id = %s AND rule_id = %s"
        " AND status <> 'resolved'", (patient, rule_id)).fetchone() or (0, "", "")
    browser.login("nurse-north")
    open_patient(browser, patient)
    details = browser.find(f"details#alert-{alert_id}")
    assert details.get_attribute("open") is None and not browser.find(f"#alert-{alert_id} .action").is_displayed()
    chart = browser.find(f"a.marker[data-alert='{alert_id}']").find_element(By.XPATH, "ancestor::section")
    plot = chart.find_element(By.CSS_SELECTOR, ".plot")
    left = browser.driver.execute_script(
        "var el = arguments[0], id = arguments[1], p = window.respmonCharts.find(function (c) {"
        " return c.root.parentNode === el; });"
        " var m = JSON.parse(document.getElementById('chart-data').textContent).charts"
        "   .find(function (c) { return c.id === el.getAttribute('data-chart'); }).markers"
        "   .find(function (m) { return m.id === id; });"
        " return p.valToPos(m.x, 'x');", plot, alert_id)
    over = plot.find_element(By.CSS_SELECTOR, ".u-over")
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", over)
    ActionChains(browser.driver).move_to_element_with_offset(over, round(left - over.size["width"] / 2), 0) \
        .click().perform()
    browser.wait(lambda d: details.get_attribute("open") is not None, "the alert's details to open")
    assert browser.path.endswith(f"#alert-{alert_id}")
    assert browser.find(f"#alert-{alert_id} .action").text == action
    assert browser.find(f"#alert-{alert_id} .citation").text == citation
    assert rule_id in browser.find(f"#alert-{alert_id} .evidence").text


def test_a_night_opens_from_the_patient_page_with_its_minutes_and_full_resolution_on_zoom(
        browser: Browser, site: Site, db: psycopg.Connection[Any]) -> None:
    patient, _ = on_niv_with_an_alert(db, site.north.patients)
    browser.login("nurse-north")
    open_patient(browser, patient)
    link = browser.find("#nights tbody tr:first-child a")
    night = link.text
    link.click()
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#niv"), "the night view")
    assert browser.heading() == f"Night of {night} · Patient {patient}"
    plot = browser.find(".plot[data-night]")
    browser.wait(lambda d: plot.get_attribute("data-drawn"), "the night's chart")
    minutes, interval_s = db.execute(
        "SELECT array_length(s.spo2_mean_1m, 1), s.interval_s FROM oximetry_signals s JOIN oximetry_nights n"
        " USING (patient_id, start_at, source) WHERE n.patient_id = %s AND n.night_date = %s",
        (patient, night)).fetchone() or (0, 0)
    assert minutes > 300 and int(str(plot.get_attribute("data-drawn"))) == minutes
    events = int(browser.find(".event-count").text)
    assert len(browser.all("details.events tr.event")) == events
    usage = db.execute("SELECT usage_hours FROM niv_nights WHERE patient_id = %s AND night_date = %s",
                       (patient, night)).fetchone()
    niv = browser.find("#niv").text
    assert usage is not None and f"Use {float(usage[0]):.1f} h" in niv
    browser.shot("night")
    # zoom to ten minutes: the raw samples replace the per-minute means, one point per interval_s
    browser.driver.execute_script(
        "var p = window.respmonCharts[0], x = p.data[0]; p.setScale('x', {min: x[100], max: x[110]});")
    raw = int(browser.wait(lambda d: plot.get_attribute("data-raw"), "the full-resolution samples"))
    xs = browser.driver.execute_script("return Array.from(window.respmonCharts[0].data[0]);")
    assert len(xs) == raw > 10 * 60 / float(interval_s)
    assert abs((xs[-1] - xs[0]) / (raw - 1) - float(interval_s)) < 0.01
    browser.shot("night-zoomed")
