"""A ResMed night's STR summary and its session values (PLD, SAD/SA2) land on one niv_nights row on the real
PostgreSQL, whichever arrives first, one event at a time or in one batch, and neither clears the other's
values (issue 18: "merged with the STR summary of the same night instead of a second night")."""

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.parsers import parse_path
from processors import store
from processors.rules.history import PatientHistory
from schemas import Envelope, NivNight
from tests.test_storage.helpers import envelope, run

pytestmark = pytest.mark.stack
CARD = Path(__file__).resolve().parents[1] / "data" / "resmed" / "aircurve10_vauto"
PLD = CARD / "DATALOG" / "20250202" / "20250202_223725_PLD.edf"
NIGHT = date(2025, 2, 2)
COLUMNS = ("source, basis, usage_hours, ahi, leak_p95_lpm, resp_rate, pct_spont_triggered, ipap_p50_cmh2o,"
           " ipap_p95_cmh2o, epap_p50_cmh2o, epap_p95_cmh2o, pressure_p50_cmh2o, spo2_min")


def parts(patient: str) -> tuple[NivNight, NivNight]:
    """The night's STR summary and its PLD session part, as two uploads give them."""
    (str_night,) = [n for n in parse_path(CARD / "STR.edf", patient_id=patient) if n.night_date == NIGHT]
    (session,) = parse_path(PLD, patient_id=patient)
    return str_night, session


def stored(db: psycopg.Connection, patient: str) -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT {COLUMNS} FROM niv_nights WHERE patient_id = %s", (patient,)).fetchall()  # type: ignore[arg-type]


def one_by_one(db_url: str, envs: list[Envelope]) -> None:
    for env in envs:
        run(db_url, lambda conn, env=env: store.store_record(conn, env))


def in_one_batch(db_url: str, envs: list[Envelope]) -> None:
    run(db_url, lambda conn: store.store_records(conn, envs))


WRITES: dict[str, Callable[[str, list[Envelope]], None]] = {"one_by_one": one_by_one, "in_one_batch": in_one_batch}


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("order", ["str_first", "sessions_first"])
def test_str_and_session_values_make_one_night_in_either_order(db_url: str, db: psycopg.Connection, order: str,
                                                               write: str) -> None:
    patient = f"M-{order}-{write}"
    str_night, session = parts(patient)
    first, second = (str_night, session) if order == "str_first" else (session, str_night)
    WRITES[write](db_url, [envelope(first), envelope(second)])
    rows = stored(db, patient)
    assert len(rows) == 1  # one night, not a second one
    (source, basis, usage, ahi, leak95, rate, spont, ipap50, ipap95, epap50, epap95, pressure50, spo2_min) = rows[0]
    assert source == "resmed_str" and basis == "day_summary"
    # STR's values for the whole day (5 mask sessions) win where both give one
    assert usage == pytest.approx(9.2) and ahi == pytest.approx(1.3) and rate == pytest.approx(15.4)
    assert spont == pytest.approx(99.0) and leak95 == pytest.approx(0.0)
    # the session values STR does not have are kept (bilevel: IPAP/EPAP, no CPAP pressure)
    assert (ipap50, ipap95, epap50, epap95) == (pytest.approx(19.0), pytest.approx(19.0), pytest.approx(16.4),
                                                pytest.approx(16.4))
    assert pressure50 is None and spo2_min is None  # no oximeter on this card


def test_both_orders_and_replays_end_in_the_same_row(db_url: str, db: psycopg.Connection) -> None:
    a_str, a_session = parts("M-same-a")
    b_str, b_session = parts("M-same-b")
    one_by_one(db_url, [envelope(a_str), envelope(a_session), envelope(a_str)])
    one_by_one(db_url, [envelope(b_session), envelope(b_str), envelope(b_session)])
    assert stored(db, "M-same-a") == stored(db, "M-same-b")


def test_a_session_part_alone_is_a_night_until_str_arrives(db_url: str, db: psycopg.Connection) -> None:
    str_night, session = parts("M-alone")
    one_by_one(db_url, [envelope(session)])
    ((_, basis, usage, ahi, *_),) = stored(db, "M-alone")
    assert basis == "sessions" and usage == pytest.approx(1.583) and ahi is None  # the one session it knows
    one_by_one(db_url, [envelope(str_night)])
    ((_, basis, usage, ahi, *_),) = stored(db, "M-alone")
    assert basis == "day_summary" and usage == pytest.approx(9.2) and ahi == pytest.approx(1.3)


@pytest.mark.parametrize("order", ["str_first", "sessions_first"])
def test_the_rules_see_the_same_merged_night(order: str) -> None:
    """The worker's patient history merges the parts as the table does: one row, STR's usage, the IPAP."""
    str_night, session = parts("M-history")
    history = PatientHistory("M-history")
    for record in (str_night, session) if order == "str_first" else (session, str_night):
        history.add(record)
    assert history.add(str_night) is False and history.add(session) is False  # replays change nothing
    (row,) = history.rows("niv")
    assert row["usage_hours"] == pytest.approx(9.2) and row["ahi"] == pytest.approx(1.3)
    assert row["ipap_p50_cmh2o"] == pytest.approx(19.0) and row["basis"] == "day_summary"
