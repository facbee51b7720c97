"""The FHIR API as a hospital system or a clinician's script uses it: care-team scope (404 outside, absent from
searches, every look in access_log), search by patient, code and date, paging, `_summary=count`, `_format`,
and bad parameters answered with an OperationOutcome naming them."""

from datetime import datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from respmon.fhir.resources import fhir_id
from tests.test_fhir.conftest import ODD, Fhir, FhirWorld, access_log


def outcome(answer: object, status: int) -> str:
    """The diagnostics of an OperationOutcome answer with `status`."""
    assert answer.status_code == status, answer.text  # type: ignore[attr-defined]
    assert answer.headers["content-type"].startswith("application/fhir+json")  # type: ignore[attr-defined]
    body = answer.json()  # type: ignore[attr-defined]
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error"
    return " ".join(f"{i.get('diagnostics', '')} {i.get('details', {}).get('text', '')}" for i in body["issue"])


def ids(resources: list[dict]) -> list[str]:
    return [r["id"] for r in resources]


def test_metadata_says_what_is_served(nurse: Fhir) -> None:
    cap = nurse.json("metadata")
    assert cap["resourceType"] == "CapabilityStatement" and cap["fhirVersion"] == "4.0.1"
    served = {r["type"]: {p["name"] for p in r.get("searchParam", [])} for r in cap["rest"][0]["resource"]}
    assert served["Observation"] >= {"patient", "code", "date"}
    assert {"Patient", "Device", "DetectedIssue", "CodeSystem"} <= set(served)


def test_without_credentials_nothing_but_metadata(fhir_app: TestClient) -> None:
    anonymous = Fhir(fhir_app, None)
    assert "credentials" in outcome(anonymous.get("Patient"), 401)
    assert "credentials" in outcome(Fhir(fhir_app, "not-a-token").get("Observation"), 401)
    assert anonymous.get("metadata").status_code == 200


def test_a_member_sees_their_teams_patients_only(nurse: Fhir, nurse_south: Fhir, fhir_world: FhirWorld,
                                                 fhir_app: TestClient) -> None:
    north = set(fhir_world.north.patients) | {ODD}
    seen = {p["identifier"][0]["value"] for p in nurse.everything("Patient")}
    assert seen == north
    assert {p["identifier"][0]["value"] for p in nurse_south.everything("Patient")} == set(fhir_world.south.patients)
    # another team's patient, device, observation and alert answer as if they did not exist
    outcome(nurse_south.get("Patient/NORTH-00000"), 404)
    outcome(nurse_south.get("Device/o2ring-n0"), 404)
    some_obs = nurse.json("Observation", patient="NORTH-00000", _count=1)["entry"][0]["resource"]["id"]
    outcome(nurse_south.get(f"Observation/{some_obs}"), 404)
    outcome(nurse_south.get(f"DetectedIssue/{fhir_world.evidence_alert}"), 404)
    # and are absent from searches, even when asked for by name
    assert nurse_south.json("Observation", patient="NORTH-00000")["total"] == 0
    assert nurse_south.json("DetectedIssue", patient="NORTH-00000")["total"] == 0
    assert nurse_south.json("Device", patient="NORTH-00000")["total"] == 0
    assert all(i["patient"]["reference"].startswith("Patient/SOUTH-") for i in nurse_south.everything("DetectedIssue"))
    north_alerts = nurse.everything("DetectedIssue")
    assert north_alerts and all(i["patient"]["reference"].startswith("Patient/NORTH") for i in north_alerts)
    # a viewer reads, an admin without a clinical role reads nothing
    viewer = Fhir(fhir_app, fhir_world.tokens["viewer-north"])
    assert viewer.json("Patient/NORTH-00000")["id"] == "NORTH-00000"
    admin = Fhir(fhir_app, fhir_world.tokens["admin-north"])
    outcome(admin.get("Patient/NORTH-00000"), 404)
    assert admin.json("Observation", _summary="count")["total"] == 0


def test_every_look_is_in_the_access_log(fhir_app: TestClient, fhir_world: FhirWorld) -> None:
    viewer = Fhir(fhir_app, fhir_world.tokens["viewer-north"])
    before = len(access_log(fhir_world.db_url, "viewer-north"))
    obs = viewer.json("Observation", patient="NORTH-00002", _count=3)
    assert len(obs["entry"]) == 3
    viewer.json(f"Observation/{obs['entry'][0]['resource']['id']}")
    viewer.json(f"DetectedIssue/{fhir_world.evidence_alert}")
    log = access_log(fhir_world.db_url, "viewer-north")[before:]
    assert log == [("NORTH-00002", "fhir-search", "GET /fhir/r4/Observation"),
                   ("NORTH-00002", "fhir-read", "GET /fhir/r4/Observation/{resource_id}"),
                   ("NORTH-00000", "fhir-read", "GET /fhir/r4/DetectedIssue/{resource_id}")]


