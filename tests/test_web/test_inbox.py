"""The inbox (`GET /`) and its alert actions, in-process on the web world's PostgreSQL: the order a nurse
sees, what each member may see and do, the audit of every action, the filters, the empty states."""

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from alerts.careteams import assign
from alerts.sessions import set_password
from alerts.team import add_member
from processors.metrics.trends import DAYS_PER_MONTH, fvc_slope, projected_crossing
from respmon.queries import inbox as queries
from respmon.queries.inbox import reason, theil_sen
from respmon.web.svg import sparkline
from schemas.findings import SEVERITY_ORDER
from tests.test_web.conftest import PASSWORD, WebWorld, csrf_of, logged_in

HTMX = {"HX-Request": "true"}
STALE = "NORTH-STALE"
"""A patient of team north whose only data are 40 days old: spirometry and ALSFRS-R, no nights at all."""


@pytest.fixture(scope="module")
def db(web_world: WebWorld) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(web_world.db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="module", autouse=True)
def stale_patient_and_empty_team(db: psycopg.Connection[Any]) -> None:
    """NORTH-STALE (see STALE) and `nurse-east`, a clinician of a team without patients."""
    at = datetime.combine(date.today() - timedelta(days=40), time(10), tzinfo=UTC)
    assign(db, STALE, "north", "tests")
    db.execute("INSERT INTO spirometry_sessions (patient_id, taken_at, source, posture, fvc_pct_pred)"
               " VALUES (%s, %s, 'clinic', 'sitting', 71.5) ON CONFLICT DO NOTHING", (STALE, at))
    db.execute("INSERT INTO alsfrs_r (patient_id, taken_at, source, items, total) VALUES (%s, %s, 'clinic', %s, 40)"
               " ON CONFLICT DO NOTHING", (STALE, at, [4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 3]))
    add_member(db, "nurse-east", "east", "clinician", "tests")
    set_password(db, "nurse-east", PASSWORD)


def new_alert(db: psycopg.Connection[Any], patient_id: str, rule_id: str = "DQ-PFT6M", severity: str = "warn",
              opened_days_ago: float = 3, category: str = "DATA_QUALITY") -> int:
    """An open alert of its own for one test (one active alert per patient and category: the old one of
    that category is resolved first)."""
    db.execute("UPDATE alerts SET status = 'resolved', resolved_at = now() WHERE patient_id = %s AND category = %s"
               " AND status <> 'resolved'", (patient_id, category))
    opened = datetime.now(UTC) - timedelta(days=opened_days_ago)
    rules = {rule_id: {"severity": severity, "state": "open", "at": opened.isoformat()}}
    row = db.execute(
        "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, status, evidence, action,"
        " citation, finding_at, opened_at, updated_at, rules) VALUES (%s, %s, 'test', %s, %s, 'open', '{}',"
        " 'act', 'cite', %s, %s, %s, %s) RETURNING alert_id",
        (patient_id, rule_id, category, severity, opened, opened, opened, json.dumps(rules))).fetchone()
    assert row is not None
    return int(row["alert_id"])


def alert(db: psycopg.Connection[Any], alert_id: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
    assert row is not None
    return dict(row)


def events(db: psycopg.Connection[Any], alert_id: int) -> list[tuple[str, str, str | None]]:
    rows = db.execute("SELECT actor, action, note FROM alert_events WHERE alert_id = %s AND actor <> 'rules'"
                      " ORDER BY id", (alert_id,)).fetchall()
    return [(r["actor"], r["action"], r["note"]) for r in rows]


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr id="row-([^"]+)"', html)


def post(client: TestClient, path: str, data: dict[str, str], htmx: bool = False) -> Any:
    token = csrf_of(client.get("/").text)
    return client.post(path, data={"csrf": token, **data}, headers=HTMX if htmx else {}, follow_redirects=False)


# --- the order -----------------------------------------------------------------------------------------------

