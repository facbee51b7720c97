"""Idempotent PostgreSQL writes of canonical records, their per-night metrics and oximetry signals.

Every write is an upsert on the record's natural key (which holds the time column, so it works on
partitioned tables and TimescaleDB hypertables alike): a worker that replays a partition after a
crash rewrites the same rows instead of adding new ones.

- `store_record(conn, env)`: one event, as the faust agent calls it (inside its transaction).
- `store_records(conn, envelopes)`: a batch (an STR.edf upload is ~100 NIV nights): rows are
  de-duplicated on their key, then written with one pipelined `executemany` per table, or for
  large batches COPY into a session temp table + one `INSERT ... SELECT ... ON CONFLICT`.
- An oximetry night's 1 Hz SpO2/pulse go to `oximetry_signals` in the same transaction as its
  `oximetry_nights` row: raw samples in codec `respmon-sig/1` plus per-minute min/mean/max arrays
  (the layout chosen by `bench/storage/run.py`, see the README "Storage").
- `ensure_partitions(conn)` and `refresh_daily_summary(conn)` are the maintenance calls for worker
  timers (async twins of `respmon.core.timescale`).
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any

import numpy as np
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from processors.metrics import oximetry as oxi_metrics
from processors.metrics.kinds import METRICS
from respmon.core import timescale
from respmon.core.signals import CODEC, encode_signal, minute_tenths
from schemas import Envelope, Finding, OximetryNight
from schemas.kinds import RECORD_KINDS, Kind, kind_of
from schemas.niv import NOT_SAID, merged
from schemas.samples import series_array

# --- rows of each record kind ----------------------------------------------------------------

KEYS: dict[str, tuple[str, ...]] = {
    table: kind.key for kind in RECORD_KINDS for table in (kind.table, *kind.side_tables)}
"""Every record table and its natural key (``schemas.kinds``), in write order: a kind's table before its
side tables (a night before its signals), the same lock order in every worker."""
COPY_THRESHOLD = 32
"""From this many rows of one table in a batch on, `store_records` uses COPY + INSERT ... SELECT."""


def table_columns(kind: Kind) -> tuple[tuple[str, str, bool], ...]:
    """(column, attribute, from the metrics?) of a kind's table row: the record's fields, then its metrics'
    fields, then its stored properties, less what the kind declares unstored (a metric wins over a record
    field of the same name: the metrics say the value stored, a % predicted computed from demographics)."""
    metrics = METRICS.get(kind)
    from_metrics = [f for f in (metrics.fields if metrics else ()) if f not in kind.unstored]
    fields = [f for f in kind.model.model_fields if f not in kind.unstored]
    return (*((kind.column(f), f, f in from_metrics) for f in fields),
            *((kind.column(f), f, True) for f in from_metrics if f not in fields),
            *((f, f, False) for f in kind.computed))


_COLUMNS = {kind: table_columns(kind) for kind in RECORD_KINDS}


def signal_row(record: OximetryNight, upload_id: str | None) -> dict[str, Any]:
    """The `oximetry_signals` row of a night: raw samples and per-minute arrays."""
    spo2, pulse = oxi_metrics.samples(record)  # the record's own arrays, as the metrics read them
    s, p = minute_tenths(spo2, record.interval_s), minute_tenths(pulse, record.interval_s)
    return {
        "patient_id": record.patient_id, "start_at": record.start, "source": record.source,
        "interval_s": record.interval_s, "n_samples": len(record.spo2), "codec": CODEC,
        "spo2": encode_signal(spo2), "pulse": encode_signal(pulse),
        "motion": None if record.motion is None else encode_signal(series_array(record.motion)),
        "spo2_min_1m": tenths_array(s.min, s.empty), "spo2_mean_1m": tenths_array(s.mean, s.empty),
        "spo2_max_1m": tenths_array(s.max, s.empty), "pulse_mean_1m": tenths_array(p.mean, p.empty),
        "upload_id": upload_id,
    }


SIDE_ROWS: dict[str, Callable[[Any, str | None], dict[str, Any]]] = {"oximetry_signals": signal_row}
"""The row builder of each side table (``schemas.kinds.Kind.side_tables``)."""


_DIGITS = np.array([str(i) for i in range(32768)], dtype=object)
"""The text of every tenths value a signal can hold (0-3276.7 -> 0-32767): looked up, not formatted."""


def tenths_array(values: np.ndarray, empty: np.ndarray) -> str:
    """PostgreSQL's text form of an int[] (`{1,NULL,3}`) of per-minute tenths (``signals.MinuteTenths``),
    NULL where `empty`, which the server casts for the column: psycopg's element-by-element list dumper,
    then a generator of Python ints, then `str` of each were a visible share of the worker's CPU for
    4 x 480 minutes a night; the strings now come from a table (`_DIGITS`)."""
    if values.size and (values.min() < 0 or values.max() >= len(_DIGITS)):
        text = list(map(str, values.tolist()))  # outside the table (not from a signal): formatted
    else:
        text = _DIGITS[values].tolist()
    for minute in np.flatnonzero(empty).tolist():
        text[minute] = "NULL"
    return "{" + ",".join(text) + "}"


def record_rows(env: Envelope) -> list[tuple[str, dict[str, Any]]]:
    """(table, row) pairs an envelope writes, in write order: the record's table, then its side tables."""
    record = env.record
    kind = kind_of(record)
    metrics = METRICS.get(kind)
    m = metrics.of(record) if metrics else None
    row = {column: getattr(m if from_metrics else record, attr) for column, attr, from_metrics in _COLUMNS[kind]}
    row["upload_id"] = env.upload_id
    return [(kind.table, row), *((table, SIDE_ROWS[table](record, env.upload_id)) for table in kind.side_tables)]


