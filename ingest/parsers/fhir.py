"""FHIR R4 Bundle of Observations (validated with fhir.resources.R4B) to canonical records.

* Spirometry codes grouped by (subject, effective time, posture) -> one SpirometrySession.
* SpO2 / pulse as ``valueSampledData`` (period in ms, ``E``/``L``/``U`` = no reading) -> OximetryNight.
* NIV codes (AHI, resp rate, local ``usage_hours``/``leak_p95``) grouped -> NivNight when usage is given.
* Blood gas codes (pCO2, bicarbonate, pH, pO2) grouped by (subject, effective time) -> BloodGas; the pCO2
  code says the sample (arterial, capillary, venous, transcutaneous, end-tidal), else another code of the
  group, else venous (the screen, the milder reading). Pressures need a unit (mmHg or kPa).
* Inhaled oxygen flow (LOINC 3151-8), as its own Observation at the recording's time or as a component of
  it, sets the oximetry night's ``supplemental_o2``/``o2_lpm`` or the NIV night's ``o2_lpm`` (issue 12:
  oxygen nights count, and desaturation despite oxygen is worse news).
Everything not used is listed in ``ctx.notes`` (entry number and code only), never silently dropped;
a bundle with no usable observation is a ParseError.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from ingest.logsafe import device_text
from ingest.parsers.common import (
    MAX_SAMPLES,
    Context,
    build,
    clean_pulse,
    clean_spo2,
    localize,
    validation_reason,
)
from ingest.parsers.jsonfile import load_json
from schemas import BloodGas, NivNight, OximetryNight, SpirometrySession
from schemas.base import plausible_time

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
LOCAL = "urn:respmon:code"
BODY_POSITION = "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition"
POSTURES = {"40199007": "supine", "33586001": "sitting"}
SKIP_STATUS = {"entered-in-error", "cancelled", "registered"}

L = {"L": 1.0, "l": 1.0, "mL": 0.001, "ml": 0.001}
PCT = {"%": 1.0}
CMH2O = {"cm[H2O]": 1.0, "cmH2O": 1.0, "cm H2O": 1.0, "kPa": 10.197}
LPM = {"L/min": 1.0, "l/min": 1.0, "L/s": 60.0, "l/s": 60.0}
PER_MIN = {"/min": 1.0, "{beats}/min": 1.0, "{breaths}/min": 1.0, "bpm": 1.0, "beats/min": 1.0, "breaths/min": 1.0}
PER_H = {"/h": 1.0, "{events}/h": 1.0, "events/h": 1.0, "{#}/h": 1.0}
HOURS = {"h": 1.0, "hr": 1.0, "hours": 1.0}
MMHG = {"mm[Hg]": 1.0, "mmHg": 1.0, "kPa": 7.50062}
MMOL_L = {"mmol/L": 1.0, "mmol/l": 1.0, "meq/L": 1.0, "mEq/L": 1.0}
PH = {"[pH]": 1.0, "pH": 1.0, "1": 1.0}
GAS = "blood_gas"
O2_FLOW = {"L/min": 1.0, "l/min": 1.0, "mL/min": 0.001, "ml/min": 0.001}
OXYGEN = "oxygen"
"""Kind of the inhaled-oxygen group: it joins the oximetry or NIV group of the same subject and time."""


@dataclass(frozen=True)
class Code:
    """Where a coded value goes: record kind, field, accepted units (to canonical factor), label."""

    kind: str
    field: str
    units: dict[str, float]
    label: str
    sample: str | None = None
    """Blood gas codes: the sample the code names (a pCO2 code's is the record's)."""
    needs_unit: bool = False
    """A value without a unit is refused (a pressure in kPa read as mmHg would look normal)."""


CODES: dict[tuple[str, str], Code] = {
    (LOINC, "19870-5"): Code("spirometry", "fvc_l", L, "FVC"),
    (LOINC, "19868-9"): Code("spirometry", "fvc_l", L, "FVC"),
    (LOINC, "19872-1"): Code("spirometry", "fvc_pct_pred", PCT, "FVC % predicted"),
    (LOINC, "20150-9"): Code("spirometry", "fev1_l", L, "FEV1"),
    (LOINC, "19867-1"): Code("spirometry", "svc_l", L, "VC"),
    (LOINC, "19866-3"): Code("spirometry", "svc_l", L, "VC"),
    (SNOMED, "27913002"): Code("spirometry", "mip_cmh2o", CMH2O, "MIP"),
    (LOCAL, "mep"): Code("spirometry", "mep_cmh2o", CMH2O, "MEP"),
    (LOCAL, "snip"): Code("spirometry", "snip_cmh2o", CMH2O, "SNIP"),
    (LOCAL, "pcf"): Code("spirometry", "pcf_lpm", LPM, "PCF"),
    (LOINC, "59408-5"): Code("oximetry", "spo2", PCT, "SpO2"),
    (LOINC, "8889-8"): Code("oximetry", "pulse", PER_MIN, "pulse"),
    (LOINC, "9279-1"): Code("niv", "resp_rate", PER_MIN, "respiratory rate"),
    (LOINC, "69990-0"): Code("niv", "ahi", PER_H, "AHI"),
    (LOCAL, "usage_hours"): Code("niv", "usage_hours", HOURS, "NIV usage"),
    (LOCAL, "leak_p95"): Code("niv", "leak_p95_lpm", LPM, "leak 95th percentile"),
    (LOINC, "2019-8"): Code(GAS, "pco2_mmhg", MMHG, "pCO2", "arterial", needs_unit=True),
    (LOINC, "2020-6"): Code(GAS, "pco2_mmhg", MMHG, "pCO2", "capillary", needs_unit=True),
    (LOINC, "2021-4"): Code(GAS, "pco2_mmhg", MMHG, "pCO2", "venous", needs_unit=True),
    (LOINC, "33022-5"): Code(GAS, "pco2_mmhg", MMHG, "pCO2", "transcutaneous", needs_unit=True),
    (LOINC, "19889-5"): Code(GAS, "pco2_mmhg", MMHG, "pCO2", "end_tidal", needs_unit=True),
    (LOINC, "11557-6"): Code(GAS, "pco2_mmhg", MMHG, "pCO2", None, needs_unit=True),
    (LOINC, "1960-4"): Code(GAS, "bicarbonate_mmol_l", MMOL_L, "bicarbonate", "arterial"),
    (LOINC, "1961-2"): Code(GAS, "bicarbonate_mmol_l", MMOL_L, "bicarbonate", "capillary"),
    (LOINC, "14627-4"): Code(GAS, "bicarbonate_mmol_l", MMOL_L, "bicarbonate", "venous"),
    (LOINC, "1963-8"): Code(GAS, "bicarbonate_mmol_l", MMOL_L, "bicarbonate", "venous"),  # serum: venepuncture
    (LOINC, "1959-6"): Code(GAS, "bicarbonate_mmol_l", MMOL_L, "bicarbonate"),
    (LOINC, "2744-1"): Code(GAS, "ph", PH, "pH", "arterial"),
    (LOINC, "2745-8"): Code(GAS, "ph", PH, "pH", "capillary"),
    (LOINC, "2746-6"): Code(GAS, "ph", PH, "pH", "venous"),
    (LOINC, "11558-4"): Code(GAS, "ph", PH, "pH"),
    (LOINC, "2703-7"): Code(GAS, "po2_mmhg", MMHG, "pO2", "arterial", needs_unit=True),
    (LOINC, "3151-8"): Code(OXYGEN, "o2_lpm", O2_FLOW, "inhaled oxygen flow"),
}

GroupKey = tuple[str, str, datetime | date, str | None]


def parse_fhir_bundle(data: bytes, ctx: Context) -> list[Any]:
    bundle = _bundle(load_json(data, ctx), ctx)
    full_urls = {e.fullUrl: e.resource for e in bundle.entry or [] if e.fullUrl and e.resource is not None}
    groups: dict[GroupKey, dict[str, Any]] = defaultdict(dict)
    for index, entry in enumerate(bundle.entry or []):
        resource = entry.resource
        kind = type(resource).__name__ if resource is not None else "empty"
        if kind != "Observation":
            if kind != "Patient":
                ctx.notes.add(f"entry {index}: {kind} resource ignored", "resource not an Observation")
            continue
        _collect(resource, index, full_urls, groups, ctx)
    records = _records(groups, ctx)
    if not records:
        first = f" ({ctx.notes.text[0]})" if ctx.notes.text else ""
        raise ctx.error(f"no usable observation in bundle{first}")
    return records


def _bundle(doc: Any, ctx: Context) -> Any:
    from fhir.resources.R4B.bundle import Bundle  # slow import, only when a bundle arrives

    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        raise ctx.error("not a FHIR Bundle (resourceType must be 'Bundle')")
    try:
        return Bundle.model_validate(doc)
    except ValidationError as exc:
        path, reason = validation_reason(exc)
        raise ctx.error(reason, f"field {path}") from None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise ctx.error(f"invalid FHIR Bundle ({type(exc).__name__})") from None


def _collect(
    obs: Any, index: int, full_urls: dict[str, Any], groups: dict[GroupKey, dict[str, Any]], ctx: Context
) -> None:
    """Add an Observation's value(s) and components to their group, or note why they are skipped."""
    where = f"entry {index}"
    if obs.status in SKIP_STATUS:
        ctx.notes.add(f"{where}: status {obs.status} skipped", f"status {obs.status}")
        return
    pairs = [(obs.code, obs)] + [(c.code, c) for c in obs.component or []]
    patient = _patient(obs, full_urls, ctx, where)
    when = _effective(obs, ctx, where)
    posture = _posture(obs)
    for code_concept, holder in pairs:
        code, label = _known(code_concept)
        if code is None:
            if holder is not obs or obs.valueQuantity is not None or obs.valueSampledData is not None:
                ctx.notes.add(f"{where}: code {label} not supported (skipped)", "code not supported", label)
            continue
        value = _value(code, holder, ctx, where)
        if value is None:
            continue
        key = (code.kind, patient, when, posture if code.kind == "spirometry" else None)
        if code.field in groups[key]:
            raise ctx.error(f"{code.label} given twice for the same subject and time", where)
        groups[key][code.field] = value
        if code.sample is not None:  # a pCO2 code names the record's sample; another code only hints it
            groups[key]["sample" if code.field == "pco2_mmhg" else "sample_hint"] = code.sample


