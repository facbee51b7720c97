"""The single exception every parser raises for bad input."""

from __future__ import annotations

import logging
import sysconfig
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


class ParseError(ValueError):
    """Clear, one-line error about an uploaded file.

    ``str(e) == f"{file}: {where}: {reason}"`` (``where`` such as ``line 12``, ``signal SpO2.1s``,
    ``byte 40``; omitted when it does not apply). Messages never carry measured values or
    identifiers, so they can be logged and shown to uploaders safely.
    """

    def __init__(self, file: str, reason: str, where: str | None = None) -> None:
        self.file = file
        self.reason = reason
        self.where = where
        text = f"{file}: {where}: {reason}" if where else f"{file}: {reason}"
        # one line, printable only: the message is stored in PostgreSQL text (which refuses NUL) and logged,
        # and it may quote a name taken from the upload (e.g. an unknown JSON key)
        text = "".join(ch if ch.isprintable() else "?" for ch in " ".join(text.split()))
        super().__init__(text)


class PatientMismatch(ParseError):
    """The file names a different patient than the one the upload is for (ingest answers 403)."""


class ParserFault(ParseError):
    """A parser failed in a way it did not foresee (a bug, not necessarily a bad file).

    Still a ParseError, so ingest answers 422 and keeps the upload (reprocessed once the bug is fixed)
    instead of a 503 the device would retry forever; tests tell it apart to catch the bug itself."""


@contextmanager
def guard(filename: str, what: str) -> Iterator[None]:
    """Turn any unforeseen exception of a parser or detector into a ParserFault, logged once with its
    type and the line that raised it; never its message, which may quote the upload's values."""
    try:
        yield
    except ParseError:
        raise
    except RecursionError:
        raise ParseError(filename, "input nested too deeply") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the point: untrusted bytes must not escape as a crash
        log.error("parser failed unexpectedly", extra={"step": what, "error": type(exc).__name__,
                                                       "raised_at": _raised_at(exc)})
        raise ParserFault(filename, f"{what} failed unexpectedly ({type(exc).__name__})") from None


_LIBRARIES = tuple({sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")})


def _raised_at(exc: BaseException) -> str:
    """`file.py:line` of the innermost frame outside the standard library and installed packages (the
    parser line that made the bad call), else of the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if not f.filename.startswith(_LIBRARIES)] or frames
    return f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "unknown"
