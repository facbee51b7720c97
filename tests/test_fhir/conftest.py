"""The FHIR API in-process on a real PostgreSQL: a fresh database with a small synthetic cohort in two care
teams (`respmon.testing.cohort`), plus what the cohort writer leaves out (blood gases, a capnography night,
devices, a patient id FHIR cannot spell, an alert whose evidence names the values its rule read), members with
bearer tokens, and the HAPI FHIR validator (`infra/fhir-validator.sh`, fetched and compiled when missing)."""

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from alerts.careteams import assign
from alerts.sessions import set_password
from alerts.team import provision
from ingest.devices import provision as provision_device
from respmon.core.settings import Settings
from respmon.testing.cohort import Cohort, seed
from respmon.web.app import create_app
from tests.conftest import ROOT, namespace

NORTH, SOUTH = "north", "south"
PASSWORD = "correct horse battery staple"
ODD = "NORTH_odd:1"
"""A valid respmon patient id that is not a valid FHIR id ('_' and ':'): served as `h.<sha256>`."""
VALIDATOR = ROOT / ".stack" / "fhir-validator"


@dataclass(frozen=True)
class FhirWorld:
    db_url: str
    settings: Settings
    north: Cohort
    south: Cohort
    tokens: dict[str, str]
    """member id -> bearer token: `nurse-north`, `viewer-north`, `nurse-south`, `admin-north`."""
    evidence_alert: int
    """An alert of NORTH-00000 whose evidence lists its rule's inputs with their windows, as the worker writes it."""
    end: date


def _extra_records(conn: psycopg.Connection[Any], end: date) -> None:
    """Blood gases of every sample type, a valid and an invalid capnography night, devices, the odd id."""
    at = datetime.combine(end, time(9, 30), tzinfo=UTC)
    gases = [("arterial", 47.5, 29.0, 7.38, 71.0), ("venous", 52.0, 30.5, 7.35, None),
             ("capillary", 46.0, 28.0, 7.39, None), ("transcutaneous", 49.0, None, None, None),
             ("end_tidal", 44.0, None, None, None)]
    for i, (sample, pco2, bicarb, ph, po2) in enumerate(gases):
        conn.execute("INSERT INTO blood_gases (patient_id, taken_at, sample, source, pco2_mmhg, bicarbonate_mmol_l,"
                     " ph, po2_mmhg) VALUES (%s, %s, %s, 'clinic', %s, %s, %s, %s)",
                     ("NORTH-00001", at - timedelta(days=i), sample, pco2, bicarb, ph, po2))
    for start, valid in ((datetime.combine(end, time(22), tzinfo=UTC) - timedelta(days=2), True),
                         (datetime.combine(end, time(22), tzinfo=UTC) - timedelta(days=3), False)):
        conn.execute(
            "INSERT INTO capnography_nights (patient_id, start_at, source, night_date, interval_s, valid,"
            " invalid_reason, recording_min, valid_min, mean_tcpco2, max_tcpco2, baseline_tcpco2, max_rise_mmhg,"
            " gt50_min, gt55_min, longest_gt55_min, rise10_min, longest_rise10_min, mean_spo2)"
            " VALUES ('NORTH-00001', %s, 'sentec', %s, 1, %s, %s, 420, 410, 48.2, 57.9, 45.1, 12.8, 95.5, 12.0, 6.5,"
            " 20.0, 8.0, 93.4)", (start, start.date(), valid, None if valid else "too short"))
    for day in range(3):  # every NIV value (the cohort's patients may not have reached NIV in 120 days)
        conn.execute(
            "INSERT INTO niv_nights (patient_id, night_date, source, usage_hours, leak_p95_lpm, leak_kind, ahi,"
            " resp_rate, tidal_volume_ml, minute_vent_lpm, spo2_mean, spo2_t90_pct, pct_spont_triggered)"
            " VALUES ('NORTH-00001', %s, 'astral-csv', 6.5, 21.0, 'unintentional', 3.2, 17.5, 430, 7.4, 94.1, 2.5, 66)"
            " ON CONFLICT DO NOTHING", (end - timedelta(days=day),))
    conn.execute("INSERT INTO spirometry_sessions (patient_id, taken_at, source, posture, mep_cmh2o, pcf_lpm,"
                 " pcf_assisted) VALUES ('NORTH-00001', %s, 'clinic', 'sitting', 52, 240, true)", (at,))
    conn.execute("INSERT INTO blood_gases (patient_id, taken_at, sample, source, pco2_mmhg, po2_mmhg)"
                 " VALUES ('NORTH-00001', %s, 'venous', 'clinic', 53.0, 38.0)", (at - timedelta(days=9),))
    provision_device(conn, "o2ring-n0", "NORTH-00000")
    provision_device(conn, "resmed-n0", "NORTH-00000")
    provision_device(conn, "o2ring-s0", "SOUTH-00000")
    provision_device(conn, "odd_device:1", ODD)
    assign(conn, ODD, NORTH, "tests")
    conn.execute("INSERT INTO spirometry_sessions (patient_id, taken_at, source, posture, fvc_l, fvc_pct_pred)"
                 " VALUES (%s, %s, 'clinic', 'sitting', 1.9, 47.0)", (ODD, at))


