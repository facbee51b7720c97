"""The web view in-process on a real PostgreSQL: a fresh database with a small synthetic cohort in two
care teams (`respmon.testing.cohort`), members of each role with passwords, and a logged-in client."""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.sessions import set_password
from alerts.team import add_member
from respmon.core.settings import Settings
from respmon.testing.cohort import Cohort, seed
from respmon.web.app import create_app
from tests.conftest import namespace

PASSWORD = "correct horse battery staple"
NORTH, SOUTH = "north", "south"


@dataclass(frozen=True)
class WebWorld:
    db_url: str
    settings: Settings
    north: Cohort  # patients NORTH-xxxxx in team `north`
    south: Cohort  # patients SOUTH-xxxxx in team `south`


@pytest.fixture(scope="session")
def web_world(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    """Members: `nurse-north` (clinician, north), `viewer-north` (viewer, north), `nurse-south`
    (clinician, south), `admin-north` (admin only); all with PASSWORD."""
    with namespace(tmp_path_factory.mktemp("web")) as env:
        url = env["RESPMON_DATABASE_URL"]
        with psycopg.connect(url, autocommit=True) as conn:
            north = seed(conn, 12, 400, team=NORTH, prefix="NORTH", seed_value=11)
            south = seed(conn, 6, 400, team=SOUTH, prefix="SOUTH", seed_value=16)
            for member, team, role in (("nurse-north", NORTH, "clinician"), ("viewer-north", NORTH, "viewer"),
                                       ("nurse-south", SOUTH, "clinician"), ("admin-north", NORTH, "admin")):
                add_member(conn, member, team, role, "tests")  # type: ignore[arg-type]
                set_password(conn, member, PASSWORD)
        yield WebWorld(url, Settings(database_url=url, topic_prefix=env["RESPMON_TOPIC_PREFIX"]), north, south)


@pytest.fixture(scope="session")
def web_app(web_world: WebWorld) -> Iterator[TestClient]:
    with TestClient(create_app(web_world.settings)) as client:
        yield client


def logged_in(app: TestClient, member_id: str) -> TestClient:
    """A client of the same app with its own cookie jar, logged in through the login form."""
    client = TestClient(app.app)
    answer = client.post("/login", data={"member_id": member_id, "password": PASSWORD}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    """The CSRF token of a page's forms."""
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


@pytest.fixture
def nurse(web_app: TestClient) -> TestClient:
    return logged_in(web_app, "nurse-north")
