"""respmon's records as FHIR R4 resources, built and checked with the `fhir.resources.R4B` models.

R4B is the package's nearest model set to R4 (4.0.1): the resources used here (Patient, Device, Observation,
DetectedIssue, CodeSystem, CapabilityStatement, Bundle, OperationOutcome) have the same elements in both;
the HAPI R4 validator (infra/fhir-validator) is the authority in the tests.
"""

import hashlib
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.resource import Resource

from respmon.fhir.codes import (
    ALERT_CATEGORIES,
    BY_CODE,
    CATEGORY_DISPLAY,
    CATEGORY_SYSTEM,
    LOINC,
    OBSERVATIONS,
    RESPMON_SYSTEM,
    UCUM,
)
from respmon.queries.fhir import observation_id

PATIENT_SYSTEM = "urn:respmon:patient"
DEVICE_SYSTEM = "urn:respmon:device"
ALERT_SYSTEM = "urn:respmon:alert"
FHIR_VERSION = "4.0.1"

SEVERITY = {"urgent": "high", "high": "high", "warn": "moderate", "info": "low"}
"""respmon severity -> DetectedIssue.severity (high | moderate | low)."""
STATUS = {"open": "preliminary", "acknowledged": "final", "resolved": "final"}
"""Alert status -> DetectedIssue.status: open = not yet reviewed by the team; acknowledged and resolved are final
(a resolution is stated as a mitigation, with its date)."""

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def fhir_id(local: str) -> str:
    """A FHIR id for a respmon patient or device id: itself when FHIR allows it (letters, digits, '-', '.'),
    else `h.` + 40 hex of its SHA-256 (ids with '_' or ':')."""
    return local if _FHIR_ID.match(local) and not local.startswith("h.") else "h." + _digest(local)


def _digest(local: str) -> str:
    return hashlib.sha256(local.encode()).hexdigest()[:40]


def is_hashed(resource_id: str) -> bool:
    return resource_id.startswith("h.") and len(resource_id) == 42


def matches(resource_id: str, local: str) -> bool:
    return fhir_id(local) == resource_id


def _dump(model: type[Resource], data: dict[str, Any]) -> dict[str, Any]:
    """Validated by the model, as JSON-ready data without empty elements."""
    return model.model_validate(data).model_dump(mode="json")


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def patient(patient_id: str) -> dict[str, Any]:
    return _dump(Patient, {"resourceType": "Patient", "id": fhir_id(patient_id),
                           "identifier": [{"system": PATIENT_SYSTEM, "value": patient_id}]})


def device(row: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    usable = row["active"] and row["revoked_at"] is None and (row["expires_at"] is None or row["expires_at"] > now)
    return _dump(Device, {
        "resourceType": "Device", "id": fhir_id(row["device_id"]),
        "identifier": [{"system": DEVICE_SYSTEM, "value": row["device_id"]}],
        "status": "active" if usable else "inactive",
        "patient": {"reference": f"Patient/{fhir_id(row['patient_id'])}"},
    })


def _value(v: float) -> float | int:
    rounded = round(float(v), 3)
    return int(rounded) if rounded.is_integer() else rounded


def observation(row: dict[str, Any]) -> dict[str, Any]:
    d = BY_CODE[row["code"]]
    extra = row.get("extra") or {}
    coding = [{"system": LOINC, "code": c.code, "display": c.display} for c in d.loinc]
    coding.append({"system": RESPMON_SYSTEM, "code": d.code, "display": d.display})
    data: dict[str, Any] = {
        "resourceType": "Observation", "id": observation_id(row), "status": "final",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": d.category,
                                  "display": CATEGORY_DISPLAY[d.category]}]}],
        "code": {"coding": coding, "text": d.display},
        "subject": {"reference": f"Patient/{fhir_id(row['patient_id'])}"},
        "valueQuantity": {"value": _value(row["value"]), "unit": d.unit, "system": UCUM, "code": d.unit},
        "device": {"display": row["source"]},
    }
    if row["end_at"] > row["start_at"]:
        data["effectivePeriod"] = {"start": _instant(row["start_at"]), "end": _instant(row["end_at"])}
    else:
        data["effectiveDateTime"] = _instant(row["start_at"])
    notes = []
    if extra.get("posture"):
        data["method"] = {"text": f"{extra['posture']}{', assisted' if extra.get('pcf_assisted') else ''}"}
    if extra.get("grade"):
        notes.append(f"ATS/ERS session grade {extra['grade']}")
    if extra.get("leak_kind"):
        notes.append(f"leak reported as {extra['leak_kind']}")
    if extra.get("on_niv"):
        notes.append("recorded on NIV")
    if notes:
        data["note"] = [{"text": "; ".join(notes)}]
    return _dump(Observation, data)


