"""One night (ResMed: noon to noon) of home non-invasive ventilation, as the device summarises it."""

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from schemas.base import Count, Day, Number, PatientId, Record

NightBasis = Literal["day_summary", "sessions"]


class NivNight(Record):
    """Device summary of one therapy day. Optional values are absent when the model does not report them.

    `leak_kind` matters for rules: ResMed reports unintentional leak (vent flow subtracted),
    Philips reports total leak, so the 24 L/min threshold applies to the first only. A source that
    does not say is `unknown`, never compared with it (a vented mask's normal total leak is ~40 L/min).
    `o2_lpm`: oxygen bled into the circuit (L/min), None = not recorded; desaturation despite oxygen
    is worse news, not an invalid night.

    `basis`: what the values summarise. A `day_summary` is the device's own day record (ResMed STR, a
    niv_csv row); `sessions` are values computed from its session files (ResMed PLD and SAD/SA2: pressure
    percentiles, leak and ventilation medians, the oximeter's SpO2). Both describe the same night, so
    they share its key and are merged into one night (:func:`merged`), never stored as a second one.
    Pressures: `pressure_*` on CPAP/APAP; on bilevel `ipap_*` and `epap_*` instead. `spo2_*`: the
    device's oximeter, None when none was attached.
    """

    kind: Literal["niv_night"] = "niv_night"
    schema_version: Literal[1] = 1
    patient_id: PatientId
    night_date: Day
    usage_hours: Number = Field(ge=0, le=24)
    leak_p50_lpm: Number | None = Field(default=None, ge=0, le=200)
    leak_p95_lpm: Number | None = Field(default=None, ge=0, le=200)
    leak_kind: Literal["unintentional", "total", "unknown"] = "unknown"
    ahi: Number | None = Field(default=None, ge=0, le=200)
    resp_rate: Number | None = Field(default=None, ge=0, le=80, description="breaths/min, median")
    tidal_volume_ml: Number | None = Field(default=None, ge=0, le=3000)
    minute_vent_lpm: Number | None = Field(default=None, ge=0, le=60)
    spo2_mean: Number | None = Field(default=None, ge=50, le=100)
    spo2_t90_pct: Number | None = Field(default=None, ge=0, le=100)
    pct_spont_triggered: Number | None = Field(default=None, ge=0, le=100)
    o2_lpm: Number | None = Field(default=None, ge=0, le=30, description="supplemental oxygen, L/min")
    mask_sessions: Count | None = Field(default=None, ge=0, le=1440)
    source: str = Field(default="device", min_length=1, max_length=64)
    device_model: str | None = None
    basis: NightBasis = "day_summary"
    pressure_p50_cmh2o: Number | None = Field(default=None, ge=0, le=40)
    pressure_p95_cmh2o: Number | None = Field(default=None, ge=0, le=40)
    ipap_p50_cmh2o: Number | None = Field(default=None, ge=0, le=40)
    ipap_p95_cmh2o: Number | None = Field(default=None, ge=0, le=40)
    epap_p50_cmh2o: Number | None = Field(default=None, ge=0, le=40)
    epap_p95_cmh2o: Number | None = Field(default=None, ge=0, le=40)
    spo2_min: Number | None = Field(default=None, ge=0, le=100, description="lowest device SpO2 reading")


NIGHT_KEY = ("kind", "schema_version", "patient_id", "night_date", "source")
"""What two parts of one night have in common, never merged."""
NOT_SAID: dict[str, str] = {"leak_kind": "unknown"}
"""Fields whose default means "the source does not say": a part saying it is missing there."""


def prefer_new(old_basis: str | None, new_basis: str | None) -> bool:
    """Whose value wins where both parts of a night have one: the newer part, unless it holds session
    values and the older one the day summary (the device's own figure for the whole day, e.g. its usage
    over every session, where one session file knows only itself). Same answer in either arrival order."""
    return not (old_basis == "day_summary" and new_basis == "sessions")


def merged(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Two parts of one night (field -> value, with `basis`) as one: each value from the preferred part
    (:func:`prefer_new`), else from the other; a value is never cleared by a part that lacks it.
    `processors/store.py` does the same in SQL, the patient history on its rows."""
    first, second = (new, old) if prefer_new(old.get("basis"), new.get("basis")) else (old, new)

    def said(part: Mapping[str, Any], f: str) -> bool:
        return part.get(f) is not None and part.get(f) != NOT_SAID.get(f)

    fields = dict.fromkeys([*old, *new])  # old's order, then new's own: a set's order changed per process
    out = {f: first.get(f) if said(first, f) or not said(second, f) else second[f] for f in fields}
    if "basis" in out:
        out["basis"] = "day_summary" if "day_summary" in (old.get("basis"), new.get("basis")) else "sessions"
    return out


def merge_nights(old: NivNight, new: NivNight) -> NivNight:
    """The one night two parts of the same night make (same patient, night and source)."""
    if tuple(getattr(old, f) for f in NIGHT_KEY) != tuple(getattr(new, f) for f in NIGHT_KEY):
        raise ValueError("only parts of the same night merge")
    return NivNight.model_validate(merged(dict(old), dict(new)))
