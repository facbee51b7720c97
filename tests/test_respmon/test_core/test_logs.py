"""The repeat filter: a broker outage makes aiokafka log one error per retry; our logs keep one a window."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from respmon.core.logs import JsonFormatter, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def capture(clock: Clock) -> Iterator[io.StringIO]:
    """A JSON handler with the filter on it, attached to the library and app loggers used below."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter(10, clock=clock))
    loggers = [logging.getLogger(n) for n in ("aiokafka", "aiokafka.consumer.fetcher", "kafka.net", "respmon.t")]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    yield out
    for lg in loggers:
        lg.removeHandler(handler)
        lg.propagate = True


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_one_template_passes_once_a_window_then_carries_the_count(capture: io.StringIO, clock: Clock) -> None:
    log = logging.getLogger("aiokafka")
    for i in range(50):  # 50 retries in 5 s, arguments (port, errno) vary
        log.error("Unable connect to node with id %s: %s", 1, f"refused {i}")
        clock.now += 0.1
    clock.now += 6  # the window (10 s) since the first line has passed
    log.error("Unable connect to node with id %s: %s", 1, "refused again")
    got = lines(capture)
    assert [g["msg"] for g in got] == ["Unable connect to node with id 1: refused 0",
                                       "Unable connect to node with id 1: refused again"]
    assert "suppressed" not in got[0] and got[1]["suppressed"] == 49


def test_different_templates_levels_and_loggers_are_not_merged(capture: io.StringIO, clock: Clock) -> None:
    for _ in range(3):
        logging.getLogger("aiokafka").error("Unable to update metadata from %s", [1])
        logging.getLogger("aiokafka").warning("Unable to update metadata from %s", [1])
        logging.getLogger("aiokafka.consumer.fetcher").error("Unable to update metadata from %s", [1])
        logging.getLogger("aiokafka").error("Failed fetch messages from %s", 1)
    assert len(lines(capture)) == 4


def test_library_child_loggers_are_limited_ours_never(capture: io.StringIO, clock: Clock) -> None:
    for _ in range(20):
        logging.getLogger("kafka.net").error("Connection failed: %s", "ECONNREFUSED")
        logging.getLogger("respmon.t").error("upload failed")
    got = lines(capture)
    assert sum(g["logger"] == "kafka.net" for g in got) == 1
    assert sum(g["logger"] == "respmon.t" for g in got) == 20


def test_a_zero_window_turns_the_filter_off(clock: Clock) -> None:
    flt = RepeatFilter(0, clock=clock)
    record = logging.makeLogRecord({"name": "aiokafka", "msg": "same", "levelno": logging.ERROR})
    assert all(flt.filter(record) for _ in range(5))


def test_memory_stays_bounded_when_messages_are_not_templates(clock: Clock) -> None:
    flt = RepeatFilter(1, clock=clock)
    for i in range(3 * RepeatFilter.MAX_KEYS):
        flt.filter(logging.makeLogRecord({"name": "faust", "msg": f"offset {i}", "levelno": logging.INFO}))
        clock.now += 0.01
    assert len(flt._seen) <= RepeatFilter.MAX_KEYS + 1


def test_the_worker_logging_config_puts_the_filter_on_its_handler() -> None:
    from logging.config import DictConfigurator

    from processors.app import create_app
    from respmon.core.settings import Settings

    settings = Settings(log_repeat_window_s=17)
    config = create_app(settings).conf.logging_config
    (name,) = config["handlers"]["stderr"]["filters"]
    built = DictConfigurator(config).configure_filter(dict(config["filters"][name]))  # as dictConfig builds it
    assert isinstance(built, RepeatFilter) and built.window_s == 17
