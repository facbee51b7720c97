"""The generic checks ingest runs on every parsed upload: record count and plausible dates (issue 13)."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import AwareDatetime, BaseModel

from ingest.limits import Limits, check_records, record_times, time_out_of_range
from respmon.core.settings import Settings
from schemas import NivNight, OximetryNight, SpirometrySession

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LIMITS = Limits()
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = NOW + timedelta(days=1)


def session(taken_at: datetime) -> SpirometrySession:
    """Built without validation: the schema's own bounds may refuse some of these first."""
    return SpirometrySession.model_construct(patient_id="P-1", taken_at=taken_at)


class Sample(BaseModel):
    at: AwareDatetime
    value: float


class Nested(BaseModel):
    """A record shape no schema has yet: per-sample start times inside a list of models."""

    patient_id: str
    start: AwareDatetime
    samples: list[Sample]
    signal: list[float | None]


@pytest.mark.parametrize("when, problem", [
    (datetime(2099, 1, 1, tzinfo=UTC), "in the future"),
    (NOW + timedelta(days=1, seconds=1), "in the future"),
    (datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-12))), "outside the years 1-9999"),
    (datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1))), "outside the years 1-9999"),
    (datetime(1, 1, 1, tzinfo=UTC), "before 1990-01-01"),
    (datetime(1989, 12, 31, 23, 59, tzinfo=UTC), "before 1990-01-01"),
])
def test_a_time_out_of_range_is_refused_naming_the_field(when: datetime, problem: str) -> None:
    violation = check_records([session(datetime(2026, 1, 1, tzinfo=UTC)), session(when)], LIMITS, NOW)
    assert violation is not None and violation.field == "taken_at" and violation.where == "record 2"
    assert violation.reason.startswith("taken_at ") and problem in violation.reason


@pytest.mark.parametrize("when", [NOW, NOW + timedelta(hours=23), EARLIEST,
                                  datetime(2026, 12, 6, 11, 0, tzinfo=timezone(timedelta(hours=-1)))])
def test_a_time_in_range_passes(when: datetime) -> None:
    assert check_records([session(when)], LIMITS, NOW) is None


def test_dates_are_checked_by_the_calendar() -> None:
    night = NivNight.model_construct(patient_id="P-1", night_date=date(2099, 3, 1), usage_hours=6.0)
    assert check_records([night], LIMITS, NOW).field == "night_date"  # type: ignore[union-attr]
    assert check_records([night.model_copy(update={"night_date": date(2026, 12, 6)})], LIMITS, NOW) is None
    assert "before" in time_out_of_range(date(1989, 12, 31), EARLIEST, LATEST, LIMITS)  # type: ignore[operator]


def test_every_time_of_every_record_kind_is_found_signals_are_not_walked() -> None:
    night = OximetryNight.model_construct(patient_id="P-1", start=NOW, interval_s=1.0, spo2=[95.0], pulse=[60.0])
    assert [name for name, _ in record_times(night)] == ["start"]
    nested = Nested(patient_id="P-1", start=NOW, samples=[Sample(at=NOW, value=1), Sample(at=NOW, value=2)],
                    signal=[1.0] * 10)
    assert [name for name, _ in record_times(nested)] == ["start", "samples[0].at", "samples[1].at"]
    late = nested.model_copy(update={"samples": [Sample(at=NOW, value=1), Sample(at=NOW.replace(year=2099), value=2)]})
    assert check_records([late], LIMITS, NOW).field == "samples[1].at"  # type: ignore[union-attr]


def test_the_record_count_is_limited_with_the_figure() -> None:
    records = [session(NOW)] * 3
    assert check_records(records, Limits(max_records=3), NOW) is None
    violation = check_records(records, Limits(max_records=2), NOW)
    assert violation is not None and "3 records" in violation.reason and "at most 2" in violation.reason


def test_limits_are_settable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Limits.from_settings(Settings()) == Limits()  # the dataclass defaults are the settings' defaults
    monkeypatch.setenv("RESPMON_MAX_CLOCK_SKEW_S", "60")
    monkeypatch.setenv("RESPMON_MIN_RECORD_DATE", "2000-01-01")
    monkeypatch.setenv("RESPMON_MAX_RECORDS_PER_UPLOAD", "10")
    monkeypatch.setenv("RESPMON_REJECTED_BYTES_QUOTA", "4096")
    limits = Limits.from_settings(Settings())
    assert limits == Limits(10, 60.0, date(2000, 1, 1), 4096)
    assert check_records([session(NOW + timedelta(seconds=61))], limits, NOW).field == "taken_at"  # type: ignore[union-attr]
    assert "before 2000-01-01" in check_records([session(datetime(1999, 6, 1, tzinfo=UTC))], limits, NOW).reason  # type: ignore[union-attr]


def test_a_real_sd_card_year_fits_the_default_record_limit() -> None:
    """The default must let a real backfill through: an STR.edf holds one night per day of the card."""
    from pathlib import Path

    from ingest.parsers import parse_path

    card = Path(__file__).resolve().parents[1] / "data" / "resmed" / "airsense10_autoset" / "STR.edf"
    nights = parse_path(card, patient_id="P-1")
    assert 200 < len(nights) and 365 * 10 < Limits().max_records