def test_observations_by_code_loinc_or_respmon(nurse: Fhir) -> None:
    fvc = nurse.everything("Observation", patient="NORTH-00000", code="http://loinc.org|19870-5", _count=100)
    assert fvc and all(any(c["code"] == "19870-5" for c in o["code"]["coding"]) for o in fvc)
    assert all(o["valueQuantity"]["code"] == "L" and 0 < o["valueQuantity"]["value"] < 10 for o in fvc)
    same = nurse.everything("Observation", patient="NORTH-00000", code="urn:respmon:code|fvc", _count=100)
    assert ids(same) == ids(fvc)
    arterial = nurse.json("Observation", code="http://loinc.org|2019-8")
    assert arterial["total"] == 1
    value = arterial["entry"][0]["resource"]["valueQuantity"]
    assert (value["value"], value["code"]) == (47.5, "mm[Hg]")
    # one of several codes; an unknown code matches nothing (no error)
    either = nurse.json("Observation", patient="NORTH-00001", code="t90,odi3", _summary="count")["total"]
    t90 = nurse.json("Observation", patient="NORTH-00001", code="t90", _summary="count")["total"]
    odi3 = nurse.json("Observation", patient="NORTH-00001", code="odi3", _summary="count")["total"]
    assert either == t90 + odi3 > 0
    assert nurse.json("Observation", code="http://loinc.org|0000-0")["total"] == 0


def test_observations_by_date(nurse: Fhir, fhir_world: FhirWorld) -> None:
    lo, hi = fhir_world.end - timedelta(days=20), fhir_world.end - timedelta(days=10)
    found = nurse.everything("Observation", patient="NORTH-00001", code="spo2-mean,fvc",
                             date=[f"ge{lo.isoformat()}", f"lt{hi.isoformat()}"], _count=200)
    assert found
    for o in found:
        start = o.get("effectiveDateTime") or o["effectivePeriod"]["start"]
        end = o.get("effectiveDateTime") or o["effectivePeriod"]["end"]
        assert datetime.fromisoformat(end).date() >= lo and datetime.fromisoformat(start).date() < hi
    every = nurse.json("Observation", patient="NORTH-00001", code="spo2-mean,fvc", _summary="count")["total"]
    assert len(found) < every
    day = nurse.everything("Observation", patient="NORTH-00001", code="fvc",
                           date=found[-1]["effectiveDateTime"][:10] if "effectiveDateTime" in found[-1] else lo)
    assert all(o.get("effectiveDateTime", "")[:10] == day[0]["effectiveDateTime"][:10] for o in day)


def test_paging_follows_next_links_to_every_match_once(nurse: Fhir) -> None:
    first = nurse.json("Observation", patient="NORTH-00003", code="fvc,spo2-mean", _count=25)
    total = first["total"]
    assert total > 100 and len(first["entry"]) == 25
    assert any(link["relation"] == "next" for link in first["link"])
    paged = nurse.everything("Observation", patient="NORTH-00003", code="fvc,spo2-mean", _count=25)
    assert len(paged) == total and len(set(ids(paged))) == total
    whole = nurse.everything("Observation", patient="NORTH-00003", code="fvc,spo2-mean", _count=500)
    assert set(ids(whole)) == set(ids(paged))
    counted = nurse.json("Observation", patient="NORTH-00003", code="fvc,spo2-mean", _summary="count")
    assert counted["total"] == total and "entry" not in counted
    assert "entry" not in nurse.json("Observation", patient="NORTH-00003", _count=0)


def test_json_only(nurse: Fhir, fhir_app: TestClient, fhir_world: FhirWorld) -> None:
    assert nurse.json("Patient", _format="json")["resourceType"] == "Bundle"
    assert nurse.json("Patient", _format="application/fhir+json")["resourceType"] == "Bundle"
    assert "JSON only" in outcome(nurse.get("Patient", _format="xml"), 406)
    outcome(nurse.get("metadata", _format="application/fhir+xml"), 406)
    answer = fhir_app.get("/fhir/r4/Patient", headers={"Authorization": f"Bearer {fhir_world.tokens['nurse-north']}",
                                                       "Accept": "application/fhir+xml"})
    outcome(answer, 406)


@pytest.mark.parametrize(("params", "named"), [
    ({"colour": "blue"}, "colour"),
    ({"date": "2026-13-01"}, "date"),
    ({"date": "sa2026-01-01"}, "date"),
    ({"date": "yesterday"}, "date"),
    ({"_count": "ten"}, "_count"),
    ({"_summary": "true"}, "_summary"),
    ({"patient": "Device/o2ring-n0"}, "patient"),
    ({"code": ""}, "code"),
    ({"code:text": "fvc"}, "code:text"),
])
def test_bad_parameters_are_a_400_naming_them(nurse: Fhir, params: dict[str, str], named: str) -> None:
    assert named in outcome(nurse.get("Observation", **params), 400)


