"""`respmon`: the one console command for everything a user runs."""

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path

from respmon.carestate import add_commands as add_care_state_commands
from respmon.careteams import add_commands as add_care_team_commands
from respmon.core.settings import Settings, get_settings


def cmd_migrate(args: argparse.Namespace) -> int:
    from respmon.core.db import migrate

    applied = migrate(get_settings().database_url)
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from respmon.topics import ensure_topics

    created = ensure_topics(get_settings())
    print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    return 0


def _serve(create_app: Callable[[Settings], object], host: str, port: int) -> int:
    """Run an HTTP service built by `create_app` with JSON logs and no access log (it would hold ids)."""
    import uvicorn

    from respmon.core.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_repeat_window_s)
    # httptools parses requests in C; the default pure-Python h11 showed up under load (220 kB nights).
    # log_config=None: uvicorn's own lines (a refused request, a traceback) go through our JSON handler
    # instead of its plain-text one; server_header=False: no `server: uvicorn` telling what runs here.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False,  # type: ignore[arg-type]
                http="httptools", log_config=None, server_header=False)
    return 0


def _refused(command: str, settings: Settings) -> int:
    """RESPMON_ENV=production with a development default or an empty secret: one line naming the
    setting and the configuration exit code (2), before anything starts; else 0."""
    from respmon.core.exits import CONFIG_EXIT
    from respmon.core.settings import production_refusal

    problem = production_refusal(settings)
    if problem is None:
        return 0
    print(f"respmon {command}: {problem}", file=sys.stderr)
    return CONFIG_EXIT


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.app import create_app

    settings = get_settings()
    if refused := _refused("ingest", settings):
        return refused
    if settings.ingest_processes > 1:
        return _serve_processes("respmon.cli:ingest_app", settings.ingest_host, settings.ingest_port,
                                settings.ingest_processes)
    return _serve(create_app, settings.ingest_host, settings.ingest_port)


def ingest_app() -> object:
    """ingest as each of several uvicorn worker processes builds it: they are spawned, so each sets up
    its own JSON logs (uvicorn's parent configured only itself)."""
    from ingest.app import create_app
    from respmon.core.logs import setup_logging
    from respmon.core.malloc import keep_freed_memory

    keep_freed_memory()  # a spawned child does not run `main`
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_repeat_window_s)
    return create_app(settings)


def _serve_processes(factory: str, host: str, port: int, processes: int) -> int:
    """`processes` uvicorn workers accepting on one port: the parent binds it and hands the socket to its
    spawned children (one CPU-bound process uses one core; parsing a night is CPU-bound). The parent
    restarts a child that dies. Each child has its own Prometheus registry: /metrics answers for the child
    that takes the scrape (see README "Scale out by processes")."""
    import uvicorn

    from respmon.core.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_repeat_window_s)
    uvicorn.run(factory, factory=True, workers=processes, host=host, port=port, log_level="warning",
                access_log=False, http="httptools", log_config=None, server_header=False)
    return 0


def cmd_alerts_api(args: argparse.Namespace) -> int:
    from respmon.web.app import create_app  # the team API and the web view, one process

    settings = get_settings()
    return _refused("alerts-api", settings) or _serve(create_app, settings.alerts_api_host, settings.alerts_api_port)


def cmd_worker(args: argparse.Namespace) -> int:
    """The faust worker, in a child process that is started again if its stream stalls."""
    import os

    if os.environ.get("RESPMON_WORKER_CHILD") == "1":  # the supervised child: build the app and run it
        from processors.app import run
        from respmon.fhir.push import install

        install(get_settings())  # the outbox's `fhir` deliveries (processors may not import respmon.fhir)
        run(get_settings())
    from processors.rules.loader import RulesError, load_rules
    from respmon.core.logs import setup_logging
    from respmon.supervise import CONFIG_EXIT, supervise

    settings = get_settings()
    if refused := _refused("worker", settings):
        return refused
    try:  # a bad rules or site file is one clear line, checked once here before any child connects
        load_rules(settings.rules_file, settings.rules_overrides)
    except RulesError as error:
        print(f"respmon worker: {error}", file=sys.stderr)
        return CONFIG_EXIT
    setup_logging(settings.log_level, settings.log_repeat_window_s)
    return supervise([sys.executable, "-m", "respmon", "worker"], {**os.environ, "RESPMON_WORKER_CHILD": "1"})