def _known(concept: Any) -> tuple[Code | None, str]:
    """The code we map, or None and a label of the first coding (escaped and truncated: device text)."""
    codings = list(getattr(concept, "coding", None) or [])
    for coding in codings:
        found = CODES.get((coding.system or "", coding.code or ""))
        if found:
            return found, f"{coding.system}|{coding.code}"
    if not codings:
        return None, "(no coding)"
    return None, f"{device_text(codings[0].system, 40)}|{device_text(codings[0].code, 32)}"


def _patient(obs: Any, full_urls: dict[str, Any], ctx: Context, where: str) -> str:
    """Patient id from `subject.reference` ('Patient/<id>', a URL ending so, or a bundle fullUrl)."""
    reference = obs.subject.reference if obs.subject is not None else None
    found: str | None = None
    if reference:
        if reference in full_urls and type(full_urls[reference]).__name__ == "Patient":
            found = full_urls[reference].id
        elif "Patient/" in reference:
            found = reference.rsplit("Patient/", 1)[1].split("/", 1)[0]
        else:
            raise ctx.error("subject.reference is not a Patient reference", where)
    return ctx.patient_for(found, where)


def _effective(obs: Any, ctx: Context, where: str) -> datetime | date:
    """When the observation was made, in the years 1900-2099: `0001-01-01T00:00:00Z` once reached
    the NIV night shift (12 h back) and overflowed there, a crash instead of a ParseError."""
    field, value = "effectiveDateTime", obs.effectiveDateTime
    if value is None:
        field, value = "effectiveInstant", obs.effectiveInstant
    if value is None and obs.effectivePeriod is not None:
        field, value = "effectivePeriod.start", obs.effectivePeriod.start
    if isinstance(value, datetime):
        value = localize(value, ctx.tz)
    elif not isinstance(value, date):
        raise ctx.error("observation has no effective date/time", where)
    if not plausible_time(value):
        raise ctx.error(f"{field} out of range (years 1900-2099)", where)
    return value


