"""The alert lifecycle on a real PostgreSQL (issue 12): one alert per patient and category listing its
rules, messages only for news, why an alert closed, backfilled findings kept quiet until they hold now,
migration 0006 of the rows written one alert per rule, and the team API over grouped alerts."""

import asyncio
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.api import create_app
from alerts.decide import Notification
from alerts.escalation import escalate_due
from alerts.lifecycle import apply_finding, apply_findings
from alerts.team import provision
from respmon.core.db import available_migrations, migrate
from respmon.core.settings import Settings
from schemas import Finding
from tests.conftest import ADMIN_URL, namespace

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def db_url(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this module's own: no running worker touches its alerts or outbox."""
    with namespace(tmp_path_factory.mktemp("lifecycle")) as env:
        yield env["RESPMON_DATABASE_URL"]


@pytest.fixture(scope="module")
def settings(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    routing = tmp_path_factory.mktemp("routing") / "routing.yaml"
    routing.write_text("routes: [{name: team, channel: webhook, target: 'http://127.0.0.1:9/hook'}]\n"
                       "escalation: {after_minutes: 0.001, routes: [{name: oncall, channel: webhook,"
                       " target: 'http://127.0.0.1:9/oncall'}]}\n")
    return Settings(database_url=db_url, routing_file=routing, notify_horizon_days=14)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def patient() -> str:
    return f"P-{uuid.uuid4().hex[:8]}"


def finding(patient: str, rule: str, severity: str, at: datetime, *, state: str = "open",
            category: str = "NIV_START", resolution: str | None = None) -> Finding:
    evidence: dict[str, Any] = {"change": "resolved" if state == "resolved" else "opened",
                                "inputs": {"latest(x)": {"value": 1}}}
    if resolution:
        evidence["resolution"] = resolution
    return Finding.model_validate({"patient_id": patient, "rule_id": rule, "rule_version": "t", "category": category,
                                   "severity": severity, "state": state, "at": at, "evidence": evidence,
                                   "action": f"act on {rule}", "citation": f"cite {rule}"})


def apply(settings: Settings, findings: Sequence[Finding], latest: Mapping[str, datetime] | None = None
          ) -> list[Notification]:
    async def run() -> list[Notification]:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
            return await apply_findings(conn, findings, settings, latest=latest, now=NOW)

    return asyncio.run(run())


def alerts_of(db: psycopg.Connection, patient: str) -> list[tuple[Any, ...]]:
    return db.execute("SELECT alert_id, category, status, severity, rule_id, rules, resolution, notified_at"
                      " FROM alerts WHERE patient_id = %s ORDER BY alert_id", (patient,)).fetchall()


def deliveries_of(db: psycopg.Connection, patient: str) -> list[tuple[Any, ...]]:
    return db.execute("SELECT d.kind, d.payload->>'change', d.payload->>'severity', d.payload->'rules'"
                      " FROM deliveries d JOIN alerts a USING (alert_id) WHERE a.patient_id = %s"
                      " ORDER BY d.created_at", (patient,)).fetchall()


def test_rules_of_one_category_share_one_alert_and_one_message(settings: Settings, db: psycopg.Connection,
                                                               patient: str) -> None:
    t = NOW - timedelta(days=3)
    apply(settings, [finding(patient, "NS-FVC50", "high", t), finding(patient, "NS-SNIP40", "high", t)])
    apply(settings, [finding(patient, "NS-OXI88", "warn", t + timedelta(days=1))])  # joins, no message
    [(alert_id, category, status, severity, lead, rules, _, _)] = alerts_of(db, patient)
    assert (category, status, severity, lead) == ("NIV_START", "open", "high", "NS-FVC50")
    assert set(rules) == {"NS-FVC50", "NS-SNIP40", "NS-OXI88"}
    assert deliveries_of(db, patient) == [("notify", "opened", "high", ["NS-FVC50", "NS-SNIP40"])]
    db.execute("UPDATE alerts SET status = 'acknowledged' WHERE alert_id = %s", (alert_id,))
    apply(settings, [finding(patient, "NS-MIP60", "urgent", t + timedelta(days=2))])
    assert alerts_of(db, patient)[0][2:4] == ("open", "urgent")  # worse: to be acknowledged again
    assert deliveries_of(db, patient)[-1] == ("notify", "worsened", "urgent",
                                              ["NS-MIP60", "NS-FVC50", "NS-SNIP40", "NS-OXI88"])
    actions = [a for (a,) in db.execute("SELECT action FROM alert_events WHERE alert_id = %s ORDER BY id",
                                        (alert_id,)).fetchall()]
    assert actions == ["opened", "updated", "updated", "worsened"]


def test_applying_the_same_findings_again_changes_nothing(settings: Settings, db: psycopg.Connection,
                                                          patient: str) -> None:
    batch = [finding(patient, "NS-FVC50", "high", NOW - timedelta(days=2)),
             finding(patient, "NS-FVC50", "high", NOW - timedelta(days=1), state="resolved")]
    apply(settings, batch)
    before = (alerts_of(db, patient), deliveries_of(db, patient),
              db.execute("SELECT count(*) FROM alert_events e JOIN alerts a USING (alert_id)"
                         " WHERE a.patient_id = %s", (patient,)).fetchone())
    apply(settings, batch)  # a batch taken again after its commit
    after = (alerts_of(db, patient), deliveries_of(db, patient),
             db.execute("SELECT count(*) FROM alert_events e JOIN alerts a USING (alert_id)"
                        " WHERE a.patient_id = %s", (patient,)).fetchone())
    assert before == after and len(before[0]) == 1


def test_an_alert_closes_with_the_reason_of_its_last_rule(settings: Settings, db: psycopg.Connection,
                                                          patient: str) -> None:
    t = NOW - timedelta(days=5)
    apply(settings, [finding(patient, "NS-FVC50", "high", t), finding(patient, "NS-OXI88", "warn", t)])
    apply(settings, [finding(patient, "NS-OXI88", "warn", t + timedelta(days=1), state="resolved",
                             resolution="condition_cleared")])
    assert alerts_of(db, patient)[0][2:4] == ("open", "high")
    apply(settings, [finding(patient, "NS-FVC50", "high", t + timedelta(days=2), state="resolved",
                             resolution="no_longer_applies")])
    [(_, _, status, _, _, rules, resolution, _)] = alerts_of(db, patient)
    assert (status, resolution) == ("resolved", "no_longer_applies")
    assert rules["NS-OXI88"]["resolution"] == "condition_cleared"
    assert len(deliveries_of(db, patient)) == 1  # closing sends nothing


def test_backfilled_findings_are_kept_quiet_until_the_alert_holds_now(settings: Settings, db: psycopg.Connection,
                                                                      patient: str) -> None:
    year_ago = NOW - timedelta(days=365)
    assert apply(settings, [finding(patient, "NS-FVC50", "high", year_ago)]) == []
    [(alert_id, _, status, _, _, _, _, notified_at)] = alerts_of(db, patient)
    assert status == "open" and notified_at is None and deliveries_of(db, patient) == []

    async def escalate() -> int:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
            return await escalate_due(conn, settings)

    asyncio.run(escalate())
    assert deliveries_of(db, patient) == []  # never notified, never escalated
    assert apply(settings, [], latest={patient: NOW - timedelta(days=200)}) == []  # the card ends long ago
    [sent] = apply(settings, [], latest={patient: NOW - timedelta(days=1)})  # its data reach the present
    assert (sent.change, sent.severity, sent.alert_id) == ("opened", "high", alert_id)
    assert deliveries_of(db, patient) == [("notify", "opened", "high", ["NS-FVC50"])]
    assert apply(settings, [], latest={patient: NOW}) == []


def test_info_alerts_are_kept_not_sent(settings: Settings, db: psycopg.Connection, patient: str) -> None:
    async def one() -> int | None:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
            return await apply_finding(conn, finding(patient, "NE-AHI", "info", NOW, category="NIV_ESCALATE"),
                                       settings, NOW)

    assert asyncio.run(one()) is not None  # decided as news for a route that wants info...
    assert alerts_of(db, patient)[0][3] == "info"
    assert deliveries_of(db, patient) == []  # ...but no route does (warn and up by default)


def test_team_api_lists_and_shows_a_grouped_alert(settings: Settings, db: psycopg.Connection, patient: str) -> None:
    apply(settings, [finding(patient, "NS-FVC50", "high", NOW), finding(patient, "NS-SNIP40", "high", NOW)])
    from alerts.careteams import assign

    token = provision(db, f"nurse-{patient}", "respiratory")
    assign(db, patient, "respiratory", "tests")  # a member sees the patients of their care teams (issue 14)
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        [listed] = client.get("/v1/alerts", params={"patient_id": patient}, headers=auth).json()["alerts"]
        shown = client.get(f"/v1/alerts/{listed['alert_id']}", headers=auth).json()
        assert set(shown["rules"]) == {"NS-FVC50", "NS-SNIP40"} and set(shown["evidence"]) == set(shown["rules"])
        assert shown["rule_id"] == "NS-FVC50" and shown["history"][0]["action"] == "opened"
        assert client.post(f"/v1/alerts/{listed['alert_id']}/resolve", json={"note": "seen"},
                           headers=auth).status_code == 200
    assert alerts_of(db, patient)[0][6] == "team"


# ------------------------------------------------------------------------------ migration 0006
@pytest.fixture
def legacy_db(stack: None) -> Iterator[str]:
    """A database at migration 0005 (one alert per patient and rule)."""
    name = f"respmon_test_legacy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"postgresql://respmon:respmon@127.0.0.1:15432/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
            for version, sql in available_migrations():
                if version < "0006":
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def legacy_alert(conn: psycopg.Connection, rule: str, category: str, severity: str, status: str) -> int:
    row = conn.execute(
        "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, status, evidence, action,"
        " citation, finding_at) VALUES ('OLD-1', %s, '0.1.0', %s, %s, %s, '{\"values\": {\"x\": 1}}', 'a', 'c',"
        " now() - interval '3 days') RETURNING alert_id", (rule, category, severity, status)).fetchone()
    assert row is not None
    return int(row[0])


def test_migration_merges_active_alerts_per_category_and_keeps_old_rows_readable(legacy_db: str,
                                                                                 tmp_path: Path) -> None:
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        resolved = legacy_alert(conn, "NS-FVC50", "NIV_START", "high", "resolved")
        oxi = legacy_alert(conn, "NS-OXI88", "NIV_START", "warn", "open")
        fvc = legacy_alert(conn, "NS-FVC50", "NIV_START", "high", "acknowledged")
        dq = legacy_alert(conn, "DQ-DEMOG", "DATA_QUALITY", "warn", "open")
    assert "0006_alerts_by_category" in migrate(legacy_db)
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT alert_id, status, resolution, rules, evidence, notified_severity FROM alerts").fetchall()}
        events = conn.execute("SELECT alert_id, actor, action FROM alert_events").fetchall()
    status, resolution, rules, evidence, told = rows[fvc]  # the worst survives, and is open: OXI88 was not acked
    assert (status, resolution, told) == ("open", None, "high")
    assert set(rules) == {"NS-FVC50", "NS-OXI88"} and evidence["NS-OXI88"] == {"values": {"x": 1}}
    assert rows[oxi][:2] == ("resolved", "merged") and (oxi, "migration", "merged") in events
    assert rows[dq][0] == "open" and set(rows[dq][2]) == {"DQ-DEMOG"}
    assert rows[resolved][0] == "resolved" and rows[resolved][2]["NS-FVC50"]["state"] == "resolved"
    settings = Settings(database_url=legacy_db, webhook_url="http://127.0.0.1:9/hook")
    later = datetime.now(UTC)
    assert apply(settings, [finding("OLD-1", "NS-OXI88", "warn", later, state="resolved")]) == []
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        status, rules = conn.execute("SELECT status, rules FROM alerts WHERE alert_id = %s", (fvc,)).fetchone()  # type: ignore[misc]
    assert status == "open" and rules["NS-OXI88"]["state"] == "resolved"
