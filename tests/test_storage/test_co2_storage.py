"""Blood gases and TcCO2 nights (issue 12) in PostgreSQL: upserts on their natural keys, the partition their
month falls in, and the timeline listing them from their tables with every stored value (the sample too)."""

from datetime import UTC, date, datetime

import psycopg
import pytest

from processors import store
from respmon import queries
from respmon.core import timescale
from schemas import BloodGas
from tests.scenarios import gas, tcco2_night
from tests.test_storage.helpers import envelope, run

pytestmark = pytest.mark.stack
P = "P-co2-store"
AT = datetime(2026, 4, 2, 9, tzinfo=UTC)


def test_gases_upsert_on_time_sample_and_source(db_url: str, db: psycopg.Connection) -> None:
    """An arterial and a venous gas drawn together are two rows; a re-sent one replaces its row."""
    first = [envelope(gas(P, AT, 44.0)), envelope(gas(P, AT, 47.0, sample="venous", bicarbonate=28.0))]
    run(db_url, lambda conn: store.store_records(conn, first))
    run(db_url, lambda conn: store.store_records(conn, [envelope(gas(P, AT, 45.5))]))
    rows = db.execute("SELECT sample, pco2_mmhg, bicarbonate_mmol_l FROM blood_gases WHERE patient_id = %s"
                      " ORDER BY sample", (P,)).fetchall()
    assert rows == [("arterial", 45.5, None), ("venous", 47.0, 28.0)]


def test_a_sample_the_record_refuses_the_table_refuses_too(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO blood_gases (patient_id, taken_at, sample, source, pco2_mmhg)"
                   " VALUES ('P-x', now(), 'blood', 'clinic', 40)")
    assert set(BloodGas.model_fields["sample"].annotation.__args__) == {  # type: ignore[union-attr]
        "arterial", "capillary", "venous", "transcutaneous", "end_tidal"}


def test_rows_land_in_their_month(db_url: str, db: psycopg.Connection) -> None:
    if timescale.storage_info(db).engine != "postgresql":
        pytest.skip("TimescaleDB server: hypertables instead of native partitions")
    p = "P-co2-month"
    night = tcco2_night(p, date(2026, 4, 1), peak_min=12.0)
    run(db_url, lambda conn: store.store_records(conn, [envelope(night), envelope(gas(p, AT, 46.0))]))
    timescale.ensure_partitions(db)
    where = db.execute("SELECT tableoid::regclass::text FROM capnography_nights WHERE patient_id = %s"
                       " UNION ALL SELECT tableoid::regclass::text FROM blood_gases WHERE patient_id = %s",
                       (p, p)).fetchall()
    assert sorted(w for (w,) in where) == ["blood_gases_p202604", "capnography_nights_p202604"]


def test_timeline_lists_gases_with_their_sample_and_nights_with_their_metrics(db_url: str,
                                                                             db: psycopg.Connection) -> None:
    p = "P-co2-timeline"
    envs = [envelope(gas(p, AT, 6.2 * 7.50062, sample="capillary", bicarbonate=29.0)),
            envelope(tcco2_night(p, date(2026, 4, 2), peak_min=12.0))]
    run(db_url, lambda conn: store.store_records(conn, envs))
    items = queries.patient_timeline(db, p, date(2026, 4, 2), date(2026, 4, 2))
    assert [it["kind"] for it in items] == ["blood_gas", "capnography_night"]
    blood, night = items
    assert blood["metrics"]["sample"] == "capillary" and blood["metrics"]["bicarbonate_mmol_l"] == 29.0
    assert blood["source"] == "clinic" and "patient_id" not in blood["metrics"]
    assert night["metrics"]["gt55_min"] == 12.0 and night["metrics"]["baseline_tcpco2"] == 42.0
    assert night["metrics"]["night_date"] == date(2026, 4, 2) and night["metrics"]["valid"] is True