def _posture(obs: Any) -> str | None:
    for ext in obs.extension or []:
        if ext.url == BODY_POSITION and ext.valueCodeableConcept is not None:
            for coding in ext.valueCodeableConcept.coding or []:
                if coding.code in POSTURES:
                    return POSTURES[coding.code]
    return None


def _value(code: Code, holder: Any, ctx: Context, where: str) -> Any:
    """A canonical number, or a list of samples for sampled oximetry; spot oximetry is noted and skipped."""
    sampled = getattr(holder, "valueSampledData", None)
    quantity = getattr(holder, "valueQuantity", None)
    if code.kind == "oximetry":
        if sampled is None:
            ctx.notes.add(f"{where}: spot {code.label} is not an overnight recording (skipped)", "spot oximetry")
            return None
        return _samples(sampled, code, ctx, where)
    if quantity is None or quantity.value is None:
        raise ctx.error(f"{code.label} needs a valueQuantity", where)
    unit = quantity.code or quantity.unit
    if unit is None and code.needs_unit:
        raise ctx.error(f"{code.label}: unit required ({', '.join(code.units)})", where)
    if unit is not None and unit not in code.units:
        raise ctx.error(f"{code.label}: unit {unit!r} not supported", where)
    try:
        value = float(Decimal(quantity.value) * Decimal(str(code.units.get(unit or "", 1.0))))
    except ArithmeticError:  # decimal.Overflow: '9e999999' kPa has no float, let alone a pressure
        raise ctx.error(f"{code.label}: value out of range", where) from None
    if not math.isfinite(value):
        raise ctx.error(f"{code.label}: value out of range", where)
    return value


