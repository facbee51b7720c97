"""Migration 0003 on the real PostgreSQL: existing rows survive the conversion, rows land in their
monthly partition, partitions are kept ahead, natural-key upserts work on the partitioned tables."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from respmon.core import timescale
from respmon.core.db import available_migrations, migrate
from tests.conftest import ADMIN_URL

pytestmark = pytest.mark.stack

OLD_ROWS = {  # rows a dev database may hold before 0003, across months and years
    "spirometry_sessions": [
        "('P-old', '2019-03-04 10:00+00', 'clinic', 'sitting', 3.1, 81.0)",
        "('P-old', '2026-01-31 23:30+00', 'device', 'sitting', 3.0, 79.5)",
    ],
    "oximetry_nights": [
        "('P-old', '2026-01-31 22:00+00', 'o2ring', '2026-01-31', 4, true, 94.0, 3.5)",
        "('P-old', '2026-02-01 22:00+00', 'o2ring', '2026-02-01', 4, true, 93.0, 7.5)",
    ],
    "niv_nights": ["('P-old', '2025-12-31', 'device', 7.5, 14.0, 2.0)",
                   "('P-old', '2026-01-01', 'device', 6.0, 30.0, 9.0)"],
    "alsfrs_r": ["('P-old', '2026-02-10 09:00+00', 'clinic', '{4,4,4,3,3,3,3,3,3,2,3,4}', 39)"],
    "findings": ["('P-old', 'NS-OXI88', '2026-02-02 07:00+00', 'open', '0.1.0', 'NIV_START', 'high', '{}', 'a', 'c')"],
}
COLUMNS = {
    "spirometry_sessions": "(patient_id, taken_at, source, posture, fvc_l, fvc_pct_pred)",
    "oximetry_nights": "(patient_id, start_at, source, night_date, interval_s, valid, mean_spo2, t90_pct)",
    "niv_nights": "(patient_id, night_date, source, usage_hours, leak_p95_lpm, ahi)",
    "alsfrs_r": "(patient_id, taken_at, source, items, total)",
    "findings": "(patient_id, rule_id, at, state, rule_version, category, severity, evidence, action, citation)",
}
COLUMNS_BEFORE: dict[str, list[str]] = {}
"""Each table's columns before `migrate`, filled by `converted`."""


@pytest.fixture(scope="module")
def converted(stack: None) -> Iterator[tuple[str, dict[str, list[tuple]]]]:
    """A database at the schema before 0003 with rows in it, then `migrate` (0003) applied."""
    name = f"respmon_test_conv_{uuid.uuid4().hex[:8]}"
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
            for version, sql in available_migrations():
                if version >= "0003":
                    break
                conn.execute(sql)  # type: ignore[arg-type]
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            for table, rows in OLD_ROWS.items():
                conn.execute(f"INSERT INTO {table} {COLUMNS[table]} VALUES {', '.join(rows)}")  # type: ignore[arg-type]
            before = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in OLD_ROWS}  # type: ignore[arg-type]
            COLUMNS_BEFORE.update({t: [c.name for c in conn.execute(f"SELECT * FROM {t} LIMIT 0").description or ()]  # type: ignore[arg-type]
                                   for t in OLD_ROWS})
        applied = migrate(url)
        assert "0003_timeseries_storage" in applied
        yield url, before
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def conv(converted: tuple[str, dict[str, list[tuple]]]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(converted[0], autocommit=True) as conn:
        if timescale.storage_info(conn).engine != "postgresql":
            pytest.skip("TimescaleDB server: hypertables instead of native partitions")
        yield conn


def test_conversion_keeps_every_row(converted: tuple[str, dict[str, list[tuple]]], conv: psycopg.Connection) -> None:
    """Every row and value there was before; later migrations may add columns (compared: the old ones)."""
    for table, rows in converted[1].items():
        old = ", ".join(COLUMNS_BEFORE[table])
        assert sorted(conv.execute(f"SELECT {old} FROM {table}").fetchall()) == rows, table  # type: ignore[arg-type]


def test_every_timeseries_table_is_partitioned_by_its_time_column(conv: psycopg.Connection) -> None:
    for table, column in timescale.TIMESERIES_TABLES.items():
        key = conv.execute("SELECT pg_get_partkeydef(%s::regclass)", (table,)).fetchone()[0]
        assert key == f"RANGE ({column})"
        pk = conv.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass"
                          " AND contype = 'p'", (table,)).fetchone()[0]
        assert column in pk
        assert f"{table}_default" in timescale.partitions(conv, table)
    assert conv.execute("SELECT to_regclass('oximetry_nights_0001')").fetchone()[0] is None


