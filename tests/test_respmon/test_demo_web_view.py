"""The end of `respmon demo`: a member who can log in and read the demo team's patients, and a synthetic
history seeded once however often the demo runs (a real PostgreSQL)."""

from collections.abc import Iterator

import psycopg
import pytest

from alerts.access import may
from alerts.careteams import assign
from alerts.sessions import login
from respmon.core.settings import Settings
from respmon.demo import DEMO_MEMBER, DEMO_TEAM, HISTORY_PREFIX, demo_member, seed_history
from tests.conftest import namespace


@pytest.fixture(scope="module")
def db_url(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with namespace(tmp_path_factory.mktemp("demo-web")) as env:
        yield env["RESPMON_DATABASE_URL"]


def test_the_history_is_seeded_once_in_the_demo_team(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert seed_history(conn) == 20
        assert seed_history(conn) == 0  # a second demo finds it
        row = conn.execute("SELECT count(*) FROM patient_teams WHERE team = %s AND patient_id LIKE %s",
                           (DEMO_TEAM, f"{HISTORY_PREFIX}-%")).fetchone()
        assert row == (20,)


def test_each_demo_prints_a_fresh_password_that_logs_in_and_reads_the_demo_patients(db_url: str) -> None:
    settings = Settings(database_url=db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assign(conn, "DEMO-abc123-A", DEMO_TEAM, "demo")
        first, second = demo_member(conn), demo_member(conn)
        assert first != second
        assert login(conn, DEMO_MEMBER, first, settings, None).token is None  # the earlier one is replaced
        assert login(conn, DEMO_MEMBER, second, settings, None).token is not None
        assert may(conn, DEMO_MEMBER, "DEMO-abc123-A", "acknowledge")
        assert not may(conn, DEMO_MEMBER, "OTHER-PATIENT", "read")
