"""`respmon evaluate`: history files parsed by ingest's parsers, replayed through the same metrics and
rules as the stream, and (with `--alerts`) through the same alert lifecycle. It lives in the top layer
because it joins two services' packages."""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alerts.decide import AlertBook, Notification
from alerts.routing import Routing, default_routing, load_routing
from ingest.parsers import parse_path
from processors.rules.evaluator import replay, steps
from processors.rules.loader import RuleSet, load_rules
from respmon.carestate import is_care_state_csv, read_care_state_csv
from respmon.core.settings import Settings
from schemas import Finding


def load_records(paths: Sequence[Path | str], patient_id: str | None = None) -> list[Any]:
    """Parse history files with the ingest parsers (format detected from content/extension); a care-state
    CSV (`care_state_csv`, by its header) gives the team's care-state changes, which ingest never takes."""
    records: list[Any] = []
    for path in paths:
        if is_care_state_csv(path):
            records.extend(read_care_state_csv(path))
        else:
            records.extend(parse_path(Path(path), patient_id=patient_id))
    if patient_id is not None:
        records = [r for r in records if r.patient_id == patient_id]
    return records


def evaluate_files(
    paths: Sequence[Path | str],
    *,
    rules_path: Path | str | None = None,
    overrides: Path | str | None = None,
    as_of: datetime | None = None,
    patient_id: str | None = None,
) -> list[Finding]:
    """What ``respmon evaluate FILE... [--rules F] [--as-of DATE] [--patient ID]`` runs."""
    rules = load_rules(rules_path, overrides)
    return replay(load_records(paths, patient_id), rules, as_of)


def notifications(
    records: Iterable[Any],
    rules: RuleSet,
    routing: Routing,
    horizon: timedelta,
    *,
    as_of: datetime | None = None,
    now: datetime | None = None,
) -> list[Notification]:
    """The notifications the worker would send for these records: the same findings, the same lifecycle
    decisions (`alerts.decide`), after each record as the worker decides after each batch, kept when
    a route takes them. `now` None: each record arrives when it was recorded (live monitoring, for a
    backtest); a time: all of them arrive then (a backfill), so findings older than `horizon` are history."""
    book = AlertBook(horizon)
    out: list[Notification] = []
    for history, findings in steps(records, rules, as_of):
        sent = book.apply(findings, now)
        data_at = history.last_event()
        if data_at is not None:
            sent += book.announce(history.patient_id, data_at, now or data_at)
        out += [n for n in sent if routing.notify_routes(n.category, n.severity)]
    return out


def site_routing(settings: Settings) -> Routing:
    """The routing the worker uses (`RESPMON_ROUTING_FILE`), else the default one (webhook, warn and worse)."""
    if settings.routing_file is not None:
        return load_routing(settings.routing_file)
    return default_routing(settings.webhook_url or "http://offline.invalid/")
