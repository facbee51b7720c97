"""The night view shows the oximeter's own figures (O2Ring header) in a "device reported" column beside ours,
for a night stored as the worker stores it (processors.store rows on the migrated tables), and no such column
for a night whose device reported nothing."""

from datetime import UTC, date, datetime

import psycopg
from fastapi.testclient import TestClient

from ingest.parsers import parse_bytes
from processors import store
from schemas import Envelope, OximetryNight
from tests.test_ingest.device_files import o2ring_bin
from tests.test_web.conftest import WebWorld

HTML = {"accept": "text/html"}
WITH_SUMMARY = date(2001, 2, 14)
WITHOUT = date(2001, 2, 15)


def stored(conn: psycopg.Connection, night: OximetryNight) -> None:
    env = Envelope(upload_id="00000000-0000-0000-0000-0000000000a1", device_id="dev-web",
                   received_at=datetime.now(UTC), record=night)
    for table, row in store.record_rows(env):
        conn.execute(store._upsert_sql(table, list(row)), list(row.values()))


def ring_night(pid: str, day: date, **summary: int) -> OximetryNight:
    start = datetime(day.year, day.month, day.day, 22, 30)
    samples = [(95, 60)] * 2000 + [(88, 70)] * 99 + [(95, 60)] * 2000  # 99 x 4 s below 90 %
    (night,) = parse_bytes(o2ring_bin(start, samples, **summary), "O2Ring.bin", patient_id=pid)
    assert isinstance(night, OximetryNight)
    return night


def test_device_reported_column_beside_ours(nurse: TestClient, web_world: WebWorld) -> None:
    pid = web_world.north.patients[-2]
    with psycopg.connect(web_world.db_url, autocommit=True) as conn, conn.transaction():
        stored(conn, ring_night(pid, WITH_SUMMARY, mean=94, lowest=87, drops3=53, drops4=22, t90_s=396))
        stored(conn, ring_night(pid, WITHOUT))
        row = conn.execute("SELECT device_mean_spo2, device_min_spo2, device_drops3, device_drops4, device_t90_s,"
                           " min_spo2, t90_min FROM oximetry_nights WHERE patient_id = %s AND night_date = %s",
                           (pid, WITH_SUMMARY)).fetchone()
    assert row == (94, 87, 53, 22, 396, 88, 6.6)  # the device's beside ours (ours: 99 x 4 s = 6.6 min < 90 %)
    page = nurse.get(f"/patients/{pid}/nights/{WITH_SUMMARY.isoformat()}", headers=HTML)
    assert page.status_code == 200
    text = page.text
    assert '<th scope="col" class="device">device reported</th>' in text
    assert '<td class="device">94 % / 87 %</td>' in text  # ours: mean 94.x % / min 88 %
    assert '<td class="device">6.6 min below 90 %</td>' in text
    assert '<td class="device">53 / 22 drops ≥ 3 % / ≥ 4 % (counts)</td>' in text
    assert "88 %" in text  # our minimum, in the respmon column
    other = nurse.get(f"/patients/{pid}/nights/{WITHOUT.isoformat()}", headers=HTML).text
    assert "Night metrics" in other and "device reported" not in other