def _evidence_alert(conn: psycopg.Connection[Any], end: date) -> int:
    """NS-FVC50 with evidence as `processors/rules/engine.py` writes it: the latest VC % predicted (a `date`),
    the last 3 nights' T90 (`points`), and two inputs that saw no row (an empty count, a missing value)."""
    at = datetime.combine(end, time(10), tzinfo=UTC) - timedelta(days=3)
    session = conn.execute("SELECT max(taken_at) FROM spirometry_sessions WHERE patient_id = 'NORTH-00000'"
                           " AND fvc_pct_pred IS NOT NULL AND taken_at <= %s", (at,)).fetchone()
    nights = [r[0].isoformat() for r in conn.execute(
        "SELECT night_date FROM oximetry_nights WHERE patient_id = 'NORTH-00000' AND valid AND start_at <= %s"
        " ORDER BY night_date DESC LIMIT 3", (at,)).fetchall()][::-1]
    assert session is not None and len(nights) == 3
    spiro_at = session[0].astimezone(UTC).isoformat()
    evidence = {"NS-FVC50": {
        "as_of": at.isoformat(), "condition": "usable_low or poor_low", "params": {"fvc_pct_pred": 50},
        "inputs": {
            "latest(spiro.vc_pct_pred)": {"date": spiro_at, "value": 45.0,
                                          "window": {"kind": "spiro", "last": 1, "to": at.isoformat(),
                                                     "valid_only": True}},
            "on_niv: count(niv.usage_hours >= 1, days=30)": {
                "n": 0, "points": [], "value": 0,
                "window": {"days": 30, "from": (at - timedelta(days=30)).isoformat(), "kind": "niv",
                           "to": at.isoformat(), "valid_only": True}},
            "latest(alsfrs.total)": {"value": None, "window": {"kind": "alsfrs", "last": 1, "to": at.isoformat()}},
            "median(oxi.t90_pct, last=3)": {"n": 3, "points": [{"date": d, "value": 1.0} for d in nights],
                                            "value": 1.0, "window": {"kind": "oxi", "last": 3, "to": at.isoformat()}},
        }}}
    rules = {"NS-FVC50": {"severity": "high", "state": "open", "at": at.isoformat(), "rule_version": "0.2.0",
                          "action": "Discuss NIV.", "citation": "AAN09; NICE NG42", "resolution": None}}
    conn.execute("UPDATE alerts SET status = 'resolved', resolved_at = now(), resolution = 'merged'"
                 " WHERE patient_id = 'NORTH-00000' AND category = 'NIV_START' AND status <> 'resolved'")
    row = conn.execute(
        "INSERT INTO alerts (patient_id, rule_id, rule_version, category, severity, status, evidence, action,"
        " citation, finding_at, opened_at, updated_at, rules, acknowledged_at, acknowledged_by)"
        " VALUES ('NORTH-00000', 'NS-FVC50', '0.2.0', 'NIV_START', 'high', 'acknowledged', %s, 'Discuss NIV.',"
        " 'AAN09; NICE NG42', %s, %s, %s, %s, %s, 'nurse-north') RETURNING alert_id",
        (Jsonb(evidence), at, at, at, Jsonb(rules), at + timedelta(hours=2))).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="session")