MERGED = frozenset(kind.table for kind in RECORD_KINDS if kind.merges)
"""Tables whose rows are parts of one thing (a NIV night's day summary and session values), merged."""


def _merged_value(table: str, column: str) -> str:
    """SQL twin of ``schemas.niv.merged`` for one column: the preferred part's value (the stored one if it
    is the day summary and the new one holds session values, else the new one), else the other's; so a
    part never clears what another part gave, and both arrival orders end in the same row."""
    if column == "basis":
        return (f"CASE WHEN 'day_summary' IN ({table}.basis, EXCLUDED.basis) THEN 'day_summary'"
                f" ELSE EXCLUDED.basis END")
    old, new = f"{table}.{column}", f"EXCLUDED.{column}"
    not_said = NOT_SAID.get(column)
    if not_said is not None:
        old, new = f"NULLIF({old}, '{not_said}')", f"NULLIF({new}, '{not_said}')"
    fallback = f", '{not_said}'" if not_said is not None else ""
    return (f"CASE WHEN {table}.basis = 'day_summary' AND EXCLUDED.basis = 'sessions'"
            f" THEN COALESCE({old}, {new}{fallback}) ELSE COALESCE({new}, {old}{fallback}) END")


def _on_conflict(table: str, cols: Sequence[str]) -> str:
    """`ON CONFLICT (natural key) DO UPDATE ...` of an upsert into `table` of columns `cols`."""
    key = KEYS[table]
    if table in MERGED:
        updates = ", ".join(f"{c} = {_merged_value(table, c)}" for c in cols if c not in key)
        return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}, stored_at = now()"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in key)
    action = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}, stored_at = now()"
    if table == "oximetry_signals":
        # A replayed night carries the same samples: skip the rewrite (no new row version, no TOAST churn).
        return (f"{action} WHERE (oximetry_signals.spo2, oximetry_signals.pulse,"
                f" oximetry_signals.interval_s, oximetry_signals.motion) IS DISTINCT FROM"
                f" (EXCLUDED.spo2, EXCLUDED.pulse, EXCLUDED.interval_s, EXCLUDED.motion)")
    return action


def _upsert_sql(table: str, cols: Sequence[str]) -> bytes:
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
            f" {_on_conflict(table, cols)}").encode()


async def _upsert(conn: AsyncConnection, table: str, row: dict[str, Any]) -> None:
    await conn.execute(_upsert_sql(table, list(row)), list(row.values()))


async def store_record(conn: AsyncConnection, env: Envelope) -> None:
    """Upsert one envelope's rows (the record, and for oximetry its signals) on the caller's transaction."""
    for table, row in record_rows(env):
        await _upsert(conn, table, row)


