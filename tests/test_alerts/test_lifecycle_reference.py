"""The batched alert lifecycle (issue 17: one look-up query per batch, the alert and its audit rows in one
statement, the outbox rows of several routes in one pipeline) writes exactly the rows the one-query-per-step
lifecycle wrote (`lifecycle_reference.py`) and sends the same notifications: random batches of findings,
replays, acknowledgements and backfill announcements are applied to twin patients, one through each."""

import asyncio
import random
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from alerts import lifecycle
from alerts.careteams import assign, set_route
from alerts.routing import Route
from respmon.core.settings import Settings
from schemas import Finding
from tests.conftest import namespace
from tests.test_alerts import lifecycle_reference

pytestmark = pytest.mark.stack
NOW = datetime.now(UTC).replace(microsecond=0)
RULES = {"NIV_START": ("NS-FVC50", "NS-SNIP40", "NS-OXI88"), "NIV_ESCALATE": ("NE-AHI", "NE-DESAT")}
SEVERITIES = ("info", "warn", "high", "urgent")
STAMPS = {"opened_at", "updated_at", "notified_at", "resolved_at", "escalated_at", "acknowledged_at", "at",
          "created_at", "next_attempt_at", "stored_at"}
"""Columns set by now(): the twins' transactions differ in time, so only whether they are set is compared."""