def test_old_rows_sit_in_their_month(conv: psycopg.Connection) -> None:
    where = dict(conv.execute("SELECT source, tableoid::regclass::text FROM spirometry_sessions").fetchall())
    assert where == {"clinic": "spirometry_sessions_p201903", "device": "spirometry_sessions_p202601"}
    nights = conv.execute("SELECT night_date, tableoid::regclass::text FROM niv_nights ORDER BY 1").fetchall()
    assert [p for _, p in nights] == ["niv_nights_p202512", "niv_nights_p202601"]
    # months are UTC: 2026-01-31 22:00 UTC is January even where it is already February locally
    months = conv.execute("SELECT tableoid::regclass::text FROM oximetry_nights ORDER BY start_at").fetchall()
    assert [m for (m,) in months] == ["oximetry_nights_p202601", "oximetry_nights_p202602"]
    assert conv.execute("SELECT count(*) FROM oximetry_nights_default").fetchone()[0] == 0


def test_partitions_exist_ahead(conv: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    for ahead in range(timescale.MONTHS_AHEAD + 1):
        y, m = divmod(now.month - 1 + ahead, 12)
        name = f"findings_p{now.year + y}{m + 1:02d}"
        assert name in timescale.partitions(conv, "findings")


def test_row_of_a_month_without_partition_is_kept_then_moved(conv: psycopg.Connection) -> None:
    conv.execute("INSERT INTO niv_nights (patient_id, night_date, source, usage_hours) VALUES"
                 " ('P-far', '2031-05-17', 'device', 5.0)")
    assert conv.execute("SELECT tableoid::regclass::text FROM niv_nights WHERE patient_id = 'P-far'"
                        ).fetchone()[0] == "niv_nights_default"
    made = timescale.ensure_partitions(conv)
    assert "niv_nights_p203105" in made
    row = conv.execute("SELECT tableoid::regclass::text, usage_hours FROM niv_nights WHERE patient_id = 'P-far'"
                       ).fetchone()
    assert row == ("niv_nights_p203105", 5.0)
    assert timescale.ensure_partitions(conv) == []  # nothing left to do


def test_upsert_on_natural_key_works_on_partitioned_table(conv: psycopg.Connection) -> None:
    sql = ("INSERT INTO oximetry_nights (patient_id, start_at, source, night_date, interval_s, valid, t90_pct)"
           " VALUES ('P-up', '2026-02-03 22:00+00', 'o2ring', '2026-02-03', 4, true, %s)"
           " ON CONFLICT (patient_id, start_at, source) DO UPDATE SET t90_pct = EXCLUDED.t90_pct")
    conv.execute(sql, (1.0,))
    conv.execute(sql, (2.0,))
    assert conv.execute("SELECT t90_pct FROM oximetry_nights WHERE patient_id = 'P-up'").fetchall() == [(2.0,)]


def test_migrate_again_changes_nothing(converted: tuple[str, dict[str, list[tuple]]]) -> None:
    assert migrate(converted[0]) == []


def test_storage_decision_is_recorded(converted: tuple[str, dict[str, list[tuple]]]) -> None:
    with psycopg.connect(converted[0]) as conn:
        info = timescale.storage_info(conn)
        available = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
                                 ).fetchone()[0]
    if not available:
        assert info == timescale.StorageInfo("postgresql", None, "materialized_view")
    else:
        assert info.engine in ("timescaledb", "postgresql")


def test_raw_upload_bodies_are_lz4_compressed_and_read_back_intact(db: psycopg.Connection) -> None:
    """0004: the archive column uses lz4 (this server has it); a stored body comes back byte for byte."""
    assert db.execute("SELECT attcompression FROM pg_attribute WHERE attrelid = 'raw_uploads'::regclass"
                      " AND attname = 'body'").fetchone()[0] == "l"
    body = ("Time,Oxygen Level,Pulse Rate,Motion,O2 Reminder,PR Reminder\n"
            + "".join(f"22:{m:02d}:{s:02d} Mar 01 2026,9{s % 7},6{s % 9},0,0,0\n" for m in range(60) for s in range(60))
            ).encode()
    db.execute("INSERT INTO devices (device_id, patient_id, token_sha256)"
               " VALUES ('dev-lz4', 'P-lz4', 'sha-of-no-token-lz4') ON CONFLICT DO NOTHING")
    db.execute("INSERT INTO raw_uploads (upload_id, device_id, received_at, sha256, size_bytes, body)"
               " VALUES (gen_random_uuid(), 'dev-lz4', now(), 'sha-lz4', %s, %s)", (len(body), body))
    stored, method = db.execute("SELECT body, pg_column_compression(body) FROM raw_uploads"
                                " WHERE device_id = 'dev-lz4'").fetchone()
    assert bytes(stored) == body and method == "lz4"
