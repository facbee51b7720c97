"""Writes through processors/store.py on the real PostgreSQL: the record and its signals in one
transaction, replays write nothing twice, batches (executemany and COPY paths) are idempotent."""

import math
from datetime import date
from pathlib import Path

import psycopg
import pytest

from ingest.parsers import parse_path
from processors import store
from respmon import queries
from respmon.core import timescale
from respmon.core.signals import minute_aggregates
from schemas import NivNight
from tests.test_storage.helpers import days, envelope, night_start, niv, oximetry, run

pytestmark = pytest.mark.stack
STR_EDF = Path(__file__).resolve().parents[1] / "data" / "resmed" / "airsense10_autoset" / "STR.edf"


def count(db: psycopg.Connection, table: str, patient: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table} WHERE patient_id = %s", (patient,)).fetchone()[0]  # type: ignore[arg-type]


def test_oximetry_night_stores_its_signal_in_the_same_transaction(db_url: str, db: psycopg.Connection) -> None:
    night = oximetry("S-oxi", night_start(date(2011, 3, 2)))  # a month no other test writes
    env = envelope(night)
    run(db_url, lambda conn: store.store_record(conn, env))
    row = db.execute("SELECT n.valid, s.n_samples, s.upload_id::text, s.tableoid::regclass::text"
                     " FROM oximetry_nights n JOIN oximetry_signals s USING (patient_id, start_at, source)"
                     " WHERE patient_id = 'S-oxi'").fetchone()
    assert row[0] is True and row[1] == len(night.spo2) and row[2] == env.upload_id
    if timescale.storage_info(db).engine == "postgresql":
        # a past month has no partition yet: the row waits in DEFAULT until the worker's timer runs
        assert row[3] == "oximetry_signals_default"
        timescale.ensure_partitions(db)
        assert db.execute("SELECT tableoid::regclass::text FROM oximetry_signals WHERE patient_id = 'S-oxi'"
                          ).fetchone()[0] == "oximetry_signals_p201103"
    agg = minute_aggregates(night.spo2, night.interval_s)
    stored = db.execute("SELECT spo2_min_1m, spo2_mean_1m, spo2_max_1m FROM oximetry_signals"
                        " WHERE patient_id = 'S-oxi'").fetchone()
    assert list(stored) == [agg["min"], agg["mean"], agg["max"]]  # the per-minute arrays, NULL minutes included
    sig = queries.oximetry_signal(db, "S-oxi", night.start)
    assert sig is not None and sig["interval_s"] == 4.0
    assert [None if math.isnan(v) else v for v in sig["spo2"].tolist()] == list(night.spo2)
    assert sig["pulse"].tolist() == list(night.pulse)


def test_a_failed_transaction_leaves_neither_night_nor_signal(db_url: str, db: psycopg.Connection) -> None:
    env = envelope(oximetry("S-fail", night_start(date(2026, 3, 3))))

    async def write_then_fail(conn: psycopg.AsyncConnection) -> None:
        await store.store_record(conn, env)
        raise RuntimeError("findings write failed")

    with pytest.raises(RuntimeError):
        run(db_url, write_then_fail)
    assert count(db, "oximetry_nights", "S-fail") == 0 and count(db, "oximetry_signals", "S-fail") == 0


def test_replay_writes_nothing_twice(db_url: str, db: psycopg.Connection) -> None:
    env = envelope(oximetry("S-replay", night_start(date(2026, 3, 4))))
    run(db_url, lambda conn: store.store_record(conn, env))
    version = db.execute("SELECT xmin::text FROM oximetry_signals WHERE patient_id = 'S-replay'").fetchone()[0]
    run(db_url, lambda conn: store.store_record(conn, env))
    run(db_url, lambda conn: store.store_records(conn, [env, env]))
    assert count(db, "oximetry_nights", "S-replay") == 1 and count(db, "oximetry_signals", "S-replay") == 1
    # the same samples are not rewritten (no new row version of the signal row)
    assert db.execute("SELECT xmin::text FROM oximetry_signals WHERE patient_id = 'S-replay'").fetchone()[0] == version


def test_a_corrected_night_replaces_the_stored_one(db_url: str, db: psycopg.Connection) -> None:
    start = night_start(date(2026, 3, 5))
    run(db_url, lambda conn: store.store_record(conn, envelope(oximetry("S-fix", start, dip_every=50))))
    run(db_url, lambda conn: store.store_record(conn, envelope(oximetry("S-fix", start, dip_every=10))))
    odi = db.execute("SELECT odi3 FROM oximetry_nights WHERE patient_id = 'S-fix'").fetchall()
    assert len(odi) == 1
    minutes = queries.oximetry_minutes(db, "S-fix", date(2026, 3, 5), date(2026, 3, 5))
    assert len(minutes) == 1 and minutes[0]["spo2_min"][0] == 86.0
    sig = queries.oximetry_signal(db, "S-fix", start)
    assert sig is not None and sig["spo2"][10] == 86.0  # the second version's dip at sample 10


