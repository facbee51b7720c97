"""`store_findings` (one pipelined executemany per batch, issue 17) writes the rows `store_finding` wrote one
by one, keeps the first of a finding replayed, and refuses a bad finding as the single write did."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from processors import store
from schemas import Finding
from tests.test_storage.helpers import run

pytestmark = pytest.mark.stack
COLUMNS = "rule_id, at, state, rule_version, category, severity, evidence, action, citation, upload_id::text"


def finding(patient: str, rule: str, at: datetime, state: str = "open", value: float = 1.0) -> Finding:
    return Finding.model_validate({
        "patient_id": patient, "rule_id": rule, "rule_version": "t", "category": "NIV_START", "severity": "warn",
        "state": state, "at": at, "evidence": {"inputs": {"latest(x)": {"value": value}}, "note": "é ü"},
        "action": "act", "citation": "cite", "upload_id": str(uuid.uuid4())})


def stored(db: psycopg.Connection[Any], patient: str) -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT {COLUMNS} FROM findings WHERE patient_id = %s ORDER BY rule_id, at, state",
                      (patient,)).fetchall()


def test_a_batch_writes_the_rows_of_single_writes(db_url: str, db: psycopg.Connection[Any]) -> None:
    at = datetime(2026, 2, 1, 6, tzinfo=UTC)
    one, many = f"P-{uuid.uuid4().hex[:8]}", f"P-{uuid.uuid4().hex[:8]}"
    batch = [finding(one, "NS-OXI88", at), finding(one, "NS-OXI88", at + timedelta(hours=6), "resolved"),
             finding(one, "NE-AHI", at, value=2.5), finding(one, "NS-OXI88", at, value=9.0)]  # a replay: kept first

    async def single(conn: psycopg.AsyncConnection[Any]) -> None:
        for f in batch:
            await store.store_finding(conn, f)

    run(db_url, single)
    run(db_url, lambda conn: store.store_findings(conn, [f.model_copy(update={"patient_id": many}) for f in batch]))
    assert stored(db, many) == stored(db, one) and len(stored(db, one)) == 3
    run(db_url, lambda conn: store.store_findings(conn, []))
    run(db_url, lambda conn: store.store_findings(conn, [batch[0].model_copy(update={"patient_id": many})]))
    assert len(stored(db, many)) == 3


def test_a_bad_finding_fails_the_batch_as_it_failed_alone(db_url: str, db: psycopg.Connection[Any]) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    bad = finding(patient, "NS-OXI88", datetime(2026, 2, 1, tzinfo=UTC)).model_copy(update={"state": "maybe"})

    async def alone(conn: psycopg.AsyncConnection[Any]) -> None:
        await store.store_finding(conn, bad)

    async def in_a_batch(conn: psycopg.AsyncConnection[Any]) -> None:
        await store.store_findings(conn, [finding(patient, "NE-AHI", bad.at), bad])

    for write in (alone, in_a_batch):
        with pytest.raises(psycopg.errors.CheckViolation):
            run(db_url, write)
    assert stored(db, patient) == []
