"""Time-series storage helpers: which engine the migrations chose, partition upkeep, daily summary.

Migration `0003_timeseries_storage.sql` records its choice in table `respmon_storage`:
- `engine = 'timescaledb'`: the time-series tables are hypertables (monthly chunks). With the
  Timescale License build it also set compression, retention and continuous aggregates
  (`daily_summary_kind = 'continuous_aggregate'`); the Apache-2 build gets hypertables only.
- `engine = 'postgresql'`: the tables are range-partitioned by month with a DEFAULT partition
  (SQL function `respmon_ensure_partitions(months_ahead)` keeps months ahead created) and
  `daily_summary` is a materialized view (`daily_summary_kind = 'materialized_view'`).

Queries read `daily_summary` the same way in every case. Sync functions here are for the CLI,
tests and scripts; the worker uses the async twins in `processors.store`.
"""

from dataclasses import dataclass
from datetime import date

import psycopg

MONTHS_AHEAD = 3
"""Monthly partitions kept created ahead of the current month."""

TIMESERIES_TABLES: dict[str, str] = {
    "spirometry_sessions": "taken_at",
    "oximetry_nights": "start_at",
    "oximetry_signals": "start_at",
    "niv_nights": "night_date",
    "alsfrs_r": "taken_at",
    "blood_gases": "taken_at",
    "capnography_nights": "start_at",
    "findings": "at",
}
"""Every time-series table and its time (partitioning) column. Written out because the core imports
nothing of the project; tests/test_storage/test_kind_tables.py checks it against `schemas.kinds`."""

CONTINUOUS_AGGREGATES: tuple[str, ...] = (
    "daily_oximetry", "daily_niv", "daily_spirometry", "daily_alsfrs", "daily_findings")
"""TimescaleDB continuous aggregates behind the `daily_summary` view (Timescale License only)."""

INFO_SQL = "SELECT engine, timescaledb_license, daily_summary_kind FROM respmon_storage"
ENSURE_SQL = "SELECT partition FROM respmon_ensure_partitions(%s) AS partition"
REFRESH_MV_SQL = "REFRESH MATERIALIZED VIEW CONCURRENTLY daily_summary"


def refresh_cagg_sql(cagg: str) -> str:
    """CALL for one continuous aggregate; its window start is typed like its bucket (date for NIV)."""
    kind = "date" if cagg == "daily_niv" else "timestamptz"
    return f"CALL refresh_continuous_aggregate('{cagg}'::regclass, %s::{kind}, NULL)"


@dataclass(frozen=True)
class StorageInfo:
    engine: str                      # 'timescaledb' | 'postgresql'
    timescaledb_license: str | None  # 'timescale' | 'apache' | None
    daily_summary_kind: str          # 'continuous_aggregate' | 'materialized_view'


def storage_info(conn: psycopg.Connection) -> StorageInfo:
    row = conn.execute(INFO_SQL).fetchone()
    if row is None:
        raise RuntimeError("respmon_storage is empty: run `respmon migrate`")
    return StorageInfo(*row)


def partitions(conn: psycopg.Connection, table: str) -> list[str]:
    """Names of a partitioned table's partitions (DEFAULT included), in name order."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY 1", (table,)).fetchall()
    return [r[0] for r in rows]


def ensure_partitions(conn: psycopg.Connection, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Create missing monthly partitions (months ahead, and months with rows in DEFAULT)."""
    with conn.transaction():
        return [r[0] for r in conn.execute(ENSURE_SQL, (months_ahead,)).fetchall()]


def refresh_daily_summary(conn: psycopg.Connection, since: date | None = None) -> str:
    """Refresh `daily_summary`; call outside a transaction. Returns the summary kind refreshed."""
    with conn.transaction():
        kind = storage_info(conn).daily_summary_kind
    if kind != "continuous_aggregate":
        with conn.transaction():
            conn.execute(REFRESH_MV_SQL)
        return kind
    was = conn.autocommit
    conn.autocommit = True
    try:
        for cagg in CONTINUOUS_AGGREGATES:
            conn.execute(refresh_cagg_sql(cagg), (since,))
    finally:
        conn.autocommit = was
    return kind
