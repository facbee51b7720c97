"""The patient page on a real PostgreSQL: every chart's data block holds the points the database holds, the
rules file's thresholds, the alerts as markers with their evidence; scoping, empty states, the notes and
care-state forms (CSRF, roles, audit), and the page's weight for two years of nightly data."""

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.sessions import set_password
from alerts.team import add_member
from processors.rules.loader import load_rules
from respmon.core.settings import Settings
from respmon.testing.cohort import Cohort, seed
from respmon.web.app import create_app
from tests.conftest import namespace
from tests.test_web.conftest import PASSWORD, WebWorld, csrf_of, logged_in

HTML = {"accept": "text/html"}


def chart_data(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.DOTALL)
    assert found, "no chart data block"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def charts_of(page: str) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in chart_data(page)["charts"]}


def values(chart: dict[str, Any], label: str) -> list[Any]:
    return next(s["values"] for s in chart["series"] if s["label"] == label)


def count(url: str, sql: str, *args: Any) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, args).fetchone()
        assert row is not None
        return int(row[0])


def north_patient_on_niv(world: WebWorld) -> str:
    with psycopg.connect(world.db_url) as conn:
        row = conn.execute("SELECT patient_id FROM niv_nights WHERE patient_id LIKE 'NORTH-%%' GROUP BY 1"
                           " ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()
    assert row is not None, "the cohort has a north patient on NIV"
    return str(row[0])


def north_patient_without_niv(world: WebWorld) -> str:
    with psycopg.connect(world.db_url) as conn:
        row = conn.execute("SELECT p FROM unnest(%s::text[]) AS p WHERE NOT EXISTS"
                           " (SELECT 1 FROM niv_nights WHERE patient_id = p) ORDER BY 1 LIMIT 1",
                           (world.north.patients,)).fetchone()
    assert row is not None, "the cohort has a north patient not on NIV"
    return str(row[0])


def test_each_chart_holds_the_points_of_the_database(nurse: TestClient, web_world: WebWorld) -> None:
    pid = north_patient_on_niv(web_world)
    answer = nurse.get(f"/patients/{pid}")
    assert answer.status_code == 200
    charts = charts_of(answer.text)
    url = web_world.db_url
    assert len(charts["vc"]["x"]) == count(url, "SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s"
                                                " AND (fvc_pct_pred IS NOT NULL OR svc_l IS NOT NULL)", pid)
    sitting = [v for v in values(charts["vc"], "FVC sitting") if v is not None]
    supine = [v for v in values(charts["vc"], "FVC supine") if v is not None]
    assert len(sitting) == count(url, "SELECT count(fvc_pct_pred) FROM spirometry_sessions WHERE patient_id = %s"
                                      " AND posture = 'sitting'", pid)
    assert len(supine) == count(url, "SELECT count(fvc_pct_pred) FROM spirometry_sessions WHERE patient_id = %s"
                                     " AND posture = 'supine'", pid) > 0
    assert len(charts["vc"]["grades"]) == len(charts["vc"]["x"])
    assert len(charts["pressures"]["x"]) == count(
        url, "SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s"
             " AND coalesce(mip_cmh2o, snip_cmh2o, mep_cmh2o) IS NOT NULL", pid)
    shown_from = re.search(r'name="from" value="(\d{4}-\d{2}-\d{2})"', answer.text)
    assert shown_from  # the page's period (other tests add nights of 2001 to some patients, outside it)
    nights = count(url, "SELECT count(DISTINCT night_date) FROM niv_nights WHERE patient_id = %s"
                        f" AND night_date >= '{shown_from.group(1)}'", pid)
    assert len(charts["niv_use"]["x"]) == nights > 0 and charts["niv_use"]["bars"] is True
    assert len([v for v in values(charts["niv_leak"], "AHI") if v is not None]) == nights
    assert len(charts["oximetry"]["x"]) == count(
        url, "SELECT count(DISTINCT night_date) FROM oximetry_nights WHERE patient_id = %s"
             f" AND night_date >= '{shown_from.group(1)}'", pid)
    assert len(charts["alsfrs"]["x"]) == count(url, "SELECT count(*) FROM alsfrs_r WHERE patient_id = %s", pid)
    assert {s["label"] for s in charts["alsfrs"]["series"]} == {"Total", "Bulbar (1-3)", "Respiratory (10-12)"}
    assert "co2" not in charts  # none recorded: no chart, a line instead
    assert "No CO2 values recorded in this period." in answer.text


def test_latest_value_tables_read_without_javascript(nurse: TestClient, web_world: WebWorld) -> None:
    pid = north_patient_on_niv(web_world)
    page = nurse.get(f"/patients/{pid}").text
    with psycopg.connect(web_world.db_url) as conn:
        row = conn.execute("SELECT night_date, usage_hours FROM niv_nights WHERE patient_id = %s"
                           " ORDER BY night_date DESC LIMIT 1", (pid,)).fetchone()
    assert row is not None
    section = page.split('id="chart-niv_use"')[1].split("</section>")[0]
    assert f"{row[1]:.1f} h" in section and row[0].isoformat() in section
    assert 'class="calendar"' in page and page.count('class="use use-') == 12 * 7


def test_thresholds_are_the_rules_files_numbers(nurse: TestClient, web_world: WebWorld) -> None:
    rules = load_rules()
    charts = charts_of(nurse.get(f"/patients/{north_patient_on_niv(web_world)}").text)

    def lines(chart: str) -> dict[float, str]:
        return {t["value"]: t["label"] for t in charts[chart]["thresholds"]}

    assert "NS-FVC50 fvc_pct_pred" in lines("vc")[float(rules.get("NS-FVC50").params["fvc_pct_pred"])]
    assert "TD-VC30" in lines("vc")[float(rules.get("TD-VC30").params["vc_pct_pred"])]
    assert "NE-ADH min_hours" in lines("niv_use")[float(rules.get("NE-ADH").params["min_hours"])]
    assert "NS-T90 t90_pct" in lines("oximetry")[float(rules.get("NS-T90").params["t90_pct"])]
    assert "NE-LEAK" in lines("niv_leak")[float(rules.get("NE-LEAK").params["leak_lpm"])]
    assert "NS-SNIP40" in lines("pressures")[float(rules.get("NS-SNIP40").params["snip_cmh2o"])]


def test_each_alert_is_a_marker_that_opens_its_evidence(web_app: TestClient, web_world: WebWorld) -> None:
    seeded = (web_world.north.alerts + web_world.south.alerts)[0]
    member = "nurse-north" if seeded.patient_id.startswith("NORTH") else "nurse-south"
    page = logged_in(web_app, member).get(f"/patients/{seeded.patient_id}").text
    with psycopg.connect(web_world.db_url) as conn:
        row = conn.execute("SELECT alert_id, action, citation FROM alerts WHERE patient_id = %s AND rule_id = %s",
                           (seeded.patient_id, seeded.rule_id)).fetchone()
    assert row is not None
    alert_id, action, citation = row
    markers = {m["id"]: m for c in chart_data(page)["charts"] for m in c["markers"]}
    assert markers[alert_id]["x"] == int(seeded.opened_at.timestamp())
    assert len(markers) == count(web_world.db_url, "SELECT count(*) FROM alerts WHERE patient_id = %s"
                                                   " AND opened_at >= now() - interval '730 days'", seeded.patient_id)
    details = page.split(f'<details id="alert-{alert_id}"')[1].split("</details>")[0]
    assert action in html.unescape(details) and citation in html.unescape(details)
    assert seeded.rule_id in details and "open" in details
    assert f'href="#alert-{alert_id}"' in page  # the no-JS way from the chart to it


def test_trend_line_ends_at_the_projected_crossing(nurse: TestClient, web_world: WebWorld) -> None:
    floor = float(load_rules().get("NS-SLOPE").params["fvc_floor"])
    with psycopg.connect(web_world.db_url) as conn:
            # the patient whose last sitting session is lowest while still above the floor, falling
        row = conn.execute(
            "SELECT patient_id FROM (SELECT DISTINCT ON (patient_id) patient_id, fvc_pct_pred FROM spirometry_sessions"
            " WHERE patient_id LIKE 'NORTH-%%' AND posture = 'sitting' ORDER BY patient_id, taken_at DESC) last"
            " WHERE fvc_pct_pred > %s + 5 ORDER BY fvc_pct_pred LIMIT 1", (floor,)).fetchone()
    assert row is not None
    page = nurse.get(f"/patients/{row[0]}").text
    trend = charts_of(page)["vc"]["trend"]
    assert trend["label"] == "Trend (Theil–Sen)" and trend["y"][0] > trend["y"][1]
    crossing = re.search(r'class="crossing">(\d{4}-\d{2}-\d{2})<', page)
    assert crossing, "a falling patient above the floor has a projected crossing date"
    end = datetime.fromtimestamp(trend["x"][1], UTC).date()
    if end == date.fromisoformat(crossing.group(1)):  # the line is drawn to the crossing when it is near
        assert abs(trend["y"][1] - floor) < 1.0
    else:
        assert date.fromisoformat(crossing.group(1)) > end


def test_a_patient_already_below_the_floor_is_said_to_be_below_not_projected(nurse: TestClient,
                                                                              web_world: WebWorld) -> None:
    floor = float(load_rules().get("NS-SLOPE").params["fvc_floor"])
    with psycopg.connect(web_world.db_url) as conn:
        row = conn.execute("SELECT patient_id FROM spirometry_sessions WHERE patient_id LIKE 'NORTH-%%'"
                           " AND posture = 'sitting' GROUP BY 1 ORDER BY min(fvc_pct_pred) LIMIT 1").fetchone()
        last = conn.execute("SELECT max(taken_at) FROM spirometry_sessions WHERE patient_id = %s", row).fetchone()
    assert row is not None and last is not None
    page = nurse.get(f"/patients/{row[0]}").text
    assert f"already below {floor:.0f} %" in page and 'class="crossing"' not in page
    trend = charts_of(page)["vc"]["trend"]
    assert datetime.fromtimestamp(trend["x"][1], UTC) > last[0], "the line runs on past the last session"


def test_a_patient_without_niv_and_an_empty_range(nurse: TestClient, web_world: WebWorld) -> None:
    pid = north_patient_without_niv(web_world)
    page = nurse.get(f"/patients/{pid}").text
    assert "No NIV use recorded in this period." in page and "niv_use" not in charts_of(page)
    empty = nurse.get(f"/patients/{pid}?from=2001-01-01&to=2001-03-01")
    assert empty.status_code == 200
    assert charts_of(empty.text) == {}
    for kind in ("spirometry", "NIV use", "oximetry", "ALSFRS-R", "CO2 values"):
        assert f"No {kind} recorded in this period." in empty.text
    assert nurse.get(f"/patients/{pid}?from=2024-03-01&to=2024-01-01").status_code == 422


def test_scoping_404_for_other_teams_and_the_access_log(web_app: TestClient, web_world: WebWorld) -> None:
    pid = web_world.north.patients[1]
    south = logged_in(web_app, "nurse-south")
    refused = south.get(f"/patients/{pid}", headers=HTML)
    assert refused.status_code == 404 and "patient not found" in refused.text
    assert pid not in refused.text.split("<main")[1]
    assert logged_in(web_app, "admin-north").get(f"/patients/{pid}").status_code == 404
    assert TestClient(web_app.app).get(f"/patients/{pid}", follow_redirects=False).status_code == 303
    before = count(web_world.db_url, "SELECT count(*) FROM access_log WHERE member_id = 'viewer-north'"
                                     " AND patient_id = %s AND action = 'patient_page'", pid)
    viewer = logged_in(web_app, "viewer-north")
    page = viewer.get(f"/patients/{pid}").text
    assert count(web_world.db_url, "SELECT count(*) FROM access_log WHERE member_id = 'viewer-north'"
                                   " AND patient_id = %s AND action = 'patient_page'"
                                   " AND route = 'GET /patients/{patient_id}'", pid) == before + 1
    assert 'name="note"' not in page and 'name="state"' not in page  # a viewer gets no forms


def test_page_keeps_the_csp_no_inline_script_or_style(nurse: TestClient, web_world: WebWorld) -> None:
    page = nurse.get(f"/patients/{north_patient_on_niv(web_world)}").text
    for tag in re.findall(r"<script[^>]*>", page):
        assert 'src="/static/' in tag or 'type="application/json"' in tag, tag
    assert " style=" not in page and "<style" not in page


def test_notes_form_csrf_roles_and_audit(web_app: TestClient, web_world: WebWorld, nurse: TestClient) -> None:
    pid = web_world.north.patients[2]
    url = web_world.db_url
    page = nurse.get(f"/patients/{pid}").text
    token = csrf_of(page)
    refused = nurse.post(f"/patients/{pid}/notes", data={"note": "no token"}, headers=HTML)
    assert refused.status_code == 403
    text = "Discussed NIV <b>at clinic</b>; wants to think it over."
    done = nurse.post(f"/patients/{pid}/notes", data={"note": text, "csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/patients/{pid}#notes"
    assert count(url, "SELECT count(*) FROM patient_notes WHERE patient_id = %s AND note = 'no token'", pid) == 0
    assert count(url, "SELECT count(*) FROM patient_notes WHERE patient_id = %s AND author = 'nurse-north'"
                      " AND note = %s", pid, text) == 1
    assert count(url, "SELECT count(*) FROM access_log WHERE member_id = 'nurse-north' AND patient_id = %s"
                      " AND action = 'note'", pid) == 1
    shown = nurse.get(f"/patients/{pid}").text
    assert text in html.unescape(shown) and "<b>at clinic" not in shown
    viewer = logged_in(web_app, "viewer-north")
    viewer_token = csrf_of(viewer.get(f"/patients/{pid}").text)
    assert viewer.post(f"/patients/{pid}/notes", data={"note": "x", "csrf": viewer_token}).status_code == 403
    south = logged_in(web_app, "nurse-south")
    south_token = csrf_of(south.get(f"/patients/{web_world.south.patients[0]}").text)
    assert south.post(f"/patients/{pid}/notes", data={"note": "x", "csrf": south_token}).status_code == 404
    assert count(url, "SELECT count(*) FROM patient_notes WHERE patient_id = %s", pid) == 1


# --------------------------------------------------------------- a two-year cohort with its own Kafka topics
@pytest.fixture(scope="module")
def long_world(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Cohort, TestClient]]:
    """Three patients over 730 days in team `long` (member `nurse-long`, `viewer-long`), in a database and
    topic prefix of their own: the care-state form publishes on the measurements topic."""
    with namespace(tmp_path_factory.mktemp("long")) as env:
        url = env["RESPMON_DATABASE_URL"]
        with psycopg.connect(url, autocommit=True) as conn:
            cohort = seed(conn, 3, 730, team="long", prefix="LONG", seed_value=5)
            for member, role in (("nurse-long", "clinician"), ("viewer-long", "viewer")):
                add_member(conn, member, "long", role, "tests")  # type: ignore[arg-type]
                set_password(conn, member, PASSWORD)
        settings = Settings(database_url=url, topic_prefix=env["RESPMON_TOPIC_PREFIX"])
        with TestClient(create_app(settings)) as client:
            yield url, cohort, client


def test_two_years_of_daily_data_weigh_under_300_kb(long_world: tuple[str, Cohort, TestClient]) -> None:
    url, cohort, app = long_world
    nurse = logged_in(app, "nurse-long")
    sizes = {}
    for pid in cohort.patients:
        answer = nurse.get(f"/patients/{pid}")
        assert answer.status_code == 200
        sizes[pid] = len(answer.content)
        nights = count(url, "SELECT count(DISTINCT night_date) FROM oximetry_nights WHERE patient_id = %s"
                            " AND night_date >= current_date - 730", pid)
        assert len(charts_of(answer.text)["oximetry"]["x"]) == nights > 600
    assert max(sizes.values()) < 300_000, sizes


def test_care_state_form_publishes_records_and_shows_history(long_world: tuple[str, Cohort, TestClient]) -> None:
    url, cohort, app = long_world
    pid = cohort.patients[0]
    nurse = logged_in(app, "nurse-long")
    token = csrf_of(nurse.get(f"/patients/{pid}").text)
    today = datetime.now(UTC).date()
    too_late = nurse.post(f"/patients/{pid}/care-state",
                          data={"state": "niv_declined", "since": (today + timedelta(days=5)).isoformat(),
                                "csrf": token})
    assert too_late.status_code == 422
    assert nurse.post(f"/patients/{pid}/care-state", data={"state": "asleep", "since": today.isoformat(),
                                                           "csrf": token}).status_code == 422
    assert nurse.post(f"/patients/{pid}/care-state", data={"state": "niv_declined", "since": today.isoformat()},
                      headers=HTML).status_code == 403
    done = nurse.post(f"/patients/{pid}/care-state", follow_redirects=False,
                      data={"state": "niv_declined", "since": today.isoformat(), "note": "after MDT", "csrf": token})
    assert done.status_code == 303, done.text
    assert count(url, "SELECT count(*) FROM patient_care_states WHERE patient_id = %s AND state = 'niv_declined'"
                      " AND set_by = 'nurse-long' AND note = 'after MDT'", pid) == 1
    assert count(url, "SELECT count(*) FROM access_log WHERE patient_id = %s AND action = 'care_state'", pid) == 1
    page = nurse.get(f"/patients/{pid}").text
    assert "<strong>niv declined</strong> since " + today.isoformat() in page
    history = page.split('class="care-history"')[1].split("</table>")[0]
    assert "after MDT" in history and "nurse-long" in history
    viewer = logged_in(app, "viewer-long")
    viewer_token = csrf_of(viewer.get(f"/patients/{pid}").text)
    assert viewer.post(f"/patients/{pid}/care-state", data={"state": "none", "since": today.isoformat(),
                                                            "csrf": viewer_token}).status_code == 403
    assert count(url, "SELECT count(*) FROM care_states WHERE patient_id = %s", pid) == 1
