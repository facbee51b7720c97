"""The single exception every parser raises for bad input."""

from __future__ import annotations


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
