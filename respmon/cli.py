"""`respmon`: the one console command for everything a user runs."""

import argparse
import sys
from collections.abc import Callable

from respmon.settings import get_settings


def cmd_migrate(args: argparse.Namespace) -> int:
    from respmon.db import migrate

    applied = migrate(get_settings().database_url)
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from respmon.topics import ensure_topics

    created = ensure_topics(get_settings())
    print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    return 0


def cmd_device_add(args: argparse.Namespace) -> int:
    from ingest.devices import provision
    from respmon.db import connect

    with connect(get_settings().database_url, autocommit=True) as conn:
        token = provision(conn, args.device_id, args.patient_id)
    print(f"device {args.device_id} provisioned; its token (shown once, store it on the device):")
    print(token)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    import uvicorn

    from ingest.app import create_app
    from respmon.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.ingest_host, port=settings.ingest_port,
                log_level="warning", access_log=False)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from processors.app import main

    main()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from respmon.demo import run_demo

    return run_demo()


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "migrate": (cmd_migrate, "apply pending database migrations (safe to run twice)"),
    "topics": (cmd_topics, "create the Kafka topics (safe to run twice)"),
    "ingest": (cmd_ingest, "run the ingest HTTP service"),
    "worker": (cmd_worker, "run the stream worker (faust) with the alert dispatcher"),
    "demo": (cmd_demo, "replay a small synthetic cohort through the running stack and print the alerts"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="respmon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text).set_defaults(func=func)
    device = sub.add_parser("device-add", help="provision a device for one patient and print its token")
    device.add_argument("device_id")
    device.add_argument("patient_id")
    device.set_defaults(func=cmd_device_add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
