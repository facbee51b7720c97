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

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import date
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from processors.metrics import niv as niv_metrics
from processors.metrics import oximetry as oxi_metrics
from processors.metrics import spirometry as spiro_metrics
from processors.metrics.once import once
from respmon.core import timescale
from respmon.core.signals import CODEC, encode_signal, minute_aggregates
from schemas import AlsfrsR, Envelope, Finding, NivNight, OximetryNight, SpirometrySession

# --- rows of each record kind ----------------------------------------------------------------

KEYS: dict[str, tuple[str, ...]] = {
    "spirometry_sessions": ("patient_id", "taken_at", "source"),
    "oximetry_nights": ("patient_id", "start_at", "source"),
    "oximetry_signals": ("patient_id", "start_at", "source"),
    "niv_nights": ("patient_id", "night_date", "source"),
    "alsfrs_r": ("patient_id", "taken_at", "source"),
}
COPY_THRESHOLD = 32
"""From this many rows of one table in a batch on, `store_records` uses COPY + INSERT ... SELECT."""


def _metrics_dict(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else asdict(obj)


def signal_row(record: OximetryNight, upload_id: str | None) -> dict[str, Any]:
    """The `oximetry_signals` row of a night: raw samples and per-minute arrays."""
    spo2, pulse = once(oxi_metrics.samples, record)  # the arrays the night's metrics were computed on
    s, p = minute_aggregates(spo2, record.interval_s), minute_aggregates(pulse, record.interval_s)
    return {
        "patient_id": record.patient_id, "start_at": record.start, "source": record.source,
        "interval_s": record.interval_s, "n_samples": len(record.spo2), "codec": CODEC,
        "spo2": encode_signal(spo2), "pulse": encode_signal(pulse),
        "motion": None if record.motion is None else encode_signal(record.motion),
        "spo2_min_1m": int_array(s["min"]), "spo2_mean_1m": int_array(s["mean"]),
        "spo2_max_1m": int_array(s["max"]), "pulse_mean_1m": int_array(p["mean"]), "upload_id": upload_id,
    }


def int_array(values: list[int | None]) -> str:
    """PostgreSQL's text form of an int[] (`{1,NULL,3}`), which the server casts for the column: psycopg's
    element-by-element list dumper was a visible share of the worker's CPU for 4 x 480 minutes a night."""
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def record_rows(env: Envelope) -> list[tuple[str, dict[str, Any]]]:
    """(table, row) pairs an envelope writes, in write order."""
    record = env.record
    base = {"patient_id": record.patient_id, "source": record.source, "upload_id": env.upload_id}
    if isinstance(record, SpirometrySession):
        m = _metrics_dict(spiro_metrics.session_metrics(record))
        row = base | {k: m.get(k) for k in (
            "fvc_l", "fvc_pct_pred", "fvc_pct_pred_source", "fev1_l", "svc_l", "mip_cmh2o", "mep_cmh2o",
            "snip_cmh2o", "pcf_lpm", "pcf_assisted", "grade")} | {"taken_at": record.taken_at,
                                                                  "posture": record.posture}
        return [("spirometry_sessions", row)]
    if isinstance(record, OximetryNight):
        m = _metrics_dict(once(oxi_metrics.night_metrics, record))
        row = base | {k: m.get(k) for k in (
            "night_date", "valid", "invalid_reason", "recording_min", "vrt_min", "mean_spo2", "min_spo2",
            "t90_pct", "t90_min", "t88_pct", "t88_min", "longest_le88_min", "odi3", "odi4", "mean_pulse")}
        row |= {"start_at": record.start, "interval_s": record.interval_s, "on_niv": record.on_niv}
        return [("oximetry_nights", row), ("oximetry_signals", signal_row(record, env.upload_id))]
    if isinstance(record, NivNight):
        m = _metrics_dict(once(niv_metrics.night_metrics, record))
        row = base | {k: m.get(k) for k in (
            "night_date", "usage_hours", "leak_p95_lpm", "leak_kind", "ahi", "resp_rate", "tidal_volume_ml",
            "minute_vent_lpm", "spo2_mean", "spo2_t90_pct", "pct_spont_triggered")}
        return [("niv_nights", row)]
    if isinstance(record, AlsfrsR):
        return [("alsfrs_r", base | {"taken_at": record.taken_at, "items": record.items, "total": record.total})]
    return []


def _on_conflict(table: str, cols: Sequence[str]) -> str:
    """`ON CONFLICT (natural key) DO UPDATE ...` of an upsert into `table` of columns `cols`."""
    key = KEYS[table]
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

    Rows sharing a natural key are collapsed to the last one (as if written one after the other).
    Returns the number of rows written (attempted) over all tables."""
    by_table: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for env in envelopes:
        for table, row in record_rows(env):
            by_table.setdefault(table, {})[tuple(row[k] for k in KEYS[table])] = row
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


async def store_finding(conn: AsyncConnection, finding: Finding) -> None:
    """Findings are facts about a moment: the same finding replayed is the same row."""
    await conn.execute(
        "INSERT INTO findings (patient_id, rule_id, at, state, rule_version, category, severity, evidence,"
        " action, citation, upload_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (patient_id, rule_id, at, state) DO NOTHING",
        (finding.patient_id, finding.rule_id, finding.at, finding.state, finding.rule_version, finding.category,
         finding.severity, Jsonb(finding.evidence), finding.action, finding.citation, finding.upload_id),
    )


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