@pytest.fixture(scope="module")
def settings(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A database of this module's own; a webhook route and a FHIR route (the audit row ids reach its outbox)."""
    with namespace(tmp_path_factory.mktemp("lifecycle-ref")) as env:
        routing = tmp_path_factory.mktemp("routing") / "routing.yaml"
        routing.write_text("routes: [{name: team, channel: webhook, target: 'http://127.0.0.1:9/hook'}]\n")
        yield Settings(database_url=env["RESPMON_DATABASE_URL"], routing_file=routing, notify_horizon_days=14,
                       fhir_server_url="http://127.0.0.1:9/fhir")


def finding(patient: str, category: str, rule: str, severity: str, state: str, at: datetime) -> Finding:
    evidence: dict[str, Any] = {"change": "resolved" if state == "resolved" else "opened",
                                "inputs": {"latest(x)": {"value": 1.5, "at": at.isoformat()}}}
    if state == "resolved" and rule.endswith("0"):
        evidence["resolution"] = "no_longer_applies"
    return Finding.model_validate({"patient_id": patient, "rule_id": rule, "rule_version": "t", "category": category,
                                   "severity": severity, "state": state, "at": at, "evidence": evidence,
                                   "action": f"act on {rule}", "citation": f"cite {rule}",
                                   "received_at": at + timedelta(hours=1)})


Row = tuple[int, str, str, str, str, datetime]
"""(patient number, category, rule, severity, state, at) of one finding."""
Batch = tuple[list[Row], dict[int, datetime], list[int]]


def scenario(seed: int, patients: int) -> list[Batch]:
    """Batches of (patient number, category, rule, severity, state, at), the `latest` of each batch and the
    patients whose active alerts the team acknowledges after it. Time moves on per patient, from a year ago
    (backfill, kept quiet) to now; some batches are taken again."""
    rng = random.Random(seed)
    clock = {p: NOW - timedelta(days=rng.choice((400, 60, 20, 10))) for p in range(patients)}
    batches: list[Batch] = []
    for _ in range(12):
        if batches and rng.random() < 0.15:
            batches.append(batches[-1])  # a batch taken again after its commit
            continue
        rows: list[Row] = []
        for p in rng.sample(range(patients), rng.randint(1, patients)):
            for _ in range(rng.randint(1, 3)):  # evaluations of this patient in the batch
                clock[p] = min(NOW, clock[p] + timedelta(days=rng.choice((0, 1, 1, 2, 30))))
                for _ in range(rng.randint(1, 3)):
                    category = rng.choice(sorted(RULES))
                    rows.append((p, category, rng.choice(RULES[category]), rng.choice(SEVERITIES),
                                 rng.choice(("open", "open", "resolved")), clock[p]))
        latest = {p: clock[p] for p in range(patients) if rng.random() < 0.3}
        acked = [p for p in range(patients) if rng.random() < 0.2]
        batches.append((rows, latest, acked))
    return batches


def apply(module: ModuleType, settings: Settings, findings: list[Finding], latest: Mapping[str, datetime]
          ) -> list[Any]:
    async def run() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
            return list(await module.apply_findings(conn, findings, settings, latest=latest, now=NOW))

    return asyncio.run(run())


def rows(db: psycopg.Connection[Any], prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The alerts, audit rows and outbox rows of the patients named `prefix...`, with ids, patient names and
    now() stamps made comparable between the twins."""
    cur = db.cursor(row_factory=dict_row)
    alerts = cur.execute("SELECT * FROM alerts WHERE patient_id LIKE %s ORDER BY alert_id", (prefix + "%",)).fetchall()
    ids = {a["alert_id"]: n for n, a in enumerate(alerts)}
    events = cur.execute("SELECT * FROM alert_events WHERE alert_id = ANY(%s) ORDER BY id", (list(ids),)).fetchall()
    event_ids = {e["id"]: n for n, e in enumerate(events)}
    deliveries = cur.execute("SELECT * FROM deliveries WHERE alert_id = ANY(%s)", (list(ids),)).fetchall()

    def same(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: same(v) for k, v in value.items()}
        if isinstance(value, list):
            return [same(v) for v in value]
        if isinstance(value, str):
            for old, n in sorted(ids.items(), reverse=True):
                value = value.replace(f"alert-{old}-", f"alert-#{n}-").replace(f"/alerts/{old}", f"/alerts/#{n}")
                value = value.replace(f"fhir-{old}-", f"fhir-#{n}-")
            for old, n in sorted(event_ids.items(), reverse=True):
                value = value.replace(f"-{old}-fhir-server", f"-e{n}-fhir-server")
            return value.replace(prefix, "P-")
        return value

    def comparable(row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {k: (v is not None) if k in STAMPS else same(v) for k, v in row.items()}
        for key in ("alert_id", "id"):
            if key in out:
                out[key] = ids[row[key]] if key == "alert_id" else event_ids[row[key]]
        if isinstance(out.get("payload"), dict):
            payload = out["payload"]
            payload["alert_id"] = ids[payload["alert_id"]]
            if "event_id" in payload:
                payload["event_id"] = event_ids[payload["event_id"]]
        out.pop("delivery_id", None)
        return out

    return {"alerts": [comparable(a) for a in alerts], "events": [comparable(e) for e in events],
            "deliveries": sorted((comparable(d) for d in deliveries),
                                 key=lambda d: (d["alert_id"], d["idempotency_key"]))}


@pytest.mark.parametrize("seed", range(6))
def test_batched_lifecycle_writes_what_the_reference_wrote(settings: Settings, seed: int) -> None:
    run = uuid.uuid4().hex[:6]
    twins = {"ref": (lifecycle_reference, f"R{run}-"), "new": (lifecycle, f"N{run}-")}
    with psycopg.connect(settings.database_url, autocommit=True) as db:
        set_route(db, Route(name="ward", channel="webhook", target="http://127.0.0.1:9/ward", team=f"t{run}"), "tests")
        set_route(db, Route(name="pager", channel="email", target="ward@example.org", team=f"t{run}",
                            min_severity="high"), "tests")
        for _, prefix in twins.values():
            for p in range(0, 4, 2):  # half the patients have a care team: three notify routes
                assign(db, f"{prefix}{p}", f"t{run}", "tests")
        for rows_, latest, acked in scenario(seed, 4):
            sent = {}
            for side, (module, prefix) in twins.items():
                findings = [finding(f"{prefix}{p}", category, rule, severity, state, at)
                            for p, category, rule, severity, state, at in rows_]
                notes = apply(module, settings, findings, {f"{prefix}{p}": t for p, t in latest.items()})
                sent[side] = [(n.patient_id.replace(prefix, "P-"), n.category, n.severity, n.change, n.rules, n.at,
                               n.alert_id is None) for n in notes]
                for p in acked:
                    db.execute("UPDATE alerts SET status = 'acknowledged' WHERE patient_id = %s AND status = 'open'",
                               (f"{prefix}{p}",))
            assert sent["new"] == sent["ref"]
        ref, new = rows(db, twins["ref"][1]), rows(db, twins["new"][1])
    assert ref["alerts"] and ref["events"] and ref["deliveries"]
    assert new == ref


def test_a_decision_of_several_events_keeps_their_order(settings: Settings) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    t = NOW - timedelta(days=1)
    group = [finding(patient, "NIV_START", "NS-FVC50", "warn", "open", t),
             finding(patient, "NIV_START", "NS-SNIP40", "high", "open", t),
             finding(patient, "NIV_START", "NS-OXI88", "info", "open", t)]
    apply(lifecycle, settings, group, {})
    with psycopg.connect(settings.database_url) as db:
        actions = db.execute("SELECT e.action, e.note FROM alert_events e JOIN alerts a USING (alert_id)"
                             " WHERE a.patient_id = %s ORDER BY e.id", (patient,)).fetchall()
    assert [a for a, _ in actions] == ["opened", "worsened", "updated"]
    assert [n.split()[0] for _, n in actions] == ["NS-FVC50", "NS-SNIP40", "NS-OXI88"]


def test_reference_is_the_file_before_issue_17() -> None:
    """The reference must stay the old code: its statements are the per-step ones."""
    source = Path(lifecycle_reference.__file__).read_text()
    assert "ORDER BY alert_id DESC LIMIT 1 FOR UPDATE" in source and "WITH alert AS" not in source
