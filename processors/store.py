"""Idempotent PostgreSQL writes of canonical records and their per-night metrics.

Every write is an upsert on the record's natural key, so a worker that replays a partition after
a crash rewrites the same rows instead of adding new ones.
"""

from dataclasses import asdict
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from processors.metrics import niv as niv_metrics
from processors.metrics import oximetry as oxi_metrics
from processors.metrics import spirometry as spiro_metrics
from schemas import AlsfrsR, Envelope, Finding, NivNight, OximetryNight, SpirometrySession


def _metrics_dict(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else asdict(obj)


async def _upsert(conn: AsyncConnection, table: str, key: tuple[str, ...], row: dict[str, Any]) -> None:
    cols = list(row)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in key)
    sql = (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}, stored_at = now()"
    )
    await conn.execute(sql.encode(), list(row.values()))


async def store_record(conn: AsyncConnection, env: Envelope) -> None:
    record = env.record
    base = {"patient_id": record.patient_id, "source": record.source, "upload_id": env.upload_id}
    if isinstance(record, SpirometrySession):
        m = _metrics_dict(spiro_metrics.session_metrics(record))
        row = base | {k: m.get(k) for k in (
            "fvc_l", "fvc_pct_pred", "fvc_pct_pred_source", "fev1_l", "svc_l", "mip_cmh2o", "mep_cmh2o",
            "snip_cmh2o", "pcf_lpm", "pcf_assisted", "grade")} | {"taken_at": record.taken_at,
                                                                  "posture": record.posture}
        await _upsert(conn, "spirometry_sessions", ("patient_id", "taken_at", "source"), row)
    elif isinstance(record, OximetryNight):
        m = _metrics_dict(oxi_metrics.night_metrics(record))
        row = base | {k: m.get(k) for k in (
            "night_date", "valid", "invalid_reason", "recording_min", "vrt_min", "mean_spo2", "min_spo2",
            "t90_pct", "t90_min", "t88_pct", "t88_min", "longest_le88_min", "odi3", "odi4", "mean_pulse")}
        row |= {"start_at": record.start, "interval_s": record.interval_s, "on_niv": record.on_niv}
        await _upsert(conn, "oximetry_nights", ("patient_id", "start_at", "source"), row)
    elif isinstance(record, NivNight):
        m = _metrics_dict(niv_metrics.night_metrics(record))
        row = base | {k: m.get(k) for k in (
            "night_date", "usage_hours", "leak_p95_lpm", "leak_kind", "ahi", "resp_rate", "tidal_volume_ml",
            "minute_vent_lpm", "spo2_mean", "spo2_t90_pct", "pct_spont_triggered")}
        await _upsert(conn, "niv_nights", ("patient_id", "night_date", "source"), row)
    elif isinstance(record, AlsfrsR):
        row = base | {"taken_at": record.taken_at, "items": record.items, "total": record.total}
        await _upsert(conn, "alsfrs_r", ("patient_id", "taken_at", "source"), row)


async def store_finding(conn: AsyncConnection, finding: Finding) -> None:
    """Findings are facts about a moment: the same finding replayed is the same row."""
    await conn.execute(
        "INSERT INTO findings (patient_id, rule_id, at, state, rule_version, category, severity, evidence,"
        " action, citation, upload_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (patient_id, rule_id, at, state) DO NOTHING",
        (finding.patient_id, finding.rule_id, finding.at, finding.state, finding.rule_version, finding.category,
         finding.severity, Jsonb(finding.evidence), finding.action, finding.citation, finding.upload_id),
    )
