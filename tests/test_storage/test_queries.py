"""respmon/queries/records.py and the daily summary, on data written through processors/store.py."""

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from processors import store
from respmon import queries
from respmon.core import timescale
from tests.test_storage.helpers import alsfrs, envelope, night_start, niv, oximetry, run, spirometry

pytestmark = pytest.mark.stack
P = "Q-timeline"
D0 = date(2026, 5, 10)


@pytest.fixture(scope="module")
def history(db_url: str) -> None:
    """Ten days of one patient: nightly oximetry and NIV, two spirometry sessions, one ALSFRS-R;
    plus another patient's night on the same dates (must not leak into the timeline)."""
    envs = []
    for i in range(10):
        d = D0 + timedelta(days=i)
        envs.append(envelope(oximetry(P, night_start(d), dip_every=60 - 4 * i)))
        envs.append(envelope(niv(P, d, usage=4.0 + i * 0.5, leak=10 + i, ahi=2 + i)))
    envs.append(envelope(spirometry(P, datetime(2026, 5, 11, 10, tzinfo=UTC), fvc_pct=72.0)))
    envs.append(envelope(spirometry(P, datetime(2026, 5, 18, 10, tzinfo=UTC), fvc_pct=64.5, fvc_l=2.6)))
    envs.append(envelope(alsfrs(P, datetime(2026, 5, 12, 9, tzinfo=UTC))))
    envs.append(envelope(oximetry("Q-other", night_start(D0)), ))
    run(db_url, lambda conn: store.store_records(conn, envs))


def test_timeline_lists_every_kind_in_time_order(history: None, db: psycopg.Connection) -> None:
    items = queries.patient_timeline(db, P, D0 + timedelta(days=1), D0 + timedelta(days=2))
    assert [(it["kind"], it["date"]) for it in items] == [
        ("spirometry", date(2026, 5, 11)),       # 10:00 UTC
        ("niv_night", date(2026, 5, 11)),        # therapy day from 12:00 UTC
        ("oximetry_night", date(2026, 5, 11)),   # 22:00 UTC
        ("alsfrs_r", date(2026, 5, 12)),         # 09:00 UTC
        ("niv_night", date(2026, 5, 12)),
        ("oximetry_night", date(2026, 5, 12)),
    ]
    ats = [it["at"] for it in items]
    assert ats == sorted(ats)
    spiro, niv_night, oxi, form = items[0], items[1], items[2], items[3]
    assert spiro["metrics"]["fvc_pct_pred"] == 72.0 and spiro["source"] == "device"
    assert niv_night["metrics"]["usage_hours"] == 4.5 and niv_night["metrics"]["ahi"] == 3.0
    assert oxi["metrics"]["valid"] is True and oxi["metrics"]["has_signal"] is True
    assert oxi["metrics"]["odi3"] > 0 and oxi["metrics"]["longest_le88_min"] is not None
    assert form["metrics"]["total"] == 39 and form["metrics"]["respiratory_subscore"] == 9
    assert all(uuid.UUID(it["upload_id"]) for it in items)


def test_timeline_window_is_inclusive_and_per_patient(history: None, db: psycopg.Connection) -> None:
    items = queries.patient_timeline(db, P, D0, D0 + timedelta(days=9))
    by_kind = {k: [it for it in items if it["kind"] == k] for k in queries.KINDS}
    assert len(by_kind["oximetry_night"]) == len(by_kind["niv_night"]) == 10
    assert len(by_kind["spirometry"]) == 2 and len(by_kind["alsfrs_r"]) == 1
    assert queries.patient_timeline(db, P, D0 + timedelta(days=30), D0 + timedelta(days=40)) == []
    assert {it["kind"] for it in queries.patient_timeline(db, "Q-other", D0, D0)} == {"oximetry_night"}


