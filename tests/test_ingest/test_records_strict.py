"""Every canonical record refuses booleans, NaN/inf and implausible dates in any numeric or time field.

pydantic's lax mode reads `true` as 1: `"fvc_l": true` was stored as 1.0 L. These checks live in the
schemas, so every parser (and the worker reading Kafka) gets them.
"""

from __future__ import annotations

import typing
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import AlsfrsR, BloodGas, CapnographyNight, NivNight, OximetryNight, SpirometrySession

AT = datetime(2026, 3, 1, 9, tzinfo=UTC)
VALID: dict[type[BaseModel], dict[str, Any]] = {
    SpirometrySession: {"patient_id": "P1", "taken_at": AT, "fvc_l": 2, "fvc_pct_pred": 60, "fev1_l": 2, "svc_l": 2,
                        "mip_cmh2o": 45, "mep_cmh2o": 60, "snip_cmh2o": 40, "pcf_lpm": 250, "age_years": 60,
                        "height_cm": 170},
    OximetryNight: {"patient_id": "P1", "start": AT, "interval_s": 1, "spo2": [95, None], "pulse": [60, None],
                    "motion": [0, 3], "o2_lpm": 2},
    NivNight: {"patient_id": "P1", "night_date": date(2026, 3, 1), "usage_hours": 7, "leak_p50_lpm": 5,
               "leak_p95_lpm": 20, "ahi": 3, "resp_rate": 16, "tidal_volume_ml": 400, "minute_vent_lpm": 7,
               "spo2_mean": 95, "spo2_t90_pct": 1, "pct_spont_triggered": 80, "mask_sessions": 1, "o2_lpm": 2,
               "pressure_p50_cmh2o": 9, "pressure_p95_cmh2o": 11, "ipap_p50_cmh2o": 18, "ipap_p95_cmh2o": 19,
               "epap_p50_cmh2o": 6, "epap_p95_cmh2o": 7, "spo2_min": 88},
    AlsfrsR: {"patient_id": "P1", "taken_at": AT, "items": [4] * 12},
    BloodGas: {"patient_id": "P1", "taken_at": AT, "sample": "arterial", "pco2_mmhg": 45, "bicarbonate_mmol_l": 27,
               "ph": 7, "po2_mmhg": 80},
    CapnographyNight: {"patient_id": "P1", "start": AT, "interval_s": 1, "tcpco2": [45, None], "spo2": [95, None],
                       "pulse": [60, None]},
}
NUMERIC = [(model, name) for model, values in VALID.items() for name in values
           if not isinstance(values[name], (date, datetime, str))]


def _numeric_fields(model: type[BaseModel]) -> set[str]:
    """Fields whose type mentions float or int, or is a sample series (`schemas.samples.Samples`, numbers
    only); bool fields such as `on_niv` excluded."""
    found = set()
    for name, info in model.model_fields.items():
        text = repr(info.annotation) + repr(typing.get_args(info.annotation))
        if ("float" in text or "int" in text or "Samples" in text) and "Literal" not in text:
            found.add(name)
    return found


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
def test_every_numeric_field_is_covered(model: type[BaseModel]) -> None:
    assert _numeric_fields(model) == {name for m, name in NUMERIC if m is model}


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
def test_ints_stay_valid_numbers(model: type[BaseModel]) -> None:
    record = model.model_validate(VALID[model])  # 45 for mip_cmh2o, 95 for a sample, 1 for interval_s
    assert record.model_dump()["patient_id"] == "P1"


def _with(model: type[BaseModel], name: str, bad: object) -> dict[str, Any]:
    """The valid record with field `name` (or its first element, for a list) replaced by `bad`."""
    values = dict(VALID[model])
    current = values[name]
    values[name] = [bad, *current[1:]] if isinstance(current, list) else bad
    return values


@pytest.mark.parametrize(("model", "name"), NUMERIC, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("bad", [True, False, float("nan"), float("inf"), float("-inf")], ids=repr)
def test_booleans_and_non_finite_numbers_are_refused(model: type[BaseModel], name: str, bad: object) -> None:
    with pytest.raises(ValidationError) as err:
        model.model_validate(_with(model, name, bad))
    assert err.value.errors()[0]["loc"][0] == name


def test_boolean_error_says_why() -> None:
    with pytest.raises(ValidationError, match="must be a number, not true/false"):
        SpirometrySession.model_validate(_with(SpirometrySession, "fvc_l", True))


def test_mip_written_negative_is_still_its_magnitude() -> None:
    assert SpirometrySession.model_validate(_with(SpirometrySession, "mip_cmh2o", -45)).mip_cmh2o == 45


@pytest.mark.parametrize(
    "when",
    [datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
     datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-12))),  # year 10000 in UTC
     datetime(2099, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12))), datetime(1899, 12, 31, 23, tzinfo=UTC)],
    ids=str,
)
@pytest.mark.parametrize(("model", "name"), [(SpirometrySession, "taken_at"), (OximetryNight, "start"),
                                             (AlsfrsR, "taken_at"), (BloodGas, "taken_at"),
                                             (CapnographyNight, "start")], ids=str)
def test_instants_outside_1900_2099_are_refused(model: type[BaseModel], name: str, when: datetime) -> None:
    with pytest.raises(ValidationError, match="years 1900-2099"):
        model.model_validate(_with(model, name, when))


@pytest.mark.parametrize("day", [date(1, 1, 1), date(9999, 12, 31), date(1899, 12, 31), date(2100, 1, 1)], ids=str)
def test_niv_night_outside_1900_2099_is_refused(day: date) -> None:
    with pytest.raises(ValidationError, match="years 1900-2099"):
        NivNight.model_validate(_with(NivNight, "night_date", day))


def test_range_edges_are_valid() -> None:
    assert SpirometrySession.model_validate(_with(SpirometrySession, "taken_at", datetime(1900, 1, 1, tzinfo=UTC)))
    late = datetime(2099, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=14)))
    assert SpirometrySession.model_validate(_with(SpirometrySession, "taken_at", late))
    assert NivNight.model_validate(_with(NivNight, "night_date", date(2099, 12, 31)))


@pytest.mark.parametrize(("model", "name", "bad"), [(OximetryNight, "spo2", 3276.8), (OximetryNight, "pulse", -1),
                                                    (OximetryNight, "motion", 3277), (OximetryNight, "spo2", "95"),
                                                    (NivNight, "mask_sessions", 10**12)], ids=str)
def test_samples_and_counts_the_store_cannot_hold_are_refused(model: type[BaseModel], name: str, bad: object) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(_with(model, name, bad))