def test_unknown_paths_and_writes(nurse: Fhir, fhir_app: TestClient, fhir_world: FhirWorld) -> None:
    outcome(nurse.get("Medication"), 404)
    outcome(nurse.get("Observation/not-an-id"), 404)
    outcome(nurse.get("DetectedIssue/99999999"), 404)
    answer = fhir_app.post("/fhir/r4/Observation", json={"resourceType": "Observation"},
                           headers={"Authorization": f"Bearer {fhir_world.tokens['nurse-north']}"})
    assert "read-only" in outcome(answer, 405)


def test_detected_issue_carries_evidence_citation_and_severity(nurse: Fhir, fhir_world: FhirWorld) -> None:
    issue = nurse.json(f"DetectedIssue/{fhir_world.evidence_alert}")
    assert issue["severity"] == "high" and issue["status"] == "final"  # acknowledged
    assert "AAN09; NICE NG42" in issue["detail"] and "NS-FVC50" in issue["reference"]
    assert issue["mitigation"][0]["action"]["text"].startswith("acknowledged")
    refs = [d["reference"] for e in issue["evidence"] for d in e.get("detail", [])]
    assert refs and all(r.startswith("Observation/") for r in refs)
    cited = [nurse.json(r) for r in refs]
    assert all(o["subject"]["reference"] == "Patient/NORTH-00000" for o in cited)
    by_code: dict[str, list[dict]] = {}
    for o in cited:
        by_code.setdefault(o["code"]["coding"][-1]["code"], []).append(o)
    # exactly what the rule saw: the latest FVC % predicted up to the finding and the 3 nights' T90 it took the
    # median of; the inputs that saw nothing (an empty count of NIV nights, no ALSFRS-R) cite nothing
    assert sorted(by_code) == ["fvc-pct-pred", "t90"]
    finding = datetime.fromisoformat(issue["identifiedDateTime"])
    (pct,) = by_code["fvc-pct-pred"]
    newest = nurse.json("Observation", patient="NORTH-00000", code="fvc-pct-pred",
                        date=f"le{finding.isoformat()[:19]}", _count=1)["entry"][0]["resource"]
    assert pct["id"] == newest["id"]
    nights = nurse.json("Observation", patient="NORTH-00000", code="t90",
                        date=f"le{finding.isoformat()[:19]}", _count=3)["entry"]
    assert sorted(o["id"] for o in by_code["t90"]) == sorted(e["resource"]["id"] for e in nights)


def test_seeded_alerts_cite_what_their_rule_reads(nurse: Fhir, fhir_world: FhirWorld) -> None:
    """Alerts without recorded inputs: the newest values of the fields the rule's expressions name."""
    issues = [i for i in nurse.everything("DetectedIssue") if i["id"] != str(fhir_world.evidence_alert)]
    assert issues
    for issue in issues:
        refs = [d["reference"] for e in issue.get("evidence", []) for d in e.get("detail", [])]
        assert refs, issue["code"]["text"]
        for ref in refs:
            assert nurse.get(ref).status_code == 200


def test_patient_ids_fhir_cannot_spell(nurse: Fhir, fhir_world: FhirWorld) -> None:
    bundle = nurse.json("Patient", identifier=f"urn:respmon:patient|{ODD}")
    assert bundle["total"] == 1
    patient = bundle["entry"][0]["resource"]
    assert patient["id"] == fhir_id(ODD) and patient["id"].startswith("h.")
    assert nurse.json(f"Patient/{patient['id']}")["identifier"][0]["value"] == ODD
    obs = nurse.json("Observation", patient=f"Patient/{patient['id']}", code="fvc,fvc-pct-pred")
    assert sorted(o["resource"]["valueQuantity"]["value"] for o in obs["entry"]) == [1.9, 47]
    device = nurse.json("Device", patient=patient["id"])["entry"][0]["resource"]
    assert device["identifier"][0]["value"] == "odd_device:1"
    assert nurse.json(f"Device/{device['id']}")["patient"]["reference"] == f"Patient/{patient['id']}"


def test_invalid_nights_are_not_exported(nurse: Fhir, fhir_world: FhirWorld) -> None:
    with psycopg.connect(fhir_world.db_url) as conn:
        stored = conn.execute("SELECT count(*) FROM capnography_nights WHERE patient_id = 'NORTH-00001'").fetchone()
    assert stored == (2,)
    nights = nurse.everything("Observation", patient="NORTH-00001", code="tcco2-mean")
    assert len(nights) == 1 and nights[0]["valueQuantity"]["value"] == 48.2