def expected_order(db: psycopg.Connection[Any], team: str) -> list[str]:
    """The inbox order computed independently: alerts from the table, risk with the processors' own
    `fvc_slope` and `projected_crossing` (one patient at a time)."""
    today = datetime.now(UTC).date()
    patients = [r["patient_id"] for r in db.execute(
        "SELECT patient_id FROM patient_teams WHERE team = %s AND ended_at IS NULL", (team,)).fetchall()]
    keyed = []
    for pid in patients:
        alerts = db.execute("SELECT severity, opened_at, snoozed_until FROM alerts WHERE patient_id = %s"
                            " AND status <> 'resolved'", (pid,)).fetchall()
        if alerts:
            lead = min(alerts, key=lambda a: (bool(a["snoozed_until"] and a["snoozed_until"] > today),
                                              -SEVERITY_ORDER[a["severity"]], a["opened_at"]))
            snoozed = bool(lead["snoozed_until"] and lead["snoozed_until"] > today)
            keyed.append(((int(snoozed), -SEVERITY_ORDER[lead["severity"]], lead["opened_at"].timestamp(), 0.0, 0),
                          pid))
            continue
        since = datetime.combine(today, time(), tzinfo=UTC) - timedelta(days=183)
        spiro = db.execute("SELECT taken_at, fvc_pct_pred FROM spirometry_sessions WHERE patient_id = %s AND"
                           " taken_at >= %s AND posture <> 'supine' ORDER BY taken_at DESC LIMIT 30",
                           (pid, since)).fetchall()
        points = [(r["taken_at"], r["fvc_pct_pred"]) for r in spiro]
        slope = fvc_slope(points, window_days=180)
        crossing = projected_crossing(slope, 50.0)
        if spiro and spiro[0]["fvc_pct_pred"] < 50:
            risk: float | None = 0.0
        else:
            risk = None if crossing is None else max(0.0, (crossing - today).days / DAYS_PER_MONTH)
        latest = db.execute("SELECT max(night_date) AS d FROM oximetry_nights WHERE patient_id = %(p)s UNION ALL"
                            " SELECT max(night_date) FROM niv_nights WHERE patient_id = %(p)s UNION ALL"
                            " SELECT max(taken_at)::date FROM alsfrs_r WHERE patient_id = %(p)s", {"p": pid}).fetchall()
        days = [spiro[0]["taken_at"].date() if spiro else None, *(r["d"] for r in latest)]
        last = max([d for d in days if d is not None], default=None)
        stale = -((today - last).days if last else 10**6)
        keyed.append(((2, int(risk is None), 0.0, risk or 0.0, stale), pid))
    return [pid for key, pid in sorted(keyed)]


def test_alerts_come_first_most_severe_then_oldest_then_the_rest_by_risk(nurse: TestClient,
                                                                         db: psycopg.Connection[Any]) -> None:
    made = [new_alert(db, "NORTH-00000", "NS-FVC50", "high", 2, "NIV_START"),
            new_alert(db, "NORTH-00001", "NS-SNIP40", "high", 9, "NIV_START"),
            new_alert(db, "NORTH-00002", "NS-T90", "warn", 20, "NIV_START"),
            new_alert(db, "NORTH-00003", "TD-DEP", "urgent", 1, "TRACH_DISCUSS")]
    try:
        page = nurse.get("/")
        assert page.status_code == 200
        shown = rows_of(page.text)
        assert shown == expected_order(db, "north")
        mine = [pid for pid in shown if pid in {"NORTH-00000", "NORTH-00001", "NORTH-00002", "NORTH-00003"}]
        assert mine == ["NORTH-00003", "NORTH-00001", "NORTH-00000", "NORTH-00002"]
        with_alerts = {r["patient_id"] for r in db.execute(
            "SELECT patient_id FROM alerts WHERE status <> 'resolved' AND patient_id LIKE 'NORTH-%'").fetchall()}
        assert set(shown[:len(with_alerts)]) == with_alerts  # every alerted patient above the others
        risks = [risk_cell(row_html(page.text, pid)) for pid in shown[len(with_alerts):]]
        known = [r for r in risks if r is not None]
        assert known == sorted(known) and risks == known + [None] * (len(risks) - len(known))
        assert len(known) >= 3  # the cohort declines: most patients have a projected crossing
        assert "Theil–Sen" in page.text and "reaches 50 %" in page.text  # the risk rank is explained
    finally:
        db.execute("UPDATE alerts SET status = 'resolved' WHERE alert_id = ANY(%s)", (made,))


def risk_cell(row: str) -> float | None:
    """The row's 'FVC 50 % in (months)' cell: the second numeric cell."""
    text = re.sub(r"<.*?>", " ", re.findall(r'<td class="num">(.*?)</td>', row, re.DOTALL)[1]).split()[0]
    return None if text == "—" else float(text)