async def store_records(conn: AsyncConnection, envelopes: Iterable[Envelope]) -> int:
    """Upsert many envelopes in one transaction (a savepoint if the caller has one open).

    Rows sharing a natural key are collapsed to the last one, or merged for tables of parts (``MERGED``),
    as if written one after the other. Returns the number of rows written (attempted) over all tables."""
    by_table: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for env in envelopes:
        for table, row in record_rows(env):
            keyed = by_table.setdefault(table, {})
            key = tuple(row[k] for k in KEYS[table])
            keyed[key] = merged(keyed[key], row) if table in MERGED and key in keyed else row
    written = 0
    async with conn.transaction():
        for table in KEYS:  # fixed order: nights before their signals, same lock order in every worker
            rows = list(by_table.get(table, {}).values())
            if not rows:
                continue
            cols = list(rows[0])
            values = [[r[c] for c in cols] for r in rows]
            if len(rows) >= COPY_THRESHOLD:
                await _copy_upsert(conn, table, cols, values)
            else:
                async with conn.cursor() as cur:
                    await cur.executemany(_upsert_sql(table, cols), values)
            written += len(rows)
    return written


async def _copy_upsert(conn: AsyncConnection, table: str, cols: list[str], values: list[list[Any]]) -> None:
    """COPY into a per-session temp table (rows deleted at commit), then one INSERT ... ON CONFLICT."""
    stage = f"_stage_{table}"
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS)"
                       " ON COMMIT DELETE ROWS".encode())
    await conn.execute(f"TRUNCATE {stage}".encode())
    collist = ", ".join(cols)
    async with conn.cursor() as cur:
        async with cur.copy(f"COPY {stage} ({collist}) FROM STDIN".encode()) as copy:
            for v in values:
                await copy.write_row(v)
        await cur.execute(f"INSERT INTO {table} ({collist}) SELECT {collist} FROM {stage}"
                          f" {_on_conflict(table, cols)}".encode())


_FINDING = (
    b"INSERT INTO findings (patient_id, rule_id, at, state, rule_version, category, severity, evidence,"
    b" action, citation, upload_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    b" ON CONFLICT (patient_id, rule_id, at, state) DO NOTHING")


def _finding_row(finding: Finding) -> tuple[Any, ...]:
    return (finding.patient_id, finding.rule_id, finding.at, finding.state, finding.rule_version, finding.category,
            finding.severity, Jsonb(finding.evidence), finding.action, finding.citation, finding.upload_id)


async def store_finding(conn: AsyncConnection, finding: Finding) -> None:
    """Findings are facts about a moment: the same finding replayed is the same row."""
    await conn.execute(_FINDING, _finding_row(finding))


async def store_findings(conn: AsyncConnection, findings: Sequence[Finding]) -> None:
    """`store_finding` of each, in order, in one pipelined `executemany` (one round trip for a batch)."""
    if len(findings) == 1:
        await store_finding(conn, findings[0])
    elif findings:
        async with conn.cursor() as cur:
            await cur.executemany(_FINDING, [_finding_row(f) for f in findings])


# --- maintenance for worker timers -------------------------------------------------------------

async def ensure_partitions(conn: AsyncConnection, months_ahead: int = timescale.MONTHS_AHEAD) -> list[str]:
    """Create the monthly partitions of the next `months_ahead` months (and of any month that has
    rows waiting in a DEFAULT partition); returns the partitions created. A no-op on TimescaleDB
    (chunks are created on insert). Safe to call often and from several workers at once."""
    async with conn.transaction():
        cur = await conn.execute(timescale.ENSURE_SQL, (months_ahead,))
        return [r[0] for r in await cur.fetchall()]


async def refresh_daily_summary(conn: AsyncConnection, since: date | None = None) -> str:
    """Bring `daily_summary` up to date; returns how ('materialized_view' or 'continuous_aggregate').

    Plain PostgreSQL: `REFRESH MATERIALIZED VIEW CONCURRENTLY` (readers are not blocked).
    TimescaleDB: `refresh_continuous_aggregate` of each daily aggregate from `since` (all if None);
    this needs autocommit, so the connection is switched for the call and restored after."""
    async with conn.transaction():
        info = await (await conn.execute(timescale.INFO_SQL)).fetchone()
    kind = info[2] if info else "materialized_view"
    if kind != "continuous_aggregate":
        async with conn.transaction():
            await conn.execute(timescale.REFRESH_MV_SQL)
        return kind
    was = conn.autocommit
    await conn.set_autocommit(True)
    try:
        for cagg in timescale.CONTINUOUS_AGGREGATES:
            await conn.execute(timescale.refresh_cagg_sql(cagg).encode(), (since,))
    finally:
        await conn.set_autocommit(was)
    return kind