@pytest.mark.parametrize("n_nights", [5, 100])  # executemany path, COPY path (>= COPY_THRESHOLD)
def test_batch_of_niv_nights_is_idempotent(db_url: str, db: psycopg.Connection, n_nights: int) -> None:
    patient = f"S-batch-{n_nights}"
    first = date(2026, 1, 1)
    envs = [envelope(niv(patient, days(first, i), usage=5 + i % 3)) for i in range(n_nights)]
    assert run(db_url, lambda conn: store.store_records(conn, envs)) == n_nights
    assert run(db_url, lambda conn: store.store_records(conn, envs)) == n_nights
    assert count(db, "niv_nights", patient) == n_nights
    # a later upload of the same card corrects night 3; duplicates inside one batch: the last wins
    fixed = [envelope(niv(patient, days(first, 3), usage=1.0)), envelope(niv(patient, days(first, 3), usage=2.5))]
    run(db_url, lambda conn: store.store_records(conn, envs[:1] + fixed))
    assert count(db, "niv_nights", patient) == n_nights
    assert db.execute("SELECT usage_hours FROM niv_nights WHERE patient_id = %s AND night_date = %s",
                      (patient, days(first, 3))).fetchone()[0] == 2.5


def test_str_edf_upload_in_one_batch(db_url: str, db: psycopg.Connection) -> None:
    nights = [r for r in parse_path(STR_EDF, patient_id="S-str") if isinstance(r, NivNight)]
    assert len(nights) > 1
    envs = [envelope(n) for n in nights]
    run(db_url, lambda conn: store.store_records(conn, envs))
    run(db_url, lambda conn: store.store_records(conn, envs))  # the card uploaded again
    keys = {(n.night_date, n.source) for n in nights}
    assert count(db, "niv_nights", "S-str") == len(keys)
    stored = dict(db.execute("SELECT night_date, usage_hours FROM niv_nights WHERE patient_id = 'S-str'").fetchall())
    assert stored == {n.night_date: pytest.approx(n.usage_hours) for n in nights}


def test_mixed_batch_single_and_batch_paths_agree(db_url: str, db: psycopg.Connection) -> None:
    envs = [envelope(oximetry("S-mix-a", night_start(date(2026, 4, 1)))), envelope(niv("S-mix-a", date(2026, 4, 1)))]
    run(db_url, lambda conn: store.store_records(conn, envs))
    for env in envs:
        run(db_url, lambda conn, env=env: store.store_record(conn, env.model_copy(
            update={"record": env.record.model_copy(update={"patient_id": "S-mix-b"})})))
    cols = "night_date, valid, t90_pct, odi3, longest_le88_min, mean_pulse"
    a = db.execute(f"SELECT {cols} FROM oximetry_nights WHERE patient_id = 'S-mix-a'").fetchall()  # type: ignore[arg-type]
    b = db.execute(f"SELECT {cols} FROM oximetry_nights WHERE patient_id = 'S-mix-b'").fetchall()  # type: ignore[arg-type]
    assert a == b and len(a) == 1
    assert count(db, "oximetry_signals", "S-mix-a") == count(db, "oximetry_signals", "S-mix-b") == 1


def test_large_oximetry_batch_takes_the_copy_path(db_url: str, db: psycopg.Connection) -> None:
    nights = [oximetry("S-copy", night_start(days(date(2026, 2, 1), i)), hours=4.2)
              for i in range(store.COPY_THRESHOLD + 2)]
    envs = [envelope(n) for n in nights]
    run(db_url, lambda conn: store.store_records(conn, envs))
    run(db_url, lambda conn: store.store_records(conn, envs))
    assert count(db, "oximetry_nights", "S-copy") == count(db, "oximetry_signals", "S-copy") == len(nights)
    sig = queries.oximetry_signal(db, "S-copy", nights[-1].start)
    assert sig is not None and [None if math.isnan(v) else v for v in sig["spo2"].tolist()] == list(nights[-1].spo2)
    minutes = queries.oximetry_minutes(db, "S-copy", date(2026, 2, 1), date(2026, 2, 1))
    assert len(minutes[0]["spo2_mean"]) == 252  # 4.2 h of minutes
    stored = db.execute("SELECT spo2_max_1m FROM oximetry_signals WHERE patient_id = 'S-copy' AND start_at = %s",
                        (nights[-1].start,)).fetchone()[0]
    assert stored == minute_aggregates(nights[-1].spo2, 4.0)["max"]


def test_minutes_without_a_reading_are_stored_as_null(db_url: str, db: psycopg.Connection) -> None:
    night = oximetry("S-gap", night_start(date(2026, 2, 20)), hours=4.2)
    spo2 = list(night.spo2)
    spo2[150:300] = [None] * 150  # 10 min at 4 s without a reading
    gap = night.model_copy(update={"spo2": spo2})
    run(db_url, lambda conn: store.store_record(conn, envelope(gap)))
    stored = db.execute("SELECT spo2_min_1m FROM oximetry_signals WHERE patient_id = 'S-gap'").fetchone()[0]
    assert stored == minute_aggregates(spo2, 4.0)["min"]
    assert stored[11:19] == [None] * 8 and stored[0] is not None