def detected_issue(alert: dict[str, Any], evidence: dict[str, list[str]]) -> dict[str, Any]:
    """One alert. `evidence`: contributing rule id -> ids of the Observations its evidence rests on."""
    rules: dict[str, Any] = alert.get("rules") or {}
    contributing = [f"{rid} ({info.get('severity')}, {info.get('state')})" for rid, info in rules.items()
                    if isinstance(info, dict)] or [alert["rule_id"]]
    detail = (f"{' '.join(str(alert['action']).split())}\n\nGuideline: {' '.join(str(alert['citation']).split())}"
              f"\n\nRules (respmon rules {alert['rule_version']}): {', '.join(contributing)}."
              "\nDecision support for clinicians, not an order.")
    data: dict[str, Any] = {
        "resourceType": "DetectedIssue", "id": str(alert["alert_id"]),
        "identifier": [{"system": ALERT_SYSTEM, "value": str(alert["alert_id"])}],
        "status": STATUS[alert["status"]],
        "code": {"coding": [{"system": RESPMON_SYSTEM, "code": alert["category"],
                             "display": ALERT_CATEGORIES.get(alert["category"], alert["category"])}],
                 "text": f"{alert['category']}: {alert['rule_id']}"},
        "severity": SEVERITY.get(alert["severity"], "moderate"),
        "patient": {"reference": f"Patient/{fhir_id(alert['patient_id'])}"},
        "identifiedDateTime": _instant(alert["finding_at"]),
        "detail": detail,
        "reference": f"urn:respmon:rules:{alert['rule_version']}:{alert['rule_id']}",
    }
    items = [{"code": [{"text": f"{rule_id}: {_rule_severity(rules, rule_id, alert['severity'])}"}],
              **({"detail": [{"reference": f"Observation/{oid}"} for oid in ids]} if ids else {})}
             for rule_id, ids in evidence.items()]
    if items:
        data["evidence"] = items
    mitigations = []
    if alert.get("acknowledged_at"):
        mitigations.append({"action": {"text": "acknowledged by the respiratory team"},
                            "date": _instant(alert["acknowledged_at"])})
    if alert["status"] == "resolved" and alert.get("resolved_at"):
        mitigations.append({"action": {"text": f"resolved: {alert.get('resolution') or 'unspecified'}"},
                            "date": _instant(alert["resolved_at"])})
    if mitigations:
        data["mitigation"] = mitigations
    return _dump(DetectedIssue, data)


def _rule_severity(rules: dict[str, Any], rule_id: str, default: str) -> str:
    info = rules.get(rule_id)
    return str(info.get("severity") or default) if isinstance(info, dict) else default


def code_system(version: str) -> dict[str, Any]:
    """Every `urn:respmon:code` code: the Observation codes, then the alert categories."""
    concepts = [{"code": d.code, "display": d.display,
                 "definition": f"{d.display}, in {d.unit} (UCUM); from {d.kind.table}.{d.column}"
                               + (f" of a {d.sample.replace('_', '-')} sample" if d.sample else "")
                               + (f"; {d.definition}" if d.definition else "")
                               + ("; LOINC " + ", ".join(c.code for c in d.loinc) if d.loinc else "")}
                for d in OBSERVATIONS]
    concepts += [{"code": code, "display": text, "definition": f"respmon alert category {code}: {text}."}
                 for code, text in ALERT_CATEGORIES.items()]
    return _dump(CodeSystem, {
        "resourceType": "CodeSystem", "id": "respmon", "url": RESPMON_SYSTEM, "version": version,
        "name": "RespmonCodes", "title": "respmon measurement, metric and alert category codes", "status": "active",
        "experimental": False, "publisher": "respmon",
        "description": "Values and nightly metrics of home respiratory monitoring in ALS that LOINC has no code"
                       " for (overnight oximetry statistics, ventilator summaries, respiratory-muscle pressures,"
                       " ALSFRS-R scores, TcCO2 night metrics), plus one code per stored value so every"
                       " Observation has a respmon code, and the alert categories.",
        "caseSensitive": True, "content": "complete", "count": len(concepts), "concept": concepts,
    })


SEARCH_PARAMS: dict[str, list[tuple[str, str, str]]] = {
    "Patient": [("_id", "token", "the resource id"), ("identifier", "token", f"{PATIENT_SYSTEM}|(patient id)")],
    "Device": [("_id", "token", "the resource id"), ("patient", "reference", "the patient the device is bound to")],
    "Observation": [("_id", "token", "the resource id"), ("patient", "reference", "the subject"),
                    ("code", "token", f"{LOINC}|(code) or {RESPMON_SYSTEM}|(code)"),
                    ("date", "date", "effective time; prefixes eq, gt, ge, lt, le")],
    "DetectedIssue": [("_id", "token", "the alert id"), ("patient", "reference", "the patient")],
}


