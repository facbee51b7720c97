"""The night view and its signal.json on a real PostgreSQL: the per-minute points are the stored arrays, the
desaturation events are the ones the metrics count, the night's metrics and NIV summary, the raw-sample
window's limits, and scoping (another team's patient and an unknown night are 404)."""

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from processors.metrics.oximetry import night_metrics
from respmon.core.signals import CODEC, encode_signal, minute_aggregates
from schemas.oximetry import OximetryNight
from tests.test_web.conftest import WebWorld, logged_in

HTML = {"accept": "text/html"}
CRAFTED = date(2001, 1, 10)  # long before the seeded cohort: no other page's range reaches it
CRAFTED_START = datetime(2001, 1, 10, 22, 0, tzinfo=UTC)
DIPS = 30


def night_data(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="night-data">(.*?)</script>', page, re.DOTALL)
    assert found, "no night data block"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def crafted_samples() -> tuple[np.ndarray, np.ndarray]:
    """Five hours at 1 Hz: SpO2 96 % with a 30 s dip to 90 % every ten minutes (DIPS events), pulse 70."""
    spo2 = np.full(5 * 3600, 96.0)
    for k in range(DIPS):
        spo2[300 + k * 600: 330 + k * 600] = 90.0
    return spo2, np.full(spo2.size, 70.0)


def as_night(spo2: np.ndarray, pulse: np.ndarray, start: datetime, interval_s: float) -> OximetryNight:
    def listed(a: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in a]

    return OximetryNight(patient_id="X", start=start, interval_s=interval_s, spo2=listed(spo2), pulse=listed(pulse))


@pytest.fixture(scope="module")
def crafted(web_world: WebWorld) -> str:
    """A north patient's night of 2001-01-10 with known desaturations, its metrics row and a NIV night."""
    pid = web_world.north.patients[-1]
    spo2, pulse = crafted_samples()
    m = night_metrics(as_night(spo2, pulse, CRAFTED_START, 1.0))
    s, p = minute_aggregates(spo2, 1.0), minute_aggregates(pulse, 1.0)
    with psycopg.connect(web_world.db_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO oximetry_nights (patient_id, start_at, source, night_date, interval_s, on_niv, valid,"
            " recording_min, vrt_min, mean_spo2, min_spo2, t90_pct, t90_min, t88_pct, t88_min, longest_le88_min,"
            " odi3, odi4, mean_pulse) VALUES (%s, %s, 'o2ring', %s, 1, true, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (pid, CRAFTED_START, CRAFTED, m.valid, m.recording_min, m.vrt_min, m.mean_spo2, m.min_spo2, m.t90_pct,
             m.t90_min, m.t88_pct, m.t88_min, m.longest_le88_min, m.odi3, m.odi4, m.mean_pulse))
        conn.execute(
            "INSERT INTO oximetry_signals (patient_id, start_at, source, interval_s, n_samples, codec, spo2, pulse,"
            " spo2_min_1m, spo2_mean_1m, spo2_max_1m, pulse_mean_1m) VALUES (%s, %s, 'o2ring', 1, %s, %s, %s, %s,"
            " %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (pid, CRAFTED_START, spo2.size, CODEC, encode_signal(spo2), encode_signal(pulse), s["min"], s["mean"],
             s["max"], p["mean"]))
        conn.execute(
            "INSERT INTO niv_nights (patient_id, night_date, source, usage_hours, leak_p95_lpm, leak_kind, ahi,"
            " resp_rate, tidal_volume_ml, minute_vent_lpm) VALUES (%s, %s, 'resmed-str', 6.25, 18.5, 'unintentional',"
            " 3.4, 16.5, 430, 7.1) ON CONFLICT DO NOTHING", (pid, CRAFTED))
    return pid


def test_night_view_draws_the_stored_minutes_and_the_events(nurse: TestClient, crafted: str,
                                                             web_world: WebWorld) -> None:
    answer = nurse.get(f"/patients/{crafted}/nights/{CRAFTED.isoformat()}")
    assert answer.status_code == 200
    data = night_data(answer.text)
    with psycopg.connect(web_world.db_url) as conn:
        row = conn.execute("SELECT array_length(spo2_mean_1m, 1), odi3 * vrt_min / 60 FROM oximetry_signals"
                           " JOIN oximetry_nights USING (patient_id, start_at, source)"
                           " WHERE patient_id = %s AND start_at = %s", (crafted, CRAFTED_START)).fetchone()
    assert row is not None
    minutes, stored_events = row
    assert len(data["spo2_mean"]) == len(data["spo2_min"]) == len(data["pulse"]) == minutes == 300
    assert data["start"] == int(CRAFTED_START.timestamp()) and data["step"] == 60
    assert data["lines"] == [88.0, 90.0]
    assert len(data["events"]) == DIPS == round(stored_events)
    first = data["events"][0]
    assert first == [int(CRAFTED_START.timestamp()) + 300, int(CRAFTED_START.timestamp()) + 330]
    assert f'class="event-count">{DIPS}<' in answer.text and answer.text.count('<tr class="event">') == DIPS
    assert "6.2 h" in answer.text and "18.5 L/min (unintentional)" in answer.text  # the NIV summary
    assert "ODI3 / ODI4" in answer.text and "6.0/h" in answer.text


