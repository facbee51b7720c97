"""A page printed to PDF by Debian's headless Chromium (no browser download exists on a hospital network).

The page is written to a private temporary folder and printed from there (`file://`): its stylesheets are
pointed at the static folder on disk, so the PDF looks like the page printed from a browser. Each print
has its own Chromium profile, is bounded in time, and its whole process group is killed on a timeout.
Nothing about the patient reaches the logs (the file names are fixed, the page is not logged).
"""

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from respmon.core.settings import Settings
from respmon.web.render import STATIC

log = logging.getLogger(__name__)

PRINTS_AT_ONCE = 2
"""A print is a whole browser (~200 MB, a core for a second or two): more at once would starve the pages."""
_printing = threading.BoundedSemaphore(PRINTS_AT_ONCE)


class PdfUnavailable(Exception):
    """The PDF cannot be made here (no Chromium, a crash, a timeout): the page answers 503 and says why."""


def chromium(settings: Settings) -> Path | None:
    """The Chromium binary to print with, or None when it is not installed."""
    path = settings.chromium_path
    if path.is_file() and os.access(path, os.X_OK):
        return path
    found = shutil.which(str(path)) if not path.is_absolute() else None
    return Path(found) if found else None


def for_file(html: str) -> str:
    """The page with its `/static/...` links pointed at the static folder on disk (the CSP is a header of
    the HTTP answer: it does not apply to a file printed from disk, and nothing here runs a script)."""
    base = STATIC.as_uri()
    return html.replace('href="/static/', f'href="{base}/').replace('src="/static/', f'src="{base}/')


def command(binary: Path, page: Path, out: Path, profile: Path) -> list[str]:
    return [str(binary), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", "--no-pdf-header-footer", f"--user-data-dir={profile}",
            f"--print-to-pdf={out}", page.as_uri()]


def _run(cmd: list[str], timeout_s: float) -> tuple[int, str]:
    """Run Chromium in its own process group; on timeout end that group (Chromium forks helpers)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise PdfUnavailable(f"printing took longer than {timeout_s:g} s and was stopped") from None
    return proc.returncode, err


def print_pdf(html: str, settings: Settings) -> bytes:
    """The page as PDF bytes (A4 or Letter as Chromium's default, the page's @page rules apply)."""
    binary = chromium(settings)
    if binary is None:
        raise PdfUnavailable(f"Chromium is not installed at {settings.chromium_path}")
    if not _printing.acquire(timeout=settings.pdf_timeout_s):
        raise PdfUnavailable(f"{PRINTS_AT_ONCE} reports are being printed; try again in a minute")
    try:
        return _print(binary, html, settings.pdf_timeout_s)
    finally:
        _printing.release()


def _print(binary: Path, html: str, timeout_s: float) -> bytes:
    with tempfile.TemporaryDirectory(prefix="respmon-print-") as tmp:
        folder = Path(tmp)
        page, out = folder / "page.html", folder / "page.pdf"
        page.write_text(for_file(html), encoding="utf-8")
        code, err = _run(command(binary, page, out, folder / "profile"), timeout_s)
        if code != 0 or not out.is_file() or out.stat().st_size == 0:
            log.warning("chromium print failed", extra={"returncode": code, "stderr_tail": err[-400:]})
            raise PdfUnavailable(f"Chromium could not print the page (exit code {code})")
        return out.read_bytes()
