"""What each stored value and nightly metric is called in FHIR: its code(s), unit and category.

Every Observation carries a code of the project code system ``urn:respmon:code`` (one per value, so a
search or a receiving system can always tell a night's mean SpO2 from the ventilator's), and LOINC codings
where LOINC has the concept. LOINC codes were checked against published LOINC displays (README, FHIR
section, lists them); a value LOINC has no code for, or whose code could not be confirmed here (overnight
statistics, respiratory-muscle pressures, ventilator metrics, transcutaneous pCO2), has the project code
only. Units are UCUM. The same list is served as the CodeSystem resource ``/fhir/r4/CodeSystem/respmon``.
"""

from dataclasses import dataclass

from schemas.kinds import ALSFRS, BLOOD_GAS, CAPNOGRAPHY, NIV, OXIMETRY, SPIROMETRY, Kind

RESPMON_SYSTEM = "urn:respmon:code"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass(frozen=True)
class Loinc:
    code: str
    display: str


@dataclass(frozen=True)
class ObsDef:
    """One kind of Observation: a column of a record kind's table (for blood gases: of one sample type)."""

    code: str
    """The ``urn:respmon:code`` code; also the first part of the Observation's id (letters, digits, '-')."""
    display: str
    kind: Kind
    column: str
    unit: str
    """UCUM code (also shown as the unit)."""
    category: str
    """observation-category code: vital-signs, exam, laboratory, survey, therapy."""
    loinc: tuple[Loinc, ...] = ()
    sample: str | None = None
    """Blood gases: the `sample` column value the definition covers."""
    definition: str = ""