def capability_statement(base_url: str, version: str) -> dict[str, Any]:
    resources = [{"type": rtype, "interaction": [{"code": "read"}, {"code": "search-type"}],
                  "searchParam": [{"name": n, "type": t, "documentation": doc} for n, t, doc in params]}
                 for rtype, params in SEARCH_PARAMS.items()]
    resources.append({"type": "CodeSystem", "interaction": [{"code": "read"}]})
    return _dump(CapabilityStatement, {
        "resourceType": "CapabilityStatement", "id": "respmon", "status": "active", "date": _instant(datetime.now(UTC)),
        "publisher": "respmon", "kind": "instance",
        "software": {"name": "respmon", "version": version},
        "implementation": {"description": "respmon home respiratory monitoring: read-only FHIR R4 API of the team"
                                          " service (care-team scoped)", "url": base_url},
        "fhirVersion": FHIR_VERSION, "format": ["application/fhir+json", "json"],
        "rest": [{"mode": "server",
                  "documentation": "Read-only. Search parameters _count (default 50, at most 500), _summary=count"
                                   " and _format=json are honoured on every search; an unknown parameter is a 400.",
                  "security": {"description": "Authorization: Bearer (team token), or the team service's session"
                                              " cookie. Only patients of the member's care teams are visible; every"
                                              " other answers 404 and is absent from searches."},
                  "resource": resources}],
    })


def bundle(base_url: str, self_url: str, next_url: str | None, previous_url: str | None, total: int,
           entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    if previous_url:
        links.append({"relation": "previous", "url": previous_url})
    data: dict[str, Any] = {
        "resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": _instant(datetime.now(UTC))},
        "type": "searchset", "total": total, "link": links,
        "entry": [{"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                  for r in entries],
    }
    if not entries:
        del data["entry"]
    return _dump(Bundle, data)


def operation_outcome(code: str, message: str, parameter: str | None = None) -> dict[str, Any]:
    """One error issue; `parameter` names the search parameter at fault (in `details.text` too)."""
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if parameter:
        issue["details"] = {"text": f"parameter {parameter}"}
    return _dump(OperationOutcome, {"resourceType": "OperationOutcome", "issue": [issue]})


PUSHED_ISSUE_PREFIX = "respmon-alert-"
"""The id of a pushed DetectedIssue: `respmon-alert-<alert id>` (servers such as HAPI refuse client-assigned
ids that are all digits, and the prefix keeps ours apart from other systems' DetectedIssues)."""


def pushed_patient_ref(patient_id: str) -> str:
    """The transaction's stable placeholder for the patient (`urn:uuid:` of uuid5 of the identifier)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{PATIENT_SYSTEM}|{patient_id}')}"


def transaction(server: str, issue: dict[str, Any], observations: Sequence[dict[str, Any]],
                patient_id: str) -> dict[str, Any]:
    """An alert as a FHIR `transaction` Bundle for a FHIR server at `server` (its base URL): the patient as a
    conditional create (`ifNoneExist` on the respmon identifier: the server's existing Patient is used, never
    overwritten), then the Observations the DetectedIssue cites and the DetectedIssue, each a PUT on its stable
    id. Sending it twice leaves the server as once; every reference to the patient points at its entry."""
    base = server.rstrip("/")
    local, placeholder = f"Patient/{fhir_id(patient_id)}", pushed_patient_ref(patient_id)

    def repoint(resource: dict[str, Any], element: str) -> dict[str, Any]:
        ref = resource.get(element) or {}
        return {**resource, element: {**ref, "reference": placeholder}} if ref.get("reference") == local else resource

    who = {k: v for k, v in patient(patient_id).items() if k != "id"}
    issue = {**repoint(issue, "patient"), "id": f"{PUSHED_ISSUE_PREFIX}{issue['id']}"}
    entries: list[dict[str, Any]] = [{
        "fullUrl": placeholder, "resource": who,
        "request": {"method": "POST", "url": "Patient",
                    "ifNoneExist": f"identifier={quote(f'{PATIENT_SYSTEM}|{patient_id}', safe=':|')}"}}]
    for resource in [*(repoint(o, "subject") for o in observations), issue]:
        path = f"{resource['resourceType']}/{resource['id']}"
        entries.append({"fullUrl": f"{base}/{path}", "resource": resource, "request": {"method": "PUT", "url": path}})
    return _dump(Bundle, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
