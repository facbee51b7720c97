"""Every resource kind the FHIR API returns, fetched from a seeded database, through the HAPI FHIR R4 validator
(offline: LOINC cannot be checked and may warn; our own code system is loaded from the API and checked).
No error-level issue is allowed."""

import json
from collections import Counter
from pathlib import Path

from respmon.fhir.codes import OBSERVATIONS
from tests.test_fhir.conftest import ODD, Fhir, FhirWorld, validate


def test_every_resource_kind_passes_the_hapi_validator(nurse: Fhir, fhir_world: FhirWorld, validator: Path,
                                                       tmp_path: Path) -> None:
    resources: dict[str, dict] = {}

    def keep(name: str, resource: dict) -> None:
        resources[name] = resource

    keep("metadata", nurse.json("metadata"))
    keep("codesystem", nurse.json("CodeSystem/respmon"))
    keep("patient", nurse.json("Patient/NORTH-00000"))
    odd = nurse.json("Patient", identifier=f"urn:respmon:patient|{ODD}")
    keep("bundle-patient-odd", odd)
    keep("bundle-device", nurse.json("Device", patient="NORTH-00000"))
    keep("device", nurse.json("Device/o2ring-n0"))
    keep("bundle-count", nurse.json("Observation", _summary="count"))
    # one Observation of every code the database holds (the cohort has no value of some codes)
    seen_codes = set()
    for d in OBSERVATIONS:
        page = nurse.json("Observation", code=f"urn:respmon:code|{d.code}", _count=1)
        if page.get("entry"):
            seen_codes.add(d.code)
            keep(f"obs-{d.code}", page["entry"][0]["resource"])
    issue = nurse.json(f"DetectedIssue/{fhir_world.evidence_alert}")
    keep("detectedissue-evidence", issue)
    keep("bundle-detectedissue", nurse.json("DetectedIssue", _count=5))
    keep("bundle-observation", nurse.json("Observation", patient="NORTH-00001", _count=20))
    keep("operationoutcome", nurse.get("Observation", colour="blue").json())
    for name, resource in resources.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(resource, indent=1))
    # the check can fail: an Observation without status, with a code our CodeSystem does not have
    broken = {k: v for k, v in resources["obs-fvc"].items() if k != "status"}
    broken["code"] = {"coding": [{"system": "urn:respmon:code", "code": "no-such-code"}]}
    (tmp_path / "zz-broken.json").write_text(json.dumps(broken))

    reports = validate(validator, tmp_path)

    assert len(reports) == len(resources) + 1
    broken_report = next(r for r in reports if r["file"].endswith("zz-broken.json"))
    flagged = " ".join(i["message"] for i in broken_report["issues"] if i["severity"] == "error")
    assert "status" in flagged and "no-such-code" in flagged, broken_report
    reports = [r for r in reports if r is not broken_report]
    kinds = Counter(r["resourceType"] for r in reports)
    assert {"CapabilityStatement", "CodeSystem", "Patient", "Bundle", "Observation", "DetectedIssue",
            "OperationOutcome"} <= set(kinds), kinds
    errors = [(Path(r["file"]).name, i["location"], i["message"]) for r in reports for i in r["issues"]
              if i["severity"] in ("error", "fatal")]
    assert errors == []
    missing = sorted({d.code for d in OBSERVATIONS} - seen_codes)
    print("codes without a value in the seeded database:", missing)
    assert missing == ["po2-capillary", "po2-end-tidal", "po2-transcutaneous"]  # no such readings in the data
    warnings = Counter(i["message"].split(":")[0] for r in reports for i in r["issues"] if i["severity"] == "warning")
    print("validator warnings by message:", dict(warnings))