_FVC = Loinc("19870-5", "Forced vital capacity [Volume] Respiratory system")
_SPO2 = (Loinc("2708-6", "Oxygen saturation in Arterial blood"),
         Loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"))
_PULSE = (Loinc("8867-4", "Heart rate"), Loinc("8889-8", "Heart rate by Pulse oximetry"))
_RR = (Loinc("9279-1", "Respiratory rate"),)

_GAS_LOINC: dict[tuple[str, str], Loinc] = {
    ("pco2_mmhg", "arterial"): Loinc("2019-8", "Carbon dioxide [Partial pressure] in Arterial blood"),
    ("pco2_mmhg", "capillary"): Loinc("2020-6", "Carbon dioxide [Partial pressure] in Capillary blood"),
    ("pco2_mmhg", "venous"): Loinc("2021-4", "Carbon dioxide [Partial pressure] in Venous blood"),
    ("pco2_mmhg", "end_tidal"): Loinc("19889-5",
                                      "Carbon dioxide [Partial pressure] in Exhaled gas --at end expiration"),
    ("bicarbonate_mmol_l", "arterial"): Loinc("1960-4", "Bicarbonate [Moles/volume] in Arterial blood"),
    ("bicarbonate_mmol_l", "capillary"): Loinc("1961-2", "Bicarbonate [Moles/volume] in Capillary blood"),
    ("bicarbonate_mmol_l", "venous"): Loinc("14627-4", "Bicarbonate [Moles/volume] in Venous blood"),
    ("ph", "arterial"): Loinc("2744-1", "pH of Arterial blood"),
    ("ph", "capillary"): Loinc("2745-8", "pH of Capillary blood"),
    ("ph", "venous"): Loinc("2746-6", "pH of Venous blood"),
    ("po2_mmhg", "arterial"): Loinc("2703-7", "Oxygen [Partial pressure] in Arterial blood"),
}
_GAS_COLUMNS = (("pco2_mmhg", "pco2", "pCO2", "mm[Hg]"), ("bicarbonate_mmol_l", "bicarbonate", "Bicarbonate", "mmol/L"),
                ("ph", "ph", "pH", "[pH]"), ("po2_mmhg", "po2", "pO2", "mm[Hg]"))
_SAMPLES = ("arterial", "capillary", "venous", "transcutaneous", "end_tidal")


def _gas_defs() -> list[ObsDef]:
    out = []
    for column, short, name, unit in _GAS_COLUMNS:
        for sample in _SAMPLES:
            if column in ("bicarbonate_mmol_l", "ph") and sample in ("transcutaneous", "end_tidal"):
                continue  # no such measurement: parsers never store one
            loinc = _GAS_LOINC.get((column, sample))
            out.append(ObsDef(f"{short}-{sample.replace('_', '-')}", f"{name}, {sample.replace('_', '-')} sample",
                              BLOOD_GAS, column, unit, "laboratory", (loinc,) if loinc else (), sample=sample))
    return out


OBSERVATIONS: tuple[ObsDef, ...] = (
    # spirometry and respiratory-muscle tests: one Observation per value of a session
    ObsDef("fvc", "Forced vital capacity", SPIROMETRY, "fvc_l", "L", "exam", (_FVC,)),
    ObsDef("fvc-pct-pred", "FVC, % of predicted", SPIROMETRY, "fvc_pct_pred", "%", "exam",
           (Loinc("19872-1", "FVC measured/predicted"),), definition="as the device or clinic reported it"),
    ObsDef("fev1", "Forced expiratory volume in 1 s", SPIROMETRY, "fev1_l", "L", "exam",
           (Loinc("20150-9", "FEV1"),)),
    ObsDef("svc", "Slow vital capacity", SPIROMETRY, "svc_l", "L", "exam",
           (Loinc("19867-1", "Vital capacity [Volume] Respiratory system"),)),
    ObsDef("mip", "Maximal inspiratory pressure (magnitude)", SPIROMETRY, "mip_cmh2o", "cm[H2O]", "exam"),
    ObsDef("mep", "Maximal expiratory pressure", SPIROMETRY, "mep_cmh2o", "cm[H2O]", "exam"),
    ObsDef("snip", "Sniff nasal inspiratory pressure", SPIROMETRY, "snip_cmh2o", "cm[H2O]", "exam"),
    ObsDef("pcf", "Peak cough flow", SPIROMETRY, "pcf_lpm", "L/min", "exam"),
    # a valid overnight oximetry night (processors/metrics/DEFINITIONS.md section 1)
    ObsDef("spo2-mean", "Mean SpO2 over the night (pulse oximetry)", OXIMETRY, "mean_spo2", "%", "vital-signs", _SPO2),
    ObsDef("spo2-min", "Lowest SpO2 of the night", OXIMETRY, "min_spo2", "%", "exam"),
    ObsDef("t90", "T90: time with SpO2 < 90 %, % of valid recording time", OXIMETRY, "t90_pct", "%", "exam"),
    ObsDef("t90-min", "Time with SpO2 < 90 %", OXIMETRY, "t90_min", "min", "exam"),
    ObsDef("t88", "T88: time with SpO2 <= 88 %, % of valid recording time", OXIMETRY, "t88_pct", "%", "exam"),
    ObsDef("t88-min", "Time with SpO2 <= 88 % (cumulative)", OXIMETRY, "t88_min", "min", "exam"),
    ObsDef("longest-le88", "Longest run with SpO2 <= 88 %", OXIMETRY, "longest_le88_min", "min", "exam"),
    ObsDef("odi3", "Oxygen desaturation index, >= 3 points (respmon-odi/1)", OXIMETRY, "odi3", "/h", "exam"),
    ObsDef("odi4", "Oxygen desaturation index, >= 4 points (respmon-odi/1)", OXIMETRY, "odi4", "/h", "exam"),
    ObsDef("pulse-mean", "Mean pulse rate over the night (pulse oximetry)", OXIMETRY, "mean_pulse", "/min",
           "vital-signs", _PULSE),
    ObsDef("oximetry-vrt", "Valid recording time of the oximetry night", OXIMETRY, "vrt_min", "min", "exam"),
    # a night of non-invasive ventilation (the ventilator's own summary)
    ObsDef("niv-usage", "NIV usage in the therapy day", NIV, "usage_hours", "h", "therapy"),
    ObsDef("niv-leak-p95", "NIV leak, 95th percentile", NIV, "leak_p95_lpm", "L/min", "therapy"),
    ObsDef("niv-ahi", "Residual apnoea-hypopnoea index reported by the ventilator", NIV, "ahi", "/h", "therapy"),
    ObsDef("niv-resp-rate", "Respiratory rate on NIV (ventilator, night summary)", NIV, "resp_rate", "/min",
           "vital-signs", _RR),
    ObsDef("niv-tidal-volume", "Tidal volume on NIV (night summary)", NIV, "tidal_volume_ml", "mL", "therapy"),
    ObsDef("niv-minute-ventilation", "Minute ventilation on NIV (night summary)", NIV, "minute_vent_lpm", "L/min",
           "therapy"),
    ObsDef("niv-spo2-mean", "Mean SpO2 on NIV (ventilator's oximeter)", NIV, "spo2_mean", "%", "vital-signs", _SPO2),
    ObsDef("niv-t90", "T90 on NIV (ventilator's oximeter), % of the night", NIV, "spo2_t90_pct", "%", "therapy"),
    ObsDef("niv-spont-triggered", "Breaths triggered by the patient", NIV, "pct_spont_triggered", "%", "therapy"),
    # ALSFRS-R form
    ObsDef("alsfrs-r-total", "ALSFRS-R total score (0-48)", ALSFRS, "total", "{score}", "survey"),
    ObsDef("alsfrs-r-respiratory", "ALSFRS-R respiratory subscore (items 10-12, 0-12)", ALSFRS, "respiratory",
           "{score}", "survey"),
    # blood gases and spot CO2 readings, per sample type
    *_gas_defs(),
    # a valid night of transcutaneous capnography (DEFINITIONS.md section 5)
    ObsDef("tcco2-mean", "Mean TcCO2 over the night", CAPNOGRAPHY, "mean_tcpco2", "mm[Hg]", "exam"),
    ObsDef("tcco2-max", "Highest TcCO2 of the night", CAPNOGRAPHY, "max_tcpco2", "mm[Hg]", "exam"),
    ObsDef("tcco2-baseline", "TcCO2 baseline (median of the first hour)", CAPNOGRAPHY, "baseline_tcpco2", "mm[Hg]",
           "exam"),
    ObsDef("tcco2-max-rise", "Largest TcCO2 rise over the baseline", CAPNOGRAPHY, "max_rise_mmhg", "mm[Hg]", "exam"),
    ObsDef("tcco2-gt50-min", "Time with TcCO2 > 50 mmHg", CAPNOGRAPHY, "gt50_min", "min", "exam"),
    ObsDef("tcco2-gt55-min", "Time with TcCO2 > 55 mmHg", CAPNOGRAPHY, "gt55_min", "min", "exam"),
    ObsDef("tcco2-rise10-min", "Time with TcCO2 >= baseline + 10 and > 50 mmHg", CAPNOGRAPHY, "rise10_min", "min",
           "exam"),
)

BY_CODE: dict[str, ObsDef] = {d.code: d for d in OBSERVATIONS}
BY_LOINC: dict[str, list[ObsDef]] = {}
for _d in OBSERVATIONS:
    for _l in _d.loinc:
        BY_LOINC.setdefault(_l.code, []).append(_d)

STORE_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("spiro", "vc_pct_pred"): ("fvc-pct-pred",),  # the better of FVC and SVC % predicted: FVC is the one stored
    ("spiro", "vc_l"): ("fvc", "svc"),
    ("alsfrs", "total"): ("alsfrs-r-total",),
    ("alsfrs", "items"): ("alsfrs-r-total", "alsfrs-r-respiratory"),
}
"""Names the rules language reads (``store.field``) that are not a column of their own, and what they rest on."""


def defs_for_field(store: str, name: str) -> tuple[ObsDef, ...]:
    """The Observation kinds a rule's ``store.field`` reads (none for fields no Observation carries)."""
    if (store, name) in STORE_FIELDS:
        return tuple(BY_CODE[c] for c in STORE_FIELDS[(store, name)])
    if store == "alsfrs" and name.startswith("item"):
        return (BY_CODE["alsfrs-r-respiratory"],) if name[4:] in ("10", "11", "12") else (BY_CODE["alsfrs-r-total"],)
    return tuple(d for d in OBSERVATIONS if d.kind.store == store and d.column == name)


CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "exam": "Exam", "laboratory": "Laboratory", "survey": "Survey",
                    "therapy": "Therapy"}

ALERT_CATEGORIES: dict[str, str] = {
    "NIV_START": "Discuss starting non-invasive ventilation",
    "NIV_ESCALATE": "Adjust or escalate non-invasive ventilation",
    "TRACH_DISCUSS": "Discuss tracheostomy ventilation",
    "DATA_QUALITY": "Data missing or of poor quality",
}
"""respmon alert categories (``schemas.findings.Category``): DetectedIssue.code."""
