"""The `respmon` commands for care teams and credentials: who belongs to which team with which role,
which patients a team looks after, team routes, tokens that end, and the access log.

Each command is one line of outcome (or the token, shown once); an operator error is one line on stderr
and exit 1. Patient ids are printed to the operator who typed them, never logged.
"""

import argparse
import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from respmon.core.settings import get_settings

if TYPE_CHECKING:
    from alerts.access import Role

Command = Callable[[argparse.Namespace], int]


class CommandError(ValueError):
    """An operator mistake: one line on stderr, exit 1."""


@contextmanager
def _db() -> Iterator[psycopg.Connection[Any]]:
    from respmon.core.db import connect

    with connect(get_settings().database_url, autocommit=True) as conn:
        yield conn


def _expiry(text: str | None) -> datetime | None:
    """`--expires 2027-01-31`: valid through that day (UTC); a full ISO timestamp is taken as given."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text) + timedelta(days=1), time(0), UTC)
        else:
            value = datetime.fromisoformat(text)
            value = value if value.tzinfo else value.replace(tzinfo=UTC)
    except ValueError:
        raise CommandError(f"--expires {text!r}: expected a date YYYY-MM-DD or an ISO 8601 timestamp") from None
    if value <= datetime.now(UTC):
        raise CommandError(f"--expires {text}: that is in the past")
    return value


def cmd_device_add(args: argparse.Namespace) -> int:
    from ingest.devices import provision

    with _db() as conn:
        token = provision(conn, args.device_id, args.patient_id, _expiry(args.expires))
    print(f"device {args.device_id} provisioned; its token (shown once, store it on the device):")
    print(token)
    return 0


def cmd_team_add(args: argparse.Namespace) -> int:
    """Give a member a role in a team (creating the member); a new member without a password gets a
    token (a service), `--password-stdin` sets a password (a person)."""
    from alerts.sessions import hash_password
    from alerts.team import add_member, issue_token, remove_member

    if args.remove:
        with _db() as conn:
            removed = remove_member(conn, args.member_id, args.team, args.role)
        print(f"{args.member_id}: {removed} role(s) in team {args.team} removed")
        return 0
    role: Role = args.role or "clinician"
    password = _read_password() if args.password_stdin else None
    password_hash = hash_password(password) if password is not None else None  # refused before anything is written
    with _db() as conn, conn.transaction():
        created = add_member(conn, args.member_id, args.team, role, args.by)
        if password_hash is not None:
            conn.execute("UPDATE team_members SET password_argon2 = %s, password_set_at = now()"
                         " WHERE member_id = %s", (password_hash, args.member_id))
        token = issue_token(conn, args.member_id, _expiry(args.expires)) if created and password is None else None
    print(f"{args.member_id}: {role} in team {args.team}" + ("; password set" if password is not None else ""))
    if token is not None:
        print("their token (shown once):")
        print(token)
    elif password is None:
        print(f"no new token for an existing member (`respmon token-rotate {args.member_id}` issues one)")
    return 0


def _read_password() -> str:
    line = sys.stdin.readline()
    return line.removesuffix("\n")


def cmd_patient_assign(args: argparse.Namespace) -> int:
    from alerts.careteams import assign, readers, unassign

    with _db() as conn:
        if args.remove:
            if not unassign(conn, args.patient_id, args.team, args.by):
                raise CommandError(f"patient {args.patient_id} is not in the care of team {args.team}")
            print(f"patient {args.patient_id}: care by team {args.team} ended (by {args.by})")
            return 0
        done = assign(conn, args.patient_id, args.team, args.by)
        nobody = readers(conn, args.team) == 0
    print(f"patient {args.patient_id}: {'assigned to' if done else 'already in the care of'} team {args.team}")
    if nobody:
        print(f"note: team {args.team} has no viewer or clinician yet (`respmon team-add MEMBER {args.team}`)")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from alerts.team import exists, revoke_tokens
    from ingest.devices import revoke

    with _db() as conn:
        is_member = exists(conn, args.holder) and not args.device
        is_device = conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (args.holder,)).fetchone() is not None
        if is_member and is_device and not args.member:
            raise CommandError(f"{args.holder} is both a team member and a device: say --member or --device")
        if is_member:
            tokens, sessions = revoke_tokens(conn, args.holder)
            print(f"member {args.holder}: {tokens} token(s) revoked, {sessions} session(s) ended")
        elif is_device and not args.member:
            revoke(conn, args.holder)
            print(f"device {args.holder}: token revoked (`respmon device-add` gives it a new one)")
        else:
            raise CommandError(f"no team member or device {args.holder}")
    return 0


def cmd_token_rotate(args: argparse.Namespace) -> int:
    from alerts.team import exists, rotate_token

    if args.overlap_hours < 0:
        raise CommandError("--overlap-hours must be 0 or more")
    with _db() as conn:
        if not exists(conn, args.member_id):
            raise CommandError(f"no team member {args.member_id}")
        token = rotate_token(conn, args.member_id, args.overlap_hours, _expiry(args.expires))
    print(f"member {args.member_id}: new token below (shown once); the previous ones stay valid"
          f" {args.overlap_hours:g} more hour(s)")
    print(token)
    return 0


def cmd_team_route(args: argparse.Namespace) -> int:
    """A route of a care team: every alert of the team's patients goes there too."""
    from pydantic import ValidationError

    from alerts.careteams import remove_route, set_route
    from alerts.routing import Route

    with _db() as conn:
        if args.remove:
            if not remove_route(conn, args.team, args.name):
                raise CommandError(f"team {args.team} has no route {args.name}")
            print(f"team {args.team}: route {args.name} removed")
            return 0
        if not (args.webhook or args.email):
            raise CommandError("say --webhook URL or --email ADDRESSES")
        channel, target = ("webhook", args.webhook) if args.webhook else ("email", args.email)
        fields: dict[str, Any] = {"name": args.name, "channel": channel, "target": target, "team": args.team,
                                  "min_severity": args.min_severity}
        if args.category:
            fields["categories"] = tuple(args.category)
        try:
            route = Route.model_validate(fields)
        except ValidationError as error:
            first = error.errors()[0]
            raise CommandError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
        set_route(conn, route, args.by)
    print(f"team {args.team}: route {args.name} ({channel}, {args.min_severity} and worse) set")
    return 0


