"""Structured JSON logs. Callers pass ids (upload, device, alert), never patient data or raw values."""

import json
import logging
import logging.config
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({})))

# Client libraries that retry in a loop and log every attempt while a broker is down.
LIBRARY_LOGGERS = ("aiokafka", "faust", "kafka", "mode")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RepeatFilter(logging.Filter):
    """Pass a library message at most once per `window_s`; the next one passed carries `suppressed=N`.

    While a broker is down aiokafka logs the same connection error for every retry (over a hundred
    lines a second in the worker); those drown the lines that explain the outage. A message is
    "the same" when logger, level and unformatted template match, so a new error still shows at once.
    Records of other loggers (ours) always pass. Meant for a handler: a logger's own filter would
    not see records of its child loggers.
    """

    MAX_KEYS = 1024

    def __init__(self, window_s: float = 10.0, prefixes: tuple[str, ...] = LIBRARY_LOGGERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self.prefixes, self._clock = float(window_s), tuple(prefixes), clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (passed at, suppressed since)
        self._lock = threading.Lock()

    def _applies(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.window_s <= 0 or not self._applies(record.name):
            return True
        key, now = (record.name, record.levelno, str(record.msg)), self._clock()
        with self._lock:
            passed_at, suppressed = self._seen.get(key, (float("-inf"), 0))
            if now - passed_at < self.window_s:
                self._seen[key] = (passed_at, suppressed + 1)
                return False
            self._seen[key] = (now, 0)
            self._forget_old(now)
        if suppressed:
            record.suppressed = suppressed
        return True

    def _forget_old(self, now: float) -> None:
        """Bound memory when messages are not templates (ids formatted in): drop keys past their window."""
        if len(self._seen) > self.MAX_KEYS:
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}


def logging_config(level: str = "INFO", repeat_window_s: float = 10.0) -> dict[str, Any]:
    """The one logging setup of every service, as a `dictConfig` (faust takes it in this form): JSON lines
    on stderr through the repeat filter, ids in the extras."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "respmon.core.logs.JsonFormatter"}},
        "filters": {"repeats": {"()": "respmon.core.logs.RepeatFilter", "window_s": repeat_window_s}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "json", "filters": ["repeats"]}},
        "root": {"handlers": ["stderr"], "level": level},
    }


def setup_logging(level: str = "INFO", repeat_window_s: float = 10.0) -> None:
    logging.config.dictConfig(logging_config(level, repeat_window_s))