def test_a_snoozed_alert_sinks_below_the_unsnoozed_ones_and_a_more_severe_one_rises(
        nurse: TestClient, db: psycopg.Connection[Any]) -> None:
    urgent = new_alert(db, "NORTH-00011", "NE-DESAT", "urgent", 0.5, "NIV_ESCALATE")
    assert rows_of(nurse.get("/").text)[0] == "NORTH-00011"
    snoozed = post(nurse, f"/alerts/{urgent}/snooze", {"until": (date.today() + timedelta(days=7)).isoformat()})
    assert snoozed.status_code == 303
    shown = rows_of(nurse.get("/").text)
    assert shown == expected_order(db, "north")
    alerted = db.execute("SELECT count(DISTINCT patient_id) AS n FROM alerts WHERE status <> 'resolved'"
                         " AND patient_id LIKE 'NORTH-%'").fetchone()
    assert alerted is not None
    if db.execute("SELECT 1 FROM alerts WHERE patient_id = 'NORTH-00011' AND status <> 'resolved'"
                  " AND (snoozed_until IS NULL OR snoozed_until <= current_date)").fetchone() is None:
        assert shown.index("NORTH-00011") == alerted["n"] - 1  # last of the alerted: all its alerts snoozed
    db.execute("UPDATE alerts SET status = 'resolved' WHERE alert_id = %s", (urgent,))


def test_the_vectorised_theil_sen_matches_the_processors_one() -> None:
    rng = np.random.default_rng(3)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    series, expected = [], []
    for n in (0, 1, 2, 3, 5, 12, 26, 30, 30, 30):
        days = np.sort(rng.choice(np.arange(400), size=n, replace=False)).astype(float)
        values = list(rng.normal(70, 8, n))
        points = [(t0 + timedelta(days=float(d)), v) for d, v in zip(days, values, strict=True)]
        series.append(((days + (t0 - datetime(1970, 1, 1, tzinfo=UTC)).days).tolist(), values))
        expected.append(fvc_slope(points, window_days=180))
    shuffled = []
    for x, y in series:  # the rank's statement leaves each patient's points unsorted
        order = rng.permutation(len(x))
        shuffled.append(([x[i] for i in order], [y[i] for i in order]))
    for fits in (theil_sen(series, 180), theil_sen(shuffled, 180)):
        for got, want in zip(fits, expected, strict=True):
            assert (got.slope_per_month is None) == (not want.estimable)
            if want.estimable:
                assert got.slope_per_month == pytest.approx(want.slope_per_month)
                assert got.fit_now == pytest.approx(want.intercept_now)
                assert got.last_date == want.last_date


# --- who sees what --------------------------------------------------------------------------------------------

def test_a_team_sees_only_its_patients_and_the_look_is_logged(web_app: TestClient, nurse: TestClient,
                                                             db: psycopg.Connection[Any]) -> None:
    before = db.execute("SELECT max(id) AS id FROM access_log").fetchone()
    north = nurse.get("/").text
    assert "SOUTH-" not in north and len(rows_of(north)) == 13
    logged = db.execute("SELECT patient_id, action, route FROM access_log WHERE id > %s AND member_id = 'nurse-north'",
                        ((before or {}).get("id") or 0,)).fetchall()
    assert {r["patient_id"] for r in logged} == set(rows_of(north))
    assert {(r["action"], r["route"]) for r in logged} == {("inbox", "GET /")}
    south = logged_in(web_app, "nurse-south").get("/").text
    assert "NORTH-" not in south and all(pid.startswith("SOUTH-") for pid in rows_of(south))
    assert len(rows_of(south)) == 6


def test_a_member_whose_team_has_no_patients_sees_an_empty_inbox(web_app: TestClient) -> None:
    page = logged_in(web_app, "nurse-east").get("/")
    assert page.status_code == 200 and rows_of(page.text) == []
    assert "No patients in your care teams yet" in page.text


def test_an_admin_alone_reads_no_patient(web_app: TestClient) -> None:
    page = logged_in(web_app, "admin-north").get("/")
    assert page.status_code == 200 and rows_of(page.text) == []


