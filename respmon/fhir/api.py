"""The read-only FHIR R4 API of the team service, under `/fhir/r4/`.

Same credentials as the team API (a bearer team token or the session cookie) and the same care-team scope:
a patient outside the member's teams, their devices, observations and alerts answer 404 on read and are
absent from searches; every patient whose data an answer carries is recorded in `access_log` in the
transaction of the read. JSON only (`application/fhir+json`); errors are OperationOutcomes. Parameters are
parsed here, not by FastAPI, so that a bad one is a FHIR 400 naming it (and an unknown one is refused
rather than silently ignored: a search that drops a filter would show more than was asked for).
"""

import importlib.metadata
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from psycopg_pool import ConnectionPool

from alerts.access import Look, record
from alerts.sessions import COOKIE
from alerts.team import Member
from processors.rules.loader import RuleSet, load_rules
from respmon.core.settings import Settings
from respmon.fhir import resources as fr
from respmon.fhir.codes import BY_CODE, BY_LOINC, LOINC, RESPMON_SYSTEM
from respmon.queries import fhir as q

MEDIA = "application/fhir+json"
PREFIX = "/fhir/r4"
DEFAULT_COUNT, MAX_COUNT = 50, 500
COMMON = frozenset({"_count", "_summary", "_format", "_offset"})
SEARCHABLE: dict[str, frozenset[str]] = {
    "Patient": frozenset({"_id", "identifier"}),
    "Device": frozenset({"_id", "patient"}),
    "Observation": frozenset({"_id", "patient", "subject", "code", "date"}),
    "DetectedIssue": frozenset({"_id", "patient"}),
}
_JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_DATE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4})(?:-(\d{2})(?:-(\d{2})"
                   r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")


class FhirError(Exception):
    """An answer other than 200: its status, OperationOutcome issue code, message and parameter at fault."""

    def __init__(self, status: int, code: str, message: str, parameter: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.parameter, self.headers = status, code, message, parameter, headers


def answer(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=MEDIA, headers=headers)


def refusal(error: FhirError) -> Response:
    return answer(fr.operation_outcome(error.code, error.message, error.parameter), error.status, error.headers)


@dataclass
class Search:
    """A search's parameters after parsing: the filters by name (comma-separated values split), and paging."""

    filters: dict[str, list[list[str]]]
    count: int
    offset: int
    summary_count: bool


def parse_common(request: Request, rtype: str | None) -> Search:
    allowed = COMMON | (SEARCHABLE[rtype] if rtype else frozenset())
    filters: dict[str, list[list[str]]] = {}
    count, offset, summary = DEFAULT_COUNT, 0, False
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise FhirError(400, "not-supported", f"unknown or unsupported search parameter '{name}'"
                            + (f" for {rtype}" if rtype else "") + f"; supported: {', '.join(sorted(allowed))}", name)
        if name == "_count":
            if not value.isdigit():
                raise FhirError(400, "invalid", f"_count must be a whole number 0-{MAX_COUNT}, not {value!r}", name)
            count = min(int(value), MAX_COUNT)
        elif name == "_offset":
            if not value.isdigit():
                raise FhirError(400, "invalid", f"_offset must be a whole number, not {value!r}", name)
            offset = int(value)
        elif name == "_summary":
            if value not in ("count", "false"):
                raise FhirError(400, "not-supported", f"_summary={value} is not supported (count, false)", name)
            summary = value == "count"
        elif name != "_format":
            if not value:
                raise FhirError(400, "invalid", f"parameter '{name}' has no value", name)
            filters.setdefault(name, []).append(value.split(","))
    return Search(filters, 0 if summary else count, offset, summary)


def check_format(request: Request) -> None:
    """JSON only: `_format` other than JSON, or an Accept header that takes no JSON, is a 406."""
    for value in request.query_params.getlist("_format"):
        if value.strip().lower().split(";")[0] not in _JSON_FORMATS:
            raise FhirError(406, "not-supported", f"_format={value} is not supported: this server answers JSON only"
                            f" ({MEDIA})", "_format")
    accept = request.headers.get("accept", "")
    if accept:
        types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
        if not any(t in _JSON_FORMATS or t in ("*/*", "application/*") for t in types):
            raise FhirError(406, "not-supported", f"Accept: {accept} cannot be met: this server answers {MEDIA} only")


def date_bound(value: str) -> q.DateBound:
    """A `date` value: a prefix (eq, gt, ge, lt, le) and a date or dateTime of any precision (UTC if no zone)."""
    found = _DATE.match(value)
    if not found:
        raise FhirError(400, "invalid", f"date={value} is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD,"
                        " YYYY-MM-DDThh:mm[:ss][Z|+hh:mm]) with an optional prefix", "date")
    prefix, year, month, day, hour, minute, second, zone = found.groups()
    prefix = prefix or "eq"
    if prefix not in ("eq", "gt", "ge", "lt", "le"):
        raise FhirError(400, "not-supported", f"date prefix '{prefix}' is not supported (eq, gt, ge, lt, le)", "date")
    try:
        if hour is not None:
            tz = datetime.fromisoformat(f"2000-01-01T00:00{'+00:00' if zone in (None, 'Z') else zone}").tzinfo
            lo = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=tz)
            hi = lo + (timedelta(seconds=1) if second is not None else timedelta(minutes=1))
        elif day is not None:
            lo = datetime(int(year), int(month), int(day), tzinfo=UTC)
            hi = lo + timedelta(days=1)
        elif month is not None:
            lo = datetime(int(year), int(month), 1, tzinfo=UTC)
            hi = datetime(int(year) + int(month) // 12, int(month) % 12 + 1, 1, tzinfo=UTC)
        else:
            lo, hi = datetime(int(year), 1, 1, tzinfo=UTC), datetime(int(year) + 1, 1, 1, tzinfo=UTC)
    except ValueError as exc:
        raise FhirError(400, "invalid", f"date={value}: {exc}", "date") from None
    return q.DateBound(prefix, lo, hi)


def codes_of(token: str) -> set[str]:
    """respmon codes a `code` token names: `system|code`, `|code` (no system) or `code` (any system)."""
    system, _, code = token.rpartition("|") if "|" in token else (None, "", token)
    found: set[str] = set()
    if system in (None, LOINC):
        found |= {d.code for d in BY_LOINC.get(code, [])}
    if system in (None, RESPMON_SYSTEM) and code in BY_CODE:
        found.add(code)
    return found


def reference_id(value: str, rtype: str, parameter: str) -> str:
    """The id of `ID`, `Type/ID` or `<base>/Type/ID`; another resource type is a 400."""
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2:
        if parts[-2] != rtype:
            raise FhirError(400, "invalid", f"{parameter}={value} does not reference a {rtype}", parameter)
        return parts[-1]
    return value


@lru_cache(maxsize=4)
def _rules(path: str | None, overrides: str | None) -> RuleSet:
    return load_rules(path, overrides)


def rule_sources(rules: RuleSet, rule_id: str) -> list[str]:
    """The expressions a rule reads (its condition, tiers, lets, evidence), for alerts without recorded inputs."""
    try:
        rule = rules.get(rule_id)
    except KeyError:
        return []
    return [rule.when.source, *(t.when.source for t in rule.tiers if t.when is not None),
            *(c.source for _, c in rule.lets), *(c.source for _, c in rule.evidence)]


def alert_evidence(conn: Any, alert: dict[str, Any], settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Contributing rule id -> the Observation rows its evidence rests on (the DetectedIssue's evidence)."""
    rules = _rules(str(settings.rules_file) if settings.rules_file else None,
                   str(settings.rules_overrides) if settings.rules_overrides else None)
    contributing: dict[str, Any] = alert.get("rules") or {alert["rule_id"]: {}}
    evidence: dict[str, list[dict[str, Any]]] = {}
    for rule_id, info in contributing.items():
        at = rule_time(info.get("at") if isinstance(info, dict) else None, alert["finding_at"])
        recorded = (alert.get("evidence") or {}).get(rule_id) or {}
        inputs = q.evidence_inputs(recorded, at, rule_sources(rules, rule_id))
        evidence[rule_id] = q.evidence_rows(conn, alert["patient_id"], inputs)
    return evidence


def fhir_routes(pool: ConnectionPool[Any], settings: Settings, member: Callable[..., Member]) -> APIRouter:
    """`/fhir/r4/...`: `member(authorization, respmon_session)` is the team API's credential check."""
    router = APIRouter(prefix=PREFIX)
    version = importlib.metadata.version("respmon")

    def who(request: Request) -> Member:
        try:
            return member(request.headers.get("authorization"), request.cookies.get(COOKIE))
        except HTTPException as exc:
            raise FhirError(exc.status_code, "login", str(exc.detail), headers={"WWW-Authenticate": "Bearer"}) from None

    def base_of(request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    def look(request: Request, member_id: str, action: str) -> Look:
        route = f"{request.method} {getattr(request.scope.get('route'), 'path', '(no route)')}"
        return Look(member_id, action, route, request.client.host if request.client else None)

    async def guarded(request: Request, work: Callable[[Member], dict[str, Any]]) -> Response:
        try:
            member_of = await run_in_threadpool(who, request)
            check_format(request)
            return answer(await run_in_threadpool(work, member_of))
        except FhirError as error:
            return refusal(error)

    def page_links(request: Request, search: Search, total: int) -> tuple[str, str | None, str | None]:
        params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_offset", "_count")]

        def url(offset: int) -> str:
            return f"{base_of(request)}/{request.url.path.rsplit('/', 1)[-1]}?" + urlencode(
                [*params, ("_count", str(search.count)), ("_offset", str(offset))])

        if search.summary_count:
            return f"{base_of(request)}/{request.url.path.rsplit('/', 1)[-1]}?{request.url.query}", None, None
        following = url(search.offset + search.count) if search.count and search.offset + search.count < total else None
        previous = url(max(0, search.offset - search.count)) if search.count and search.offset > 0 else None
        return url(search.offset), following, previous

    def searchset(request: Request, search: Search, total: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        self_url, following, previous = page_links(request, search, total)
        return fr.bundle(base_of(request), self_url, following, previous, total, entries)

    def patients_named(conn: Any, member_id: str, search: Search, *names: str) -> list[str] | None:
        """Local patient ids the `patient` (or `subject`) filters allow (AND across repeats); None: no filter."""
        allowed: set[str] | None = None
        for name in names:
            for values in search.filters.get(name, []):
                ids = {reference_id(v, "Patient", name) for v in values}
                local = {i for i in ids if not fr.is_hashed(i)}
                if any(fr.is_hashed(i) for i in ids):  # an id FHIR could not spell directly: look it up in scope
                    _, mine = q.search_patients(conn, member_id, None, 0, 100_000)
                    local |= {p for p in mine if fr.fhir_id(p) in ids}
                allowed = local if allowed is None else allowed & local
        return None if allowed is None else sorted(allowed)

    def ids_named(search: Search) -> set[str] | None:
        allowed: set[str] | None = None
        for values in search.filters.get("_id", []):
            allowed = set(values) if allowed is None else allowed & set(values)
        return allowed

    @router.get("/metadata")
    async def metadata(request: Request) -> Response:
        """The CapabilityStatement (no credentials needed: it carries no patient data)."""
        try:
            check_format(request)
            parse_common(request, None)
        except FhirError as error:
            return refusal(error)
        return answer(fr.capability_statement(base_of(request), version))

    @router.get("/CodeSystem/respmon")
    async def code_system(request: Request) -> Response:
        """The project code system (published: no patient data, no credentials)."""
        try:
            check_format(request)
            parse_common(request, None)
        except FhirError as error:
            return refusal(error)
        return answer(fr.code_system(version))

    @router.get("/Patient")
    async def search_patients(request: Request) -> Response:
        def work(m: Member) -> dict[str, Any]:
            search = parse_common(request, "Patient")
            with pool.connection() as conn, conn.transaction():
                wanted: set[str] | None = None
                for values in search.filters.get("identifier", []):
                    ids = {v.rpartition("|")[2] for v in values
                           if "|" not in v or v.startswith(fr.PATIENT_SYSTEM + "|")}
                    wanted = ids if wanted is None else wanted & ids
                by_id = ids_named(search)
                if by_id is not None:
                    _, mine = q.search_patients(conn, m.member_id, None, 0, 100_000)
                    matched: set[str] = {p for p in mine if fr.fhir_id(p) in by_id}
                    wanted = matched if wanted is None else wanted & matched
                chosen: list[str] | None = sorted(wanted) if wanted is not None else None
                total, found = q.search_patients(conn, m.member_id, chosen, search.offset, search.count)
                record(conn, look(request, m.member_id, "fhir-search"), found)
            return searchset(request, search, total, [fr.patient(p) for p in found])

        return await guarded(request, work)

    @router.get("/Patient/{resource_id}")
    async def read_patient(resource_id: str, request: Request) -> Response:
        def work(m: Member) -> dict[str, Any]:
            parse_common(request, None)
            with pool.connection() as conn, conn.transaction():
                candidates = None if fr.is_hashed(resource_id) else [resource_id]
                _, ids = q.search_patients(conn, m.member_id, candidates, 0, 100_000 if candidates is None else 1)
                found = next((p for p in ids if fr.matches(resource_id, p)), None)
                if found is None:
                    raise FhirError(404, "not-found", f"Patient/{resource_id} is not known")
                record(conn, look(request, m.member_id, "fhir-read"), [found])
            return fr.patient(found)

        return await guarded(request, work)

    @router.get("/Device")
    async def search_devices(request: Request) -> Response:
        def work(m: Member) -> dict[str, Any]:
            search = parse_common(request, "Device")
            with pool.connection() as conn, conn.transaction():
                patients = patients_named(conn, m.member_id, search, "patient")
                by_id = ids_named(search)
                device_ids = None
                if by_id is not None:
                    _, every = q.search_devices(conn, m.member_id, patients, None, 0, 100_000)
                    device_ids = [d["device_id"] for d in every if fr.fhir_id(d["device_id"]) in by_id]
                total, rows = q.search_devices(conn, m.member_id, patients, device_ids, search.offset, search.count)
                record(conn, look(request, m.member_id, "fhir-search"), (r["patient_id"] for r in rows))
            return searchset(request, search, total, [fr.device(r) for r in rows])

        return await guarded(request, work)

    @router.get("/Device/{resource_id}")
    async def read_device(resource_id: str, request: Request) -> Response:
        def work(m: Member) -> dict[str, Any]:
            parse_common(request, None)
            with pool.connection() as conn, conn.transaction():
                direct = None if fr.is_hashed(resource_id) else [resource_id]
                _, rows = q.search_devices(conn, m.member_id, None, direct, 0, 100_000)
                row = next((r for r in rows if fr.matches(resource_id, r["device_id"])), None)
                if row is None:
                    raise FhirError(404, "not-found", f"Device/{resource_id} is not known")
                record(conn, look(request, m.member_id, "fhir-read"), [row["patient_id"]])
            return fr.device(row)

        return await guarded(request, work)

    @router.get("/Observation")
    async def search_observations(request: Request) -> Response:
        def work(m: Member) -> dict[str, Any]:
            search = parse_common(request, "Observation")
            codes: set[str] | None = None
            for values in search.filters.get("code", []):
                named = set().union(*(codes_of(v) for v in values))
                codes = named if codes is None else codes & named
            dates = tuple(date_bound(v) for values in search.filters.get("date", []) for v in values)
            with pool.connection() as conn, conn.transaction():
                patients = patients_named(conn, m.member_id, search, "patient", "subject")
                by_id = ids_named(search)
                if by_id is not None:  # _id: read each (ids carry their code and time)
                    rows = [r for r in (q.read_observation(conn, m.member_id, i) for i in sorted(by_id)) if r]
                    rows = [r for r in rows if (codes is None or r["code"] in codes)
                            and (patients is None or r["patient_id"] in patients)]
                    total, rows = len(rows), rows[search.offset:search.offset + search.count]
                else:
                    total, rows = q.search_observations(
                        conn, m.member_id, q.ObservationSearch(
                            tuple(patients) if patients is not None else None,
                            tuple(sorted(codes)) if codes is not None else None, dates),
                        search.offset, search.count)
                record(conn, look(request, m.member_id, "fhir-search"), (r["patient_id"] for r in rows))
            return searchset(request, search, total, [fr.observation(r) for r in rows])

        return await guarded(request, work)

    @router.get("/Observation/{resource_id}")
    async def read_observation(resource_id: str, request: Request) -> Response:
        def work(m: Member) -> dict[str, Any]:
            parse_common(request, None)
            with pool.connection() as conn, conn.transaction():
                row = q.read_observation(conn, m.member_id, resource_id)
                if row is None:
                    raise FhirError(404, "not-found", f"Observation/{resource_id} is not known")
                record(conn, look(request, m.member_id, "fhir-read"), [row["patient_id"]])
            return fr.observation(row)

        return await guarded(request, work)

    def issue(conn: Any, alert: dict[str, Any]) -> dict[str, Any]:
        cited = alert_evidence(conn, alert, settings)
        return fr.detected_issue(alert, {rule_id: [q.observation_id(r) for r in rows]
                                         for rule_id, rows in cited.items()})

    @router.get("/DetectedIssue")
    async def search_issues(request: Request) -> Response:
        def work(m: Member) -> dict[str, Any]:
            search = parse_common(request, "DetectedIssue")
            with pool.connection() as conn, conn.transaction():
                patients = patients_named(conn, m.member_id, search, "patient")
                by_id = ids_named(search)
                alert_ids = None if by_id is None else [int(i) for i in by_id if i.isdigit()]
                total, rows = q.search_alerts(conn, m.member_id, patients, alert_ids, search.offset, search.count)
                entries = [issue(conn, r) for r in rows]
                record(conn, look(request, m.member_id, "fhir-search"), (r["patient_id"] for r in rows))
            return searchset(request, search, total, entries)

        return await guarded(request, work)

    @router.get("/DetectedIssue/{resource_id}")
    async def read_issue(resource_id: str, request: Request) -> Response:
        def work(m: Member) -> dict[str, Any]:
            parse_common(request, None)
            with pool.connection() as conn, conn.transaction():
                rows = q.search_alerts(conn, m.member_id, None, [int(resource_id)], 0, 1)[1] \
                    if resource_id.isdigit() and len(resource_id) < 19 else []
                if not rows:
                    raise FhirError(404, "not-found", f"DetectedIssue/{resource_id} is not known")
                record(conn, look(request, m.member_id, "fhir-read"), [rows[0]["patient_id"]], rows[0]["alert_id"])
                return issue(conn, rows[0])

        return await guarded(request, work)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def elsewhere(rest: str, request: Request) -> Response:
        """Anything else under /fhir/r4: a FHIR 404 (unknown type or operation) or 405 (this API only reads)."""
        if request.method != "GET":
            return refusal(FhirError(405, "not-supported", f"{request.method} is not supported: this API is read-only"))
        return refusal(FhirError(404, "not-supported", f"/fhir/r4/{rest} is not a resource type or operation this"
                                 " server supports (metadata, Patient, Device, Observation, DetectedIssue,"
                                 " CodeSystem/respmon)"))

    return router


def rule_time(value: Any, default: datetime) -> datetime:
    """A contributing rule's `at` (ISO text in the alert's `rules`), else the alert's finding time."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            return default
    return default