def test_cohort_latest(history: None, db: psycopg.Connection) -> None:
    token = uuid.uuid4().hex
    db.execute("INSERT INTO devices (device_id, patient_id, token_sha256) VALUES (%s, %s, %s)",
               (f"dev-{token[:6]}", P, token))
    received = datetime(2026, 5, 20, 7, 30, tzinfo=UTC)
    for offset in (timedelta(days=-3), timedelta(0)):
        db.execute("INSERT INTO raw_uploads (upload_id, device_id, received_at, sha256, size_bytes, body)"
                   " VALUES (%s, %s, %s, %s, 1, 'x')",
                   (uuid.uuid4(), f"dev-{token[:6]}", received + offset, uuid.uuid4().hex))
    # one active alert per patient and category since issue 12: the two active ones are of two categories
    for rule, category, status in (("R1", "NIV_START", "open"), ("R2", "NIV_ESCALATE", "acknowledged"),
                                   ("R3", "NIV_START", "resolved")):
        db.execute("INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, status, evidence,"
                   " action, citation, finding_at)"
                   " VALUES (%s, %s, '1', %s, 'high', %s, '{}', 'a', 'c', now())",
                   (P, rule, category, status))

    rows = queries.cohort_latest(db, [P, "Q-nobody"])
    assert [r["patient_id"] for r in rows] == [P, "Q-nobody"]
    me, nobody = rows
    assert me["fvc_pct_pred"] == 64.5 and me["fvc_l"] == 2.6
    assert me["fvc_taken_at"] == datetime(2026, 5, 18, 10, tzinfo=UTC)
    last_night = queries.patient_timeline(db, P, D0 + timedelta(days=9), D0 + timedelta(days=9),
                                          kinds=("oximetry_night",))[0]["metrics"]
    assert me["oximetry_night_date"] == D0 + timedelta(days=9)
    assert (me["t90_pct"], me["odi3"], me["longest_le88_min"]) == (
        last_night["t90_pct"], last_night["odi3"], last_night["longest_le88_min"])
    assert (me["niv_night_date"], me["niv_usage_hours"], me["niv_leak_p95_lpm"], me["niv_ahi"]) == (
        D0 + timedelta(days=9), 8.5, 19.0, 11.0)
    assert me["last_upload_at"] == received
    assert me["open_alerts"] == 2
    assert nobody["fvc_pct_pred"] is None and nobody["open_alerts"] == 0 and nobody["last_upload_at"] is None
    everyone = {r["patient_id"] for r in queries.cohort_latest(db)}
    assert {P, "Q-other"} <= everyone


def test_daily_summary_after_refresh(history: None, db: psycopg.Connection, db_url: str) -> None:
    assert timescale.refresh_daily_summary(db) in ("materialized_view", "continuous_aggregate")
    row = db.execute("SELECT oximetry_nights, niv_nights, niv_usage_hours, spirometry_sessions, fvc_pct_pred_best"
                     " FROM daily_summary WHERE patient_id = %s AND day = %s", (P, date(2026, 5, 11))).fetchone()
    assert row == (1, 1, 4.5, 1, 72.0)
    days = db.execute("SELECT count(*) FROM daily_summary WHERE patient_id = %s", (P,)).fetchone()[0]
    assert days == 10

    # the worker's async call: a night stored later shows up after the next refresh
    run(db_url, lambda conn: store.store_record(conn, envelope(niv(P, date(2026, 6, 1)))))

    async def refresh() -> str:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            return await store.refresh_daily_summary(conn)

    asyncio.run(refresh())
    assert db.execute("SELECT niv_nights FROM daily_summary WHERE patient_id = %s AND day = '2026-06-01'",
                      (P,)).fetchone() == (1,)


def test_worker_ensure_partitions_is_async_and_repeatable(db_url: str) -> None:
    async def twice() -> tuple[list[str], list[str]]:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            return await store.ensure_partitions(conn), await store.ensure_partitions(conn)

    _, second = asyncio.run(twice())
    assert second == []