def cmd_access_log(args: argparse.Namespace) -> int:
    """Who looked at a patient's data (or what a member looked at), oldest first."""
    if not (args.patient or args.member):
        raise CommandError("say --patient or --member (or both)")
    since = datetime.combine(date.fromisoformat(args.since), time(0), UTC) if args.since else None
    with _db() as conn:
        rows = conn.execute(
            "SELECT at, member_id, patient_id, action, route, alert_id, client FROM access_log"
            " WHERE (%(p)s::text IS NULL OR patient_id = %(p)s) AND (%(m)s::text IS NULL OR member_id = %(m)s)"
            " AND (%(s)s::timestamptz IS NULL OR at >= %(s)s) ORDER BY id DESC LIMIT %(n)s",
            {"p": args.patient, "m": args.member, "s": since, "n": args.limit}).fetchall()
    for at, member, patient, action, route, alert_id, client in reversed(rows):
        alert = f" alert={alert_id}" if alert_id is not None else ""
        print(f"{at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} {member} {patient} {action} {route}{alert}"
              f" from={client or '-'}")
    if not rows:
        print("no access recorded", file=sys.stderr)
    return 0


def _guarded(command: Command, name: str) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (CommandError, ValueError) as error:  # PasswordError and a bad --since are ValueErrors
            print(f"respmon {name}: {error}", file=sys.stderr)
            return 1
    return run


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register the commands on the `respmon` parser."""
    device = _parser(sub, "device-add", cmd_device_add, "provision a device for one patient and print its token")
    device.add_argument("device_id")
    device.add_argument("patient_id")
    _add_expires(device)

    team = _parser(sub, "team-add", cmd_team_add, "give a member (person or service) a role in a care team")
    team.add_argument("member_id")
    team.add_argument("team")
    team.add_argument("--role", choices=("viewer", "clinician", "admin"),
                      help="viewer (read), clinician (read and act), admin (provision; no clinical data);"
                           " default clinician (with --remove: every role in the team)")
    team.add_argument("--password-stdin", action="store_true", help="read a password (a person) from stdin")
    _add_expires(team)
    team.add_argument("--remove", action="store_true", help="take the role (or every role) in the team away")
    _add_by(team)

    assign = _parser(sub, "patient-assign", cmd_patient_assign, "put a patient in the care of a team")
    assign.add_argument("patient_id")
    assign.add_argument("team")
    assign.add_argument("--remove", action="store_true", help="end the team's care of the patient")
    _add_by(assign)

    revoke = _parser(sub, "token-revoke", cmd_token_revoke, "end every token of a team member or a device now")
    revoke.add_argument("holder", metavar="MEMBER|DEVICE")
    kind = revoke.add_mutually_exclusive_group()
    kind.add_argument("--member", action="store_true", help="the id is a team member's")
    kind.add_argument("--device", action="store_true", help="the id is a device's")

    rotate = _parser(sub, "token-rotate", cmd_token_rotate, "issue a new token; the old ones end after an overlap")
    rotate.add_argument("member_id")
    rotate.add_argument("--overlap-hours", type=float, default=24.0, help="the old tokens stay valid so long"
                        " (default 24)")
    _add_expires(rotate)

    route = _parser(sub, "team-route", cmd_team_route, "send every alert of a team's patients to a webhook or address")
    route.add_argument("team")
    route.add_argument("name")
    target = route.add_mutually_exclusive_group()
    target.add_argument("--webhook", metavar="URL")
    target.add_argument("--email", metavar="ADDRESSES")
    route.add_argument("--min-severity", default="warn", help="info, warn, high or urgent (default warn)")
    route.add_argument("--category", action="append", help="only this category (repeat for more)")
    route.add_argument("--remove", action="store_true")
    _add_by(route)

    log = _parser(sub, "access-log", cmd_access_log, "print who looked at a patient's data")
    log.add_argument("--patient")
    log.add_argument("--member")
    log.add_argument("--since", help="from this date (UTC)")
    log.add_argument("--limit", type=int, default=1000, help="the last N rows (default 1000)")


def _add_by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", default=_os_user(), help="who does it, recorded (default: the OS user)")


def _add_expires(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--expires", help="the token ends then: YYYY-MM-DD (valid through that day, UTC)"
                        " or an ISO 8601 timestamp")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "unknown"


def _parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, command: Command,
            help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text)
    parser.set_defaults(func=_guarded(command, name))
    return parser
