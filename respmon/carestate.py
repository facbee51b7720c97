"""A patient's care state from the top layer: `respmon care-state` (publish and record one change) and the
care-state CSV that `respmon evaluate` reads next to the history files (format id `care_state_csv`).

The CSV is the team's, never a device's: ingest has no parser for it (an upload of one is refused, 422).
Header `patient_id,since,state,note` (note optional); one change per line, applied from `since` (00:00 UTC)
in the replay's time order, later lines winning over earlier ones from their own `since` on.
"""

import argparse
import csv
import getpass
import io
import re
import sys
import uuid
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import psycopg
from pydantic import ValidationError

from schemas.carestate import CARE_STATES, NO_STATE, CareStateChange

__all__ = ["FORMAT", "add_commands", "is_care_state_csv", "read_care_state_csv"]

FORMAT = "care_state_csv"
_COLUMNS = ("patient_id", "since", "state")
_OPTIONAL = ("note",)
CSV_SET_BY = "care_state_csv"
"""Who set a change read from a CSV (the file is the team's record, not a person's action)."""


def _header(line: str) -> list[str]:
    return [c.strip().lower() for c in line.lstrip("\ufeff").split(",")]


def is_care_state_csv(path: Path | str) -> bool:
    """A file whose header is the care-state CSV's (detected by header, as ingest detects its formats)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8-sig") as handle:
            columns = set(_header(handle.readline()))
    except (OSError, UnicodeDecodeError):
        return False
    return set(_COLUMNS) <= columns <= {*_COLUMNS, *_OPTIONAL}


def read_care_state_csv(path: Path | str) -> list[CareStateChange]:
    """The changes of a care-state CSV; a bad line is a ValueError naming the file, line and field (never a
    value: the file holds patient ids and notes)."""
    path = Path(path)
    header, _, rest = path.read_text(encoding="utf-8-sig").partition("\n")
    rows = csv.DictReader(io.StringIO(rest), fieldnames=_header(header), skipinitialspace=True)
    return [_change(path, rows.line_num + 1, row) for row in rows if any(v for v in row.values() if v)]


def _change(path: Path, line: int, row: dict[str, str | None]) -> CareStateChange:
    try:
        since = date.fromisoformat((row.get("since") or "").strip())
    except ValueError:
        raise ValueError(f"{path}: line {line}: since must be a date YYYY-MM-DD") from None
    patient, state = (row.get("patient_id") or "").strip(), (row.get("state") or "").strip()
    note = (row.get("note") or "").strip() or None
    identity = uuid.uuid5(uuid.NAMESPACE_URL, "\x1f".join((patient, state, since.isoformat(), note or "")))
    try:
        return CareStateChange.model_validate({
            "patient_id": patient, "state": state, "since": since, "note": note, "change_id": identity.hex,
            "set_by": CSV_SET_BY, "set_at": datetime.combine(since, time(0), UTC)})
    except ValidationError as error:
        first = error.errors()[0]
        raise ValueError(f"{path}: line {line}: field {'.'.join(map(str, first['loc']))}: "
                         f"{_message(first['msg'])}") from None


def _message(text: str) -> str:
    """pydantic's words without the value it quotes."""
    return re.sub(r"\s*\[.*$", "", text)


# ------------------------------------------------------------------------------------------------ the command
def cmd_care_state(args: argparse.Namespace) -> int:
    """Publish the change (the worker applies it in order with the patient's data), then record it; one
    line of outcome, or one line on stderr and exit 1."""
    from kafka.errors import KafkaError

    from alerts.carestate import publish, record
    from respmon.core.db import connect
    from respmon.core.settings import get_settings

    settings = get_settings()
    try:
        change = _command_change(args)
        with connect(settings.database_url, autocommit=True) as conn:
            _check_member(conn, args.by)
            publish(settings, change)
            record(conn, change)
    except (ValueError, KafkaError) as error:
        print(f"respmon care-state: {error}", file=sys.stderr)
        return 1
    print(f"care state of {change.patient_id} set to {change.state} from {change.since} by {change.set_by}"
          f" (change {change.change_id})")
    return 0


def _command_change(args: argparse.Namespace) -> CareStateChange:
    try:
        since = date.fromisoformat(args.since)
    except ValueError:
        raise ValueError(f"--since {args.since!r}: expected a date YYYY-MM-DD") from None
    try:
        return CareStateChange.model_validate({
            "patient_id": args.patient_id, "state": args.state, "since": since, "note": args.note,
            "set_by": args.by or _operator(), "set_at": datetime.now(UTC)})
    except ValidationError as error:
        first = error.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {_message(first['msg'])}") from None


def _operator() -> str:
    """`cli:<login>` when no --by is given: the audit still says who typed it."""
    return "cli:" + (re.sub(r"[^A-Za-z0-9._@-]", "_", getpass.getuser()) or "unknown")


def _check_member(conn: psycopg.Connection[Any], member_id: str | None) -> None:
    from alerts.team import exists

    if member_id is not None and not exists(conn, member_id):
        raise ValueError(f"--by {member_id}: no such team member")


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`respmon care-state PATIENT STATE --since DATE [--note TEXT] [--by MEMBER]`."""
    parser = sub.add_parser("care-state", help="set a patient's care state (published to the worker and recorded)")
    parser.add_argument("patient_id", metavar="PATIENT")
    parser.add_argument("state", metavar="STATE", choices=[*CARE_STATES, NO_STATE],
                        help=f"{', '.join(CARE_STATES)}, or {NO_STATE} to clear it")
    parser.add_argument("--since", required=True, help="the day it applies from (YYYY-MM-DD, today or earlier)")
    parser.add_argument("--note", help="why (kept in the care_states audit)")
    parser.add_argument("--by", help="the team member setting it (default: cli:<your login>)")
    parser.set_defaults(func=cmd_care_state)
