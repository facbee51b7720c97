"""The tables `respmon migrate` creates agree with the record kinds' declaration (`schemas.kinds`) and
what `processors/store.py` derives from it: every derived column exists, every column is written, every
field a kind leaves unstored is a real field without a column, natural keys are the primary keys, and
`respmon.core.timescale` (which may not import schemas) lists the same time-series tables."""

from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest

from processors import store
from processors.metrics.kinds import METRICS
from respmon.core import timescale
from respmon.queries import records as queries
from schemas.kinds import RECORD_KINDS, Kind
from tests.test_storage.helpers import alsfrs, envelope, night_start, niv, oximetry, run, spirometry

WRITTEN_BY_THE_SERVER = {"stored_at"}
RECORD_TABLES = [(kind, table) for kind in RECORD_KINDS for table in (kind.table, *kind.side_tables)]


def columns(db: psycopg.Connection, table: str) -> set[str]:
    rows = db.execute("SELECT column_name FROM information_schema.columns"
                      " WHERE table_schema = 'public' AND table_name = %s", (table,)).fetchall()
    return {r[0] for r in rows}


def primary_key(db: psycopg.Connection, table: str) -> tuple[str, ...]:
    rows = db.execute("SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(n, ord)"
                      " ON true JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n"
                      " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.ord", (table,)).fetchall()
    return tuple(r[0] for r in rows)


def derived_columns(kind: Kind) -> set[str]:
    return {column for column, _, _ in store.table_columns(kind)} | {"upload_id"}


def test_timescale_lists_the_declared_tables_and_time_columns() -> None:
    declared = {table: kind.time_column for kind, table in RECORD_TABLES}
    assert timescale.TIMESERIES_TABLES == {**declared, "findings": "at"}


def test_store_and_queries_list_the_declared_tables_and_kinds() -> None:
    assert store.KEYS == {table: kind.key for kind, table in RECORD_TABLES}
    assert list(store.KEYS) == [table for _, table in RECORD_TABLES]  # write (lock) order
    assert set(store.SIDE_ROWS) == {t for k in RECORD_KINDS for t in k.side_tables}
    assert queries.KINDS == tuple(k.name for k in RECORD_KINDS)
    assert set(queries._TIMELINE_SQL) <= set(queries.KINDS)  # a stale query fails


def test_unstored_names_are_fields_of_the_record_or_its_metrics() -> None:
    for kind in RECORD_KINDS:
        metrics = METRICS[kind].fields if kind in METRICS else ()
        assert kind.unstored <= {*kind.model.model_fields, *metrics}, kind.name


@pytest.mark.stack
@pytest.mark.parametrize("kind", RECORD_KINDS, ids=lambda k: k.name)
def test_every_derived_column_exists_and_every_column_is_derived(db: psycopg.Connection, kind: Kind) -> None:
    have = columns(db, kind.table) - WRITTEN_BY_THE_SERVER
    derived = derived_columns(kind)
    assert not derived - have, f"{kind.table} lacks columns for {sorted(derived - have)}: add a migration"
    assert not have - derived, f"{kind.table} columns {sorted(have - derived)} are never written"
    unstored = {kind.column(f) for f in kind.unstored}
    assert not unstored & have, f"{kind.table} has columns for fields declared unstored: {sorted(unstored & have)}"


@pytest.mark.stack
@pytest.mark.parametrize(("kind", "table"), RECORD_TABLES, ids=[t for _, t in RECORD_TABLES])
def test_natural_keys_are_the_primary_keys(db: psycopg.Connection, kind: Kind, table: str) -> None:
    assert primary_key(db, table) == kind.key


@pytest.mark.stack
def test_side_table_rows_fill_their_tables(db: psycopg.Connection) -> None:
    night = oximetry("K-side", night_start(date(2026, 4, 1)), hours=0.5)
    assert set(store.signal_row(night, None)) == columns(db, "oximetry_signals") - WRITTEN_BY_THE_SERVER


@pytest.mark.stack
def test_the_migrated_timeseries_registry_agrees(db: psycopg.Connection) -> None:
    rows = db.execute("SELECT table_name, time_column FROM respmon_timeseries").fetchall()
    assert dict(rows) == timescale.TIMESERIES_TABLES


@pytest.mark.stack
def test_a_kind_without_its_own_timeline_query_is_listed_from_its_table(db_url: str, db: psycopg.Connection) -> None:
    """The table query a new kind gets says the same as the hand-written ones, for an instant-dated kind
    and a day-dated one."""
    p, d = "K-timeline", date(2026, 4, 7)
    envs = [envelope(spirometry(p, datetime(2026, 4, 7, 23, 30, tzinfo=UTC), fvc_pct=70.0)),
            envelope(niv(p, d)), envelope(alsfrs(p, datetime(2026, 4, 7, 9, tzinfo=UTC)))]
    run(db_url, lambda conn: store.store_records(conn, envs))
    params = {"p": p, "start": d, "end": d, "lo": datetime(2026, 4, 7, tzinfo=UTC),
              "hi": datetime(2026, 4, 8, tzinfo=UTC)}

    def read(sql: str) -> list[dict[str, Any]]:
        with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute(sql.encode(), params).fetchall()

    for kind in RECORD_KINDS:
        if kind.name in ("spirometry", "niv_night", "alsfrs_r"):
            own, generic = read(queries.timeline_sql(kind)), read(queries.table_timeline_sql(kind))
            assert len(own) == len(generic) == 1, kind.name
            for a, b in zip(own, generic, strict=True):
                assert {k: b[k] for k in a if k in b} == {k: v for k, v in a.items() if k in b}
                assert {"at", "date", "source", "upload_id"} < set(a) & set(b)  # and values