def test_events_of_a_seeded_night_are_the_metrics_count(nurse: TestClient, web_world: WebWorld) -> None:
    with psycopg.connect(web_world.db_url) as conn:
        rows = conn.execute("SELECT s.patient_id, n.night_date, s.start_at, s.interval_s FROM oximetry_signals s"
                            " JOIN oximetry_nights n USING (patient_id, start_at, source)"
                            " WHERE s.patient_id LIKE 'NORTH-%%' AND n.night_date > '2002-01-01'"
                            " ORDER BY n.t90_pct DESC LIMIT 2").fetchall()
    assert rows
    for pid, night, start_at, interval_s in rows:
        page = nurse.get(f"/patients/{pid}/nights/{night.isoformat()}").text
        data = night_data(page)
        signal = nurse.get(f"/patients/{pid}/nights/{night.isoformat()}/signal.json",
                           params={"from": start_at.timestamp(), "to": start_at.timestamp() + 4 * 3600 - 1}).json()
        rest = nurse.get(f"/patients/{pid}/nights/{night.isoformat()}/signal.json",
                         params={"from": start_at.timestamp() + 4 * 3600,
                                 "to": start_at.timestamp() + 8 * 3600 - 1}).json()
        spo2 = np.array([np.nan if v is None else v for v in signal["spo2"] + rest["spo2"]], dtype=float)
        pulse = np.array([np.nan if v is None else v for v in signal["pulse"] + rest["pulse"]], dtype=float)
        counted = night_metrics(as_night(spo2, pulse, start_at, interval_s)).odi3_events
        assert len(data["events"]) == counted


def test_a_night_without_samples_an_unknown_night_and_another_team(web_app: TestClient, nurse: TestClient,
                                                                   web_world: WebWorld, crafted: str) -> None:
    with psycopg.connect(web_world.db_url) as conn:
        row = conn.execute("SELECT night_date FROM oximetry_nights n WHERE patient_id = %s AND NOT EXISTS"
                           " (SELECT 1 FROM oximetry_signals s WHERE s.patient_id = n.patient_id"
                           " AND s.start_at = n.start_at) AND night_date > '2002-01-01' ORDER BY 1 DESC LIMIT 1",
                           (crafted,)).fetchone()
    assert row is not None
    page = nurse.get(f"/patients/{crafted}/nights/{row[0].isoformat()}")
    assert page.status_code == 200 and "No per-minute signal stored for this night" in page.text
    assert 'id="night-data"' not in page.text or night_data(page.text).get("spo2_mean") is None
    assert nurse.get(f"/patients/{crafted}/nights/1999-01-01", headers=HTML).status_code == 404
    assert nurse.get(f"/patients/{crafted}/nights/not-a-date").status_code == 422
    south = logged_in(web_app, "nurse-south")
    assert south.get(f"/patients/{crafted}/nights/{CRAFTED.isoformat()}", headers=HTML).status_code == 404
    night_url = f"/patients/{crafted}/nights/{CRAFTED.isoformat()}/signal.json"
    t0 = CRAFTED_START.timestamp()
    assert south.get(night_url, params={"from": t0, "to": t0 + 600}).status_code == 404


def test_signal_window_and_its_limits(nurse: TestClient, crafted: str, web_world: WebWorld) -> None:
    url = f"/patients/{crafted}/nights/{CRAFTED.isoformat()}/signal.json"
    t0 = CRAFTED_START.timestamp()
    before = count_looks(web_world, crafted)
    window = nurse.get(url, params={"from": t0 + 290, "to": t0 + 290 + 600})
    assert window.status_code == 200
    body = window.json()
    assert body["start"] == t0 + 290 and body["step"] == 1.0
    assert len(body["spo2"]) == len(body["pulse"]) == 601
    spo2, _ = crafted_samples()
    assert body["spo2"] == spo2[290:891].tolist()
    assert count_looks(web_world, crafted) == before + 1
    assert nurse.get(url, params={"from": t0, "to": t0 + 4 * 3600 + 1}).status_code == 422
    assert nurse.get(url, params={"from": t0 + 600, "to": t0}).status_code == 422
    assert nurse.get(url, params={"from": t0}).status_code == 422
    outside = nurse.get(url, params={"from": t0 - 7200, "to": t0 - 3600}).json()
    assert outside["spo2"] == []
    tail = nurse.get(url, params={"from": t0 + 5 * 3600 - 10, "to": t0 + 5 * 3600 + 600}).json()
    assert len(tail["spo2"]) == 10  # clipped to the recording
    assert nurse.get(f"/patients/{crafted}/nights/{(CRAFTED - timedelta(days=1)).isoformat()}/signal.json",
                     params={"from": t0, "to": t0 + 60}).status_code == 404


def count_looks(world: WebWorld, pid: str) -> int:
    with psycopg.connect(world.db_url) as conn:
        row = conn.execute("SELECT count(*) FROM access_log WHERE patient_id = %s AND action = 'night_signal'"
                           " AND member_id = 'nurse-north'", (pid,)).fetchone()
    assert row is not None
    return int(row[0])


def test_patient_page_links_each_oximetry_night(nurse: TestClient, crafted: str) -> None:
    page = nurse.get(f"/patients/{crafted}").text
    links = re.findall(rf'href="/patients/{crafted}/nights/(\d{{4}}-\d{{2}}-\d{{2}})\?source=o2ring"', page)
    assert len(links) == 14
    assert all(nurse.get(f"/patients/{crafted}/nights/{d}").status_code == 200 for d in links[:2])