def fhir_world(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirWorld]:
    end = datetime.now(UTC).date() - timedelta(days=1)
    with namespace(tmp_path_factory.mktemp("fhir")) as env:
        url = env["RESPMON_DATABASE_URL"]
        with psycopg.connect(url, autocommit=True) as conn:
            north = seed(conn, 6, 400, team=NORTH, prefix="NORTH", seed_value=21, end=end, signal_nights=0)
            south = seed(conn, 3, 400, team=SOUTH, prefix="SOUTH", seed_value=22, end=end, signal_nights=0)
            _extra_records(conn, end)
            alert_id = _evidence_alert(conn, end)
            tokens = {member: provision(conn, member, team, role)  # type: ignore[arg-type]
                      for member, team, role in (("nurse-north", NORTH, "clinician"),
                                                 ("viewer-north", NORTH, "viewer"),
                                                 ("nurse-south", SOUTH, "clinician"), ("admin-north", NORTH, "admin"))}
            set_password(conn, "nurse-north", PASSWORD)
        yield FhirWorld(url, Settings(database_url=url), north, south, tokens, alert_id, end)


@pytest.fixture(scope="session")
def fhir_app(fhir_world: FhirWorld) -> Iterator[TestClient]:
    with TestClient(create_app(fhir_world.settings)) as client:
        yield client


class Fhir:
    """A member's view of the API: GET with their bearer token."""

    def __init__(self, client: TestClient, token: str | None) -> None:
        self.client, self.token = client, token

    def get(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.client.get(f"/fhir/r4/{path}", params=params, headers=headers)

    def json(self, path: str, **params: Any) -> dict[str, Any]:
        answer = self.get(path, **params)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/fhir+json")
        data: dict[str, Any] = answer.json()
        return data

    def everything(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every entry of a search, following its next links."""
        page = self.json(path, **params)
        entries = list(page.get("entry", []))
        while (following := next((link["url"] for link in page["link"] if link["relation"] == "next"), None)):
            answer = self.client.get(following, headers={"Authorization": f"Bearer {self.token}"})
            assert answer.status_code == 200, answer.text
            page = answer.json()
            entries += page.get("entry", [])
        return [e["resource"] for e in entries]


@pytest.fixture(scope="session")
def nurse(fhir_app: TestClient, fhir_world: FhirWorld) -> Fhir:
    return Fhir(fhir_app, fhir_world.tokens["nurse-north"])


@pytest.fixture(scope="session")
def nurse_south(fhir_app: TestClient, fhir_world: FhirWorld) -> Fhir:
    return Fhir(fhir_app, fhir_world.tokens["nurse-south"])


def access_log(db_url: str, member_id: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT patient_id, action, route FROM access_log WHERE member_id = %s ORDER BY id",
                            (member_id,)).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.fixture(scope="session")
def validator() -> Path:
    """The compiled HAPI validator (fetched from Maven Central into .stack/fhir-validator on first use)."""
    subprocess.run([str(ROOT / "infra" / "fhir-validator.sh")], check=True)
    return VALIDATOR


def validate(validator: Path, folder: Path) -> list[dict[str, Any]]:
    """Every JSON file of `folder` through the HAPI R4 validator in one JVM: one report per file."""
    done = subprocess.run(
        ["java", "-Xmx768m", "-cp", f"{validator / 'lib'}/*:{validator / 'classes'}", "Validate", str(folder)],
        capture_output=True, text=True, check=False)
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert reports, f"validator printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    return reports