def _samples(sampled: Any, code: Code, ctx: Context, where: str) -> tuple[float, list[float | None]]:
    """(interval s, samples) from SampledData; E/L/U codes and device no-reading codes -> None."""
    period_ms = float(sampled.period or 0)
    if not 0 < period_ms <= 60_000:
        raise ctx.error(f"{code.label}: SampledData period must be 0-60000 ms", where)
    factor = float(sampled.factor or 1)
    origin = float(sampled.origin.value or 0) if sampled.origin is not None else 0.0
    tokens = (sampled.data or "").split()
    if len(tokens) > MAX_SAMPLES:
        raise ctx.error(f"{code.label}: more than {MAX_SAMPLES} samples", where)
    clean = clean_spo2 if code.field == "spo2" else clean_pulse
    values: list[float | None] = []
    for token in tokens:
        if token in {"E", "L", "U"}:
            values.append(None)
            continue
        try:
            values.append(clean(round(origin + float(token) * factor, 2)))
        except ValueError:
            raise ctx.error(f"{code.label}: SampledData holds a non-number", where) from None
    return period_ms / 1000, values


def _join_oxygen(groups: dict[GroupKey, dict[str, Any]], ctx: Context) -> None:
    """Move each oxygen flow onto the oximetry and NIV groups of its subject and time; note one that has
    neither (a flow alone is not a night)."""
    for key in [k for k in groups if k[0] == OXYGEN]:
        flow = groups.pop(key)["o2_lpm"]
        _, patient, when, _ = key
        targets = [k for k in groups if k[0] in ("oximetry", "niv") and k[1:3] == (patient, when)]
        for target in targets:
            groups[target]["o2_lpm"] = flow
        if not targets:
            at = when.isoformat()
            ctx.notes.add(f"observations of {at}: inhaled oxygen flow without an oximetry or NIV recording at that "
                          "time (skipped)", "oxygen flow without a recording")


def _records(groups: dict[GroupKey, dict[str, Any]], ctx: Context) -> list[Any]:
    records: list[Any] = []
    _join_oxygen(groups, ctx)
    for (kind, patient, when, posture), fields in groups.items():
        at = when if isinstance(when, datetime) else datetime.combine(when, time(), ctx.tz)
        stamp = f"observations of {at.isoformat()}"
        if kind == "spirometry":
            values = dict(fields, patient_id=patient, taken_at=at, source="fhir")
            if posture:
                values["posture"] = posture
            records.append(build(SpirometrySession, values, ctx, stamp))
        elif kind == "oximetry":
            records.append(_oximetry(patient, at, fields, ctx, stamp))
        elif kind == GAS:
            records.extend(_blood_gas(patient, at, fields, ctx, stamp))
        elif "usage_hours" not in fields:
            ctx.notes.add(f"{stamp}: NIV values without usage_hours cannot form a NIV night (skipped)",
                          "NIV values without usage_hours")
        else:
            night = when - timedelta(hours=12) if isinstance(when, datetime) else when
            night_date = night.date() if isinstance(night, datetime) else night
            values = dict(fields, patient_id=patient, night_date=night_date, source="fhir")
            records.append(build(NivNight, values, ctx, stamp))
    return records


def _oximetry(patient: str, start: datetime, fields: dict[str, Any], ctx: Context, stamp: str) -> OximetryNight:
    if "spo2" not in fields:
        raise ctx.error("sampled pulse without sampled SpO2", stamp)
    interval, spo2 = fields["spo2"]
    pulse_interval, pulse = fields.get("pulse", (interval, [None] * len(spo2)))
    if pulse_interval != interval or len(pulse) != len(spo2):
        raise ctx.error("sampled SpO2 and pulse differ in period or length", stamp)
    if not any(v is not None for v in spo2):
        raise ctx.error("no valid SpO2 samples", stamp)
    values = {
        "patient_id": patient,
        "start": start,
        "interval_s": interval,
        "spo2": spo2,
        "pulse": pulse,
        "source": "fhir",
    }
    if "o2_lpm" in fields:
        values |= {"supplemental_o2": fields["o2_lpm"] > 0, "o2_lpm": fields["o2_lpm"]}
    return build(OximetryNight, values, ctx, stamp)


def _blood_gas(patient: str, at: datetime, fields: dict[str, Any], ctx: Context, stamp: str) -> list[BloodGas]:
    """The pCO2 code's sample, else one another code of the group names, else venous (the screen). A pH or
    pO2 without pCO2 or bicarbonate says nothing of CO2: noted and skipped."""
    values = dict(fields)
    hint = values.pop("sample_hint", None)
    values.setdefault("sample", hint or "venous")
    if "pco2_mmhg" not in values and "bicarbonate_mmol_l" not in values:
        ctx.notes.add(f"{stamp}: blood gas values without pCO2 or bicarbonate (skipped)", "gas without CO2 values")
        return []
    return [build(BloodGas, dict(values, patient_id=patient, taken_at=at, source="fhir"), ctx, stamp)]