def test_a_viewer_sees_the_rows_without_the_actions(web_app: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00004")
    page = logged_in(web_app, "viewer-north").get("/").text
    assert len(rows_of(page)) == 13
    assert "DQ-PFT6M" not in page and "Lung function not measured recently" in page
    assert f"/alerts/{alert_id}/" not in page and "Your role reads only" in page


def test_a_patient_without_data_of_a_kind_shows_dashes(nurse: TestClient) -> None:
    row = row_html(nurse.get("/").text, STALE)
    cells = re.findall(r'<td class="num">(.*?)</td>', row, re.DOTALL)
    fvc, _risk, niv, leak, oxi, alsfrs = (re.sub(r"<.*?>", " ", c).split() for c in cells)
    assert fvc[0] == "71.5" and alsfrs[0] == "40"
    assert niv == ["—"] and leak == ["—"] and oxi[:3] == ["—", "/", "—"]
    assert "40 d ago" in row


def row_html(page: str, patient_id: str) -> str:
    found = re.search(rf'<tr id="row-{re.escape(patient_id)}".*?</tr>', page, re.DOTALL)
    assert found, f"no row of {patient_id}"
    return found.group(0)


# --- filters -------------------------------------------------------------------------------------------------

def test_filters_by_category_severity_team_and_days_without_data(nurse: TestClient, web_app: TestClient,
                                                                 db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00005", "DQ-NOUPLOAD", "warn", 2)
    dq = rows_of(nurse.get("/?category=DATA_QUALITY").text)
    having = {r["patient_id"] for r in db.execute(
        "SELECT patient_id FROM alerts WHERE status <> 'resolved' AND category = 'DATA_QUALITY'"
        " AND patient_id LIKE 'NORTH-%'").fetchall()}
    assert "NORTH-00005" in dq and set(dq) == having
    high = rows_of(nurse.get("/?severity=high").text)
    assert set(high) == {r["patient_id"] for r in db.execute(
        "SELECT patient_id FROM alerts WHERE status <> 'resolved' AND severity = 'high'"
        " AND patient_id LIKE 'NORTH-%'").fetchall()}
    assert rows_of(nurse.get("/?stale=30").text) == [STALE]
    assert len(rows_of(nurse.get("/?team=north").text)) == 13
    assert nurse.get("/?team=south").status_code == 422  # not one of the member's teams
    assert nurse.get("/?severity=dire").status_code == 422
    assert rows_of(nurse.get("/?category=TRACH_DISCUSS&severity=info&stale=30").text) == []
    assert "No patient matches these filters." in nurse.get("/?category=TRACH_DISCUSS&stale=30").text
    db.execute("UPDATE alerts SET status = 'resolved' WHERE alert_id = %s", (alert_id,))


def test_the_filter_form_is_labelled_and_htmx_gets_only_the_table(nurse: TestClient) -> None:
    page = nurse.get("/").text
    for field in ("f-category", "f-severity", "f-team", "f-stale"):
        assert f'<label for="{field}"' in page and f'id="{field}"' in page
    assert 'hx-get="/"' in page and 'hx-select="#inbox-table"' in page and 'method="get"' in page
    part = nurse.get("/?stale=30", headers={**HTMX, "HX-Target": "inbox-table"})
    assert part.status_code == 200 and part.text.startswith('<div id="inbox-table"')
    assert "<html" not in part.text and rows_of(part.text) == [STALE]


def test_pages_of_the_ranking(nurse: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = rows_of(nurse.get("/").text)
    monkeypatch.setattr(queries, "PER_PAGE", 5)
    second = nurse.get("/?page=2").text
    assert rows_of(second) == whole[5:10] and "page 2 of 3" in second
    assert 'href="/?page=3"' in second and 'href="/?page=1"' in second


# --- actions -------------------------------------------------------------------------------------------------

def test_acknowledge_without_javascript_goes_back_to_the_inbox_and_is_audited(
        nurse: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00001")
    answer = post(nurse, f"/alerts/{alert_id}/acknowledge", {"back": "/?category=DATA_QUALITY&page=1"})
    assert answer.status_code == 303 and answer.headers["location"] == "/?category=DATA_QUALITY&page=1"
    row = alert(db, alert_id)
    assert row["status"] == "acknowledged" and row["acknowledged_by"] == "nurse-north"
    assert events(db, alert_id) == [("nurse-north", "acknowledged", "")]
    looks = db.execute("SELECT action, route FROM access_log WHERE alert_id = %s", (alert_id,)).fetchall()
    assert [(r["action"], r["route"]) for r in looks] == [("acknowledge", "POST /alerts/{alert_id}/acknowledge")]
    again = post(nurse, f"/alerts/{alert_id}/acknowledge", {})
    assert again.status_code == 409


def test_acknowledge_with_htmx_answers_the_row(nurse: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00002")
    answer = post(nurse, f"/alerts/{alert_id}/acknowledge", {}, htmx=True)
    assert answer.status_code == 200
    assert answer.text.startswith('<tr id="row-NORTH-00002"') and "<html" not in answer.text
    assert "acknowledged by nurse-north" in answer.text
    assert f"/alerts/{alert_id}/acknowledge" not in answer.text  # no second acknowledge button
    assert alert(db, alert_id)["status"] == "acknowledged"


def test_resolve(nurse: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00003")
    answer = post(nurse, f"/alerts/{alert_id}/resolve", {"note": "spirometry booked"}, htmx=True)
    assert answer.status_code == 200 and f"/alerts/{alert_id}/" not in answer.text
    row = alert(db, alert_id)
    assert row["status"] == "resolved" and row["resolution"] == "team" and row["resolved_at"] is not None
    assert events(db, alert_id) == [("nurse-north", "resolved", "spirometry booked")]
    assert post(nurse, f"/alerts/{alert_id}/resolve", {}).status_code == 409


def test_assign_to_a_member_of_the_patients_teams(nurse: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00004")
    page = nurse.get("/").text
    choices = re.search(rf'id="assign-{alert_id}" name="assignee">(.*?)</select>', page, re.DOTALL)
    assert choices and re.findall(r'<option value="([^"]*)"', choices.group(1)) == ["", "nurse-north"]
    answer = post(nurse, f"/alerts/{alert_id}/assign", {"assignee": "nurse-north"}, htmx=True)
    assert answer.status_code == 200 and "assigned to nurse-north" in answer.text
    assert alert(db, alert_id)["assigned_to"] == "nurse-north"
    refused = post(nurse, f"/alerts/{alert_id}/assign", {"assignee": "nurse-south"})
    assert refused.status_code == 422 and alert(db, alert_id)["assigned_to"] == "nurse-north"
    cleared = post(nurse, f"/alerts/{alert_id}/assign", {"assignee": ""})
    assert cleared.status_code == 303 and alert(db, alert_id)["assigned_to"] is None
    assert events(db, alert_id) == [("nurse-north", "assigned", "to nurse-north"),
                                    ("nurse-north", "assigned", "unassigned")]


def test_snooze_until_a_future_day_at_most_90_days_ahead(nurse: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00006")
    today = datetime.now(UTC).date()
    for until, why in ((today, "a day after today"), (today - timedelta(days=3), "a day after today"),
                       (today + timedelta(days=91), "at most 90 days")):
        refused = post(nurse, f"/alerts/{alert_id}/snooze", {"until": until.isoformat()}, htmx=True)
        assert refused.status_code == 422 and why in refused.text
        assert refused.text.startswith('<tr id="row-NORTH-00006"') and refused.headers["x-inbox-row"] == "1"
    page = nurse.post(f"/alerts/{alert_id}/snooze", headers={"Accept": "text/html"},
                      data={"csrf": csrf_of(nurse.get("/").text), "until": today.isoformat()})
    assert page.status_code == 422 and "Snooze until a day after today" in page.text and "<html" in page.text
    assert alert(db, alert_id)["snoozed_until"] is None and events(db, alert_id) == []
    until = today + timedelta(days=90)
    answer = post(nurse, f"/alerts/{alert_id}/snooze", {"until": until.isoformat()})
    assert answer.status_code == 303 and alert(db, alert_id)["snoozed_until"] == until
    assert events(db, alert_id) == [("nurse-north", "snoozed", f"until {until.isoformat()}")]
    assert f"snoozed until {until.isoformat()}" in row_html(nurse.get("/").text, "NORTH-00006")
    db.execute("UPDATE alerts SET status = 'resolved' WHERE alert_id = %s", (alert_id,))


def test_a_note(nurse: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00007")
    answer = post(nurse, f"/alerts/{alert_id}/note", {"note": "phoned the family"}, htmx=True)
    assert answer.status_code == 200 and answer.text.startswith('<tr id="row-NORTH-00007"')
    assert events(db, alert_id) == [("nurse-north", "note", "phoned the family")]
    assert post(nurse, f"/alerts/{alert_id}/note", {"note": "  "}).status_code == 422
    assert alert(db, alert_id)["status"] == "open"


@pytest.mark.parametrize("verb,data", [("acknowledge", {}), ("resolve", {}), ("assign", {"assignee": "nurse-north"}),
                                       ("snooze", {"until": (date.today() + timedelta(days=5)).isoformat()}),
                                       ("note", {"note": "x"})])
def test_each_action_is_refused_to_a_viewer_another_team_and_without_the_csrf_token(
        verb: str, data: dict[str, str], web_app: TestClient, nurse: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00008")
    before = alert(db, alert_id)
    assert post(logged_in(web_app, "viewer-north"), f"/alerts/{alert_id}/{verb}", data).status_code == 403
    assert post(logged_in(web_app, "nurse-south"), f"/alerts/{alert_id}/{verb}", data).status_code == 404
    assert nurse.post(f"/alerts/{alert_id}/{verb}", data=data, follow_redirects=False).status_code == 403
    assert nurse.post(f"/alerts/{alert_id}/{verb}", data={"csrf": "0" * 64, **data},
                      follow_redirects=False).status_code == 403
    assert alert(db, alert_id) == before and events(db, alert_id) == []
    # a look is recorded once the member may act (alerts.api.refusal): none of these saw the alert's data
    assert db.execute("SELECT count(*) AS n FROM access_log WHERE alert_id = %s", (alert_id,)).fetchone() == {"n": 0}


def test_a_refusal_to_htmx_is_the_row_with_its_message(web_app: TestClient, db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00009")
    viewer = logged_in(web_app, "viewer-north")
    answer = post(viewer, f"/alerts/{alert_id}/acknowledge", {}, htmx=True)
    assert answer.status_code == 403 and answer.headers["x-inbox-row"] == "1"
    assert answer.text.startswith('<tr id="row-NORTH-00009"') and "does not allow" in answer.text
    other = post(logged_in(web_app, "nurse-south"), f"/alerts/{alert_id}/acknowledge", {}, htmx=True)
    assert other.status_code == 404 and "NORTH-00009" not in other.text


# --- the row's pieces ---------------------------------------------------------------------------------------

def test_the_row_names_the_rule_and_draws_the_value_behind_the_alert(nurse: TestClient,
                                                                     db: psycopg.Connection[Any]) -> None:
    alert_id = new_alert(db, "NORTH-00010", "NE-ADH", "urgent", 0.1, "NIV_ESCALATE")
    row = row_html(nurse.get("/").text, "NORTH-00010")
    assert reason("NE-ADH") == "Low NIV adherence" and "Low NIV adherence" in row
    assert "NIV use (h)" in row  # the sparkline of an NIV rule draws the usage
    assert 'href="/patients/NORTH-00010"' in row
    db.execute("UPDATE alerts SET status = 'resolved' WHERE alert_id = %s", (alert_id,))


def test_sparkline_is_an_svg_with_a_name() -> None:
    svg = str(sparkline([50.0, 48.5, None, 47.0], "FVC % predicted"))
    assert svg.startswith('<svg class="spark"') and 'aria-label="FVC % predicted: 3 values, from 50 to 47"' in svg
    assert len(re.search(r'points="([^"]*)"', svg).group(1).split()) == 3  # type: ignore[union-attr]
    assert "style" not in svg  # the CSP allows no inline style
    assert "—" in str(sparkline([], "T90 %")) and "<polyline" not in str(sparkline([3.0], "x"))


def test_kept_rankings_order_as_fresh_ones_and_alerts_stay_live(db: psycopg.Connection[Any]) -> None:
    """What ranks patients without an alert may be reused for a while (`keep_s`); the order is the same as
    read fresh, and an alert raised in between shows at once, at the top."""
    today = date.today()
    fresh = [row.patient_id for row in queries.inbox_page(db, "nurse-north", today, queries.Filters()).rows]
    kept = [row.patient_id for row in queries.inbox_page(db, "nurse-north", today, queries.Filters(),
                                                         keep_s=300).rows]
    assert kept == fresh
    last = fresh[-1]
    raised = new_alert(db, last, "TD-DEP", "urgent", 0.1, "TRACH_DISCUSS")
    try:
        again = queries.inbox_page(db, "nurse-north", today, queries.Filters(), keep_s=300).rows
        assert again[0].patient_id == last and again[0].alerts[0].alert_id == raised
        assert [row.patient_id for row in again] == expected_order(db, "north")
    finally:
        db.execute("UPDATE alerts SET status = 'resolved' WHERE alert_id = %s", (raised,))
    after = [row.patient_id for row in queries.inbox_page(db, "nurse-north", today, queries.Filters(),
                                                          keep_s=300).rows]
    assert after == [row.patient_id for row in queries.inbox_page(db, "nurse-north", today, queries.Filters()).rows]
