"""The care-team and credential commands as an operator runs them (issue 14), on a real PostgreSQL, and the
refusal of development defaults in production: one line naming the setting, exit 2."""

import getpass
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pydantic import SecretStr

from respmon.core.settings import Settings, production_refusal
from respmon.core.tokens import active_holder
from tests.conftest import namespace

PASSWORD = "a long enough passphrase"


@pytest.fixture(scope="module")
def env(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with namespace(tmp_path_factory.mktemp("careteam-cli")) as own:
        yield own


@pytest.fixture
def db(env: dict[str, str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(env["RESPMON_DATABASE_URL"], autocommit=True) as conn:
        yield conn


def respmon(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "respmon", *args], capture_output=True, text=True, timeout=120,
                          input=stdin, env={**os.environ, **env}, check=False)


def token_of(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_team_add_gives_roles_a_token_to_services_and_a_password_to_people(env: dict[str, str],
                                                                          db: psycopg.Connection) -> None:
    run = uuid.uuid4().hex[:6]
    token = token_of(respmon(env, "team-add", f"svc-{run}", "north", "--role", "viewer"))
    assert active_holder(db, "team_members", token) == (f"svc-{run}", f"svc-{run}")
    again = respmon(env, "team-add", f"svc-{run}", "south")  # another team: a role, no new token
    assert again.returncode == 0 and "token-rotate" in again.stdout
    person = respmon(env, "team-add", f"dr-{run}", "north", "--password-stdin", stdin=PASSWORD + "\n")
    assert person.returncode == 0 and "password set" in person.stdout and "token" not in person.stdout
    assert db.execute("SELECT team, role, added_by FROM team_memberships WHERE member_id LIKE %s ORDER BY 1, 2",
                      (f"%-{run}",)).fetchall() == [("north", "clinician", getpass.getuser()),
                                                     ("north", "viewer", getpass.getuser()),
                                                     ("south", "clinician", getpass.getuser())]
    stored = db.execute("SELECT password_argon2 FROM team_members WHERE member_id = %s", (f"dr-{run}",)).fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$")
    short = respmon(env, "team-add", f"x-{run}", "north", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and len(short.stderr.strip().splitlines()) == 1 and "12 characters" in short.stderr
    assert db.execute("SELECT 1 FROM team_members WHERE member_id = %s", (f"x-{run}",)).fetchone() is None
    removed = respmon(env, "team-add", f"svc-{run}", "south", "--remove")
    assert removed.returncode == 0 and "1 role(s)" in removed.stdout


def test_patient_assign_records_who_and_when_and_remove_ends_it(env: dict[str, str], db: psycopg.Connection) -> None:
    patient = f"P-{uuid.uuid4().hex[:6]}"
    first = respmon(env, "patient-assign", patient, "empty-team")
    assert first.returncode == 0 and "no viewer or clinician" in first.stdout
    assert respmon(env, "patient-assign", patient, "ward-b", "--by", "admin-jo").returncode == 0
    assert "already" in respmon(env, "patient-assign", patient, "ward-b").stdout
    assert respmon(env, "patient-assign", patient, "ward-b", "--remove", "--by", "admin-al").returncode == 0
    missing = respmon(env, "patient-assign", patient, "ward-b", "--remove")
    assert missing.returncode == 1 and "not in the care" in missing.stderr
    rows = db.execute("SELECT team, assigned_by, ended_by, assigned_at IS NOT NULL, ended_at IS NOT NULL"
                      " FROM patient_teams WHERE patient_id = %s ORDER BY id", (patient,)).fetchall()
    assert rows == [("empty-team", getpass.getuser(), None, True, False),
                    ("ward-b", "admin-jo", "admin-al", True, True)]


def test_tokens_expire_rotate_with_overlap_and_are_revoked(env: dict[str, str], db: psycopg.Connection) -> None:
    run = uuid.uuid4().hex[:6]
    member = f"svc-{run}"
    old = token_of(respmon(env, "team-add", member, "north", "--expires", "2999-12-31"))
    assert db.execute("SELECT expires_at::date::text FROM team_tokens WHERE member_id = %s",
                      (member,)).fetchone() == ("3000-01-01",)
    past = respmon(env, "team-add", f"late-{run}", "north", "--expires", "2001-01-01")
    assert past.returncode == 1 and "in the past" in past.stderr
    new = token_of(respmon(env, "token-rotate", member, "--overlap-hours", "2"))
    assert active_holder(db, "team_members", old) and active_holder(db, "team_members", new)
    overlapping = db.execute("SELECT count(*) FROM team_tokens WHERE member_id = %s AND expires_at"
                             " BETWEEN now() + interval '119 minutes' AND now() + interval '2 hours'", (member,))
    assert overlapping.fetchone() == (1,)
    revoked = respmon(env, "token-revoke", member)
    assert revoked.returncode == 0 and "2 token(s) revoked" in revoked.stdout
    assert active_holder(db, "team_members", old) is None and active_holder(db, "team_members", new) is None

    device = token_of(respmon(env, "device-add", f"dev-{run}", f"P-{run}", "--expires", "2999-01-01"))
    assert active_holder(db, "devices", device) == (f"dev-{run}", f"P-{run}")
    assert respmon(env, "token-revoke", f"dev-{run}").returncode == 0
    assert active_holder(db, "devices", device) is None
    assert respmon(env, "token-revoke", f"nobody-{run}").returncode == 1


def test_team_route_sets_validates_and_removes(env: dict[str, str], db: psycopg.Connection) -> None:
    team = f"t-{uuid.uuid4().hex[:6]}"
    assert respmon(env, "team-route", team, "hook", "--webhook", "https://h.example/x").returncode == 0
    assert respmon(env, "team-route", team, "mail", "--email", "a@h.example", "--min-severity", "high",
                   "--category", "TRACH_DISCUSS").returncode == 0
    bad = respmon(env, "team-route", team, "bad", "--webhook", "https://h", "--min-severity", "loud")
    assert bad.returncode == 1 and "min_severity" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert db.execute("SELECT name, channel, categories, min_severity FROM team_routes WHERE team = %s ORDER BY 1",
                      (team,)).fetchall() == [("hook", "webhook", None, "warn"),
                                              ("mail", "email", ["TRACH_DISCUSS"], "high")]
    assert respmon(env, "team-route", team, "hook", "--remove").returncode == 0


def test_access_log_prints_who_looked_at_a_patient(env: dict[str, str], db: psycopg.Connection) -> None:
    patient = f"P-{uuid.uuid4().hex[:6]}"
    for member, action in (("dr-a", "list"), ("dr-b", "show")):
        db.execute("INSERT INTO access_log (member_id, patient_id, action, route, alert_id, client)"
                   " VALUES (%s, %s, %s, 'GET /v1/alerts', 7, '10.0.0.9')", (member, patient, action))
    printed = respmon(env, "access-log", "--patient", patient)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.strip().splitlines()
    assert [line.split()[1:4] for line in lines] == [["dr-a", patient, "list"], ["dr-b", patient, "show"]]
    assert all("alert=7" in line and "from=10.0.0.9" in line for line in lines)
    assert respmon(env, "access-log").returncode == 1


# ------------------------------------------------------------------------------------------ production

DEV_URL = "postgresql://respmon:respmon@127.0.0.1:15432/respmon"
PROD_URL = "postgresql://respmon:s3cret@db:5432/respmon"


@pytest.mark.parametrize(("secret", "url", "named"), [
    ("dev-only-webhook-secret", PROD_URL, "RESPMON_WEBHOOK_SECRET"),
    ("  ", PROD_URL, "RESPMON_WEBHOOK_SECRET"),
    ("a-real-secret", DEV_URL, "RESPMON_DATABASE_URL"),
])
def test_production_refuses_development_defaults_and_empty_secrets(secret: str, url: str, named: str) -> None:
    refusal = production_refusal(Settings(env="production", webhook_secret=SecretStr(secret), database_url=url))
    assert refusal is not None and refusal.startswith(named)
    assert production_refusal(Settings(env="development", webhook_secret=SecretStr(secret), database_url=url)) is None
    fine = Settings(env="production", webhook_secret=SecretStr("a-real-secret"), database_url=PROD_URL)
    assert production_refusal(fine) is None


@pytest.mark.parametrize("command", ["alerts-api", "ingest", "worker"])
def test_a_service_started_in_production_with_a_dev_secret_exits_2_with_one_line(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPMON_")}
    result = subprocess.run([sys.executable, "-m", "respmon", command], capture_output=True, text=True, timeout=60,
                            env={**env, "RESPMON_ENV": "production", "RESPMON_DATABASE_URL": PROD_URL}, check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"respmon {command}: RESPMON_WEBHOOK_SECRET"), lines