def cmd_demo(args: argparse.Namespace) -> int:
    from respmon.demo import run_demo

    return run_demo()


def cmd_parse(args: argparse.Namespace) -> int:
    """Print canonical records as JSON lines; a bad file is one clear line on stderr, never a traceback."""
    from ingest.parsers import ParseError, parse_path

    failed = 0
    for path in args.files:
        try:
            records = parse_path(Path(path), patient_id=args.patient, fmt=args.format, tz=args.tz)
        except ParseError as error:
            print(f"respmon parse: {error}", file=sys.stderr)
            failed += 1
            continue
        for record in records:
            print(record.model_dump_json() if args.json else _summary(path, record))
    return 1 if failed else 0


def _summary(path: str, record: object) -> str:
    data = record.model_dump(exclude={"spo2", "pulse", "motion", "tcpco2"})  # type: ignore[attr-defined]  # samples
    return f"{path}: {data['kind']} " + " ".join(f"{k}={v}" for k, v in data.items() if v is not None
                                                 and k not in ("kind", "schema_version"))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the same metrics, trends and rules as the stream over history files, print findings
    (or, with --alerts, the notifications the stream would send)."""
    from alerts.routing import RoutingError
    from ingest.parsers import ParseError
    from processors.rules.evaluator import findings_to_jsonl
    from processors.rules.loader import RulesError
    from respmon.evaluate import evaluate_files

    try:
        if args.alerts:
            return _print_notifications(args)
        findings = evaluate_files(args.files, rules_path=args.rules, overrides=args.overrides,
                                  as_of=_as_of(args.as_of), patient_id=args.patient)
    except (ParseError, RulesError, RoutingError, ValueError) as error:
        print(f"respmon evaluate: {error}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(findings_to_jsonl(findings))
    else:
        for f in findings:
            print(f"{f.at:%Y-%m-%d %H:%M} {f.patient_id} {f.state:<8} {f.severity:<6} {f.category:<13} {f.rule_id}")
    return 0


def _print_notifications(args: argparse.Namespace) -> int:
    """`--alerts`: one JSON line per notification (patient_id, category, severity, change, rules, at)."""
    import json
    from datetime import timedelta

    from processors.rules.loader import load_rules
    from respmon.evaluate import load_records, notifications, site_routing

    settings = get_settings()
    rules = load_rules(args.rules, args.overrides)
    records = load_records(args.files, args.patient)
    sent = notifications(records, rules, site_routing(settings), timedelta(days=settings.notify_horizon_days),
                         as_of=_as_of(args.as_of), now=_as_of(args.now, "--now"))
    for note in sent:
        print(json.dumps(note.to_json(), sort_keys=True))
    return 0


def _as_of(text: str | None, option: str = "--as-of") -> datetime | None:
    """`--as-of 2026-06-01` means the end of that day (UTC); a full ISO timestamp is taken as given."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(23, 59, 59), UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected a date YYYY-MM-DD or an ISO 8601 timestamp") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_backfill(args: argparse.Namespace) -> int:
    from ingest.backfill import backfill

    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"respmon backfill: {folder}: not a folder", file=sys.stderr)
        return 1
    settings = get_settings()
    url = args.url or f"http://{settings.ingest_host}:{settings.ingest_port}"
    outcomes, problems = backfill(folder, url, args.token, progress=not args.quiet)
    print(f"accepted {outcomes['accepted']}, duplicate {outcomes['duplicate']}, rejected {outcomes['rejected']},"
          f" unavailable {outcomes['unavailable']}")
    for line in problems:
        print(f"  {line}")
    return 1 if outcomes["rejected"] or outcomes["unavailable"] else 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    """One line per upload; exit 0 when every one was published, 1 when any was refused, 2 when an id
    is not in the archive."""
    from ingest.publisher import Publisher
    from ingest.reprocess import NotArchived, reprocess
    from respmon.core import dbpool
    from respmon.core.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_repeat_window_s)  # JSON lines on stderr, as ingest's own
    worst = 0
    with dbpool.new_sync_pool(settings.database_url, max_size=1, autocommit=True) as pool:
        publisher = Publisher(settings)
        try:
            for upload_id in args.upload_ids:
                try:
                    result = reprocess(pool, publisher, upload_id, args.format)
                except NotArchived as error:
                    print(f"respmon reprocess: {error}", file=sys.stderr)
                    worst = 2
                    continue
                if result.status == 202:
                    print(f"upload {result.upload_id}: published {result.body['records']} record(s) as {result.fmt}")
                else:
                    print(f"upload {result.upload_id}: {result.outcome} ({result.status}): {result.body['reason']}")
                    worst = max(worst, 1)
        finally:
            publisher.close()
    return worst


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "migrate": (cmd_migrate, "apply pending database migrations (safe to run twice)"),
    "topics": (cmd_topics, "create the Kafka topics (safe to run twice)"),
    "ingest": (cmd_ingest, "run the ingest HTTP service"),
    "worker": (cmd_worker, "run the stream worker (faust) with the alert dispatcher"),
    "alerts-api": (cmd_alerts_api, "run the team service: alerts JSON API and the web view"),
    "demo": (cmd_demo, "replay a small synthetic cohort through the running stack and print the alerts"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="respmon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text).set_defaults(func=func)
    add_care_team_commands(sub)  # device-add, team-add, patient-assign, token-*, team-route, access-log
    add_care_state_commands(sub)  # care-state

    parse = sub.add_parser("parse", help="parse device exports and print canonical records")
    parse.add_argument("files", nargs="+", metavar="FILE", help="export files or ResMed SD-card folders")
    parse.add_argument("--json", action="store_true", help="one JSON record per line, with a `kind` field")
    parse.add_argument("--patient", help="patient id for files that carry none (oximeters, EDF)")
    parse.add_argument("--format", help="skip detection and read the files as this format")
    parse.add_argument("--tz", default="UTC", help="time zone of device clocks without one (default UTC)")
    parse.set_defaults(func=cmd_parse)

    evaluate = sub.add_parser("evaluate", help="run the rules over history files, print findings")
    evaluate.add_argument("files", nargs="+", metavar="FILE")
    evaluate.add_argument("--json", action="store_true", help="findings as JSON lines")
    evaluate.add_argument("--rules", help="rules file (default: the packaged default.yaml)")
    evaluate.add_argument("--overrides", help="site overrides file")
    evaluate.add_argument("--as-of", dest="as_of", help="evaluate as if today were this date")
    evaluate.add_argument("--patient", help="patient id for files that carry none")
    evaluate.add_argument("--alerts", action="store_true",
                          help="print the notifications the stream would send (JSON lines), not the findings")
    evaluate.add_argument("--now", help="with --alerts: the files all arrive at this time (a backfill: findings"
                          " older than RESPMON_NOTIFY_HORIZON_DAYS before it are not notified); default: each"
                          " record arrives when it was recorded")
    evaluate.set_defaults(func=cmd_evaluate)

    backfill = sub.add_parser("backfill", help="send a folder of exports through the ingest service")
    backfill.add_argument("folder")
    backfill.add_argument("--url", default=None, help="ingest base URL (default: from settings)")
    backfill.add_argument("--token", required=True, help="the device's bearer token")
    backfill.add_argument("--quiet", action="store_true", help="no progress bar")
    backfill.set_defaults(func=cmd_backfill)

    again = sub.add_parser("reprocess", help="send archived uploads through ingest again (dead letters, once fixed)")
    again.add_argument("upload_ids", nargs="+", metavar="UPLOAD_ID", help="ids from the deadletters table")
    again.add_argument("--format", help="read them as this format (default: as before, else detect)")
    again.set_defaults(func=cmd_reprocess)
    return parser


def main(argv: list[str] | None = None) -> int:
    from respmon.core.malloc import keep_freed_memory

    keep_freed_memory()  # before the service allocates: see respmon/core/malloc.py
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
