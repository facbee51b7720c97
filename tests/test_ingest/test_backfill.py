"""`respmon backfill` against an HTTP server that answers "retry later": the client retries with
backoff and never counts a 503 as a rejected file (it was counted so before)."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest.backfill import backfill


class Ingest:
    """A loopback HTTP server answering uploads from a script of statuses (then 202)."""

    def __init__(self, script: list[int]) -> None:
        self.script, self.posts = list(script), 0
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ingest.posts += 1
                status = ingest.script.pop(0) if ingest.script else 202
                body = json.dumps({"reason": "cannot parse"} if status == 422 else {"upload_id": "u"}).encode()
                self.send_response(status)
                if status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "night.csv").write_text("timestamp,spo2,pulse\n")
    return tmp_path


def serve(script: list[int]) -> Iterator[Ingest]:
    ingest = Ingest(script)
    yield ingest
    ingest.server.shutdown()


def test_retry_later_is_retried_until_accepted(folder: Path) -> None:
    for ingest in serve([503, 429, 503]):
        outcomes, problems = backfill(folder, ingest.url, "t", progress=False, tries=6, backoff_s=0.01)
        assert dict(outcomes) == {"accepted": 1} and problems == []
        assert ingest.posts == 4


def test_still_unavailable_is_not_a_rejection(folder: Path) -> None:
    for ingest in serve([503] * 10):
        outcomes, problems = backfill(folder, ingest.url, "t", progress=False, tries=3, backoff_s=0.01)
        assert dict(outcomes) == {"unavailable": 1}
        assert ingest.posts == 3
        assert len(problems) == 1 and "HTTP 503 after 3 tries" in problems[0]


def test_a_refused_file_is_not_retried(folder: Path) -> None:
    for ingest in serve([422]):
        outcomes, problems = backfill(folder, ingest.url, "t", progress=False, tries=6, backoff_s=0.01)
        assert dict(outcomes) == {"rejected": 1} and ingest.posts == 1
        assert problems == [f"{folder / 'night.csv'}: HTTP 422: cannot parse"]


def test_unreachable_ingest_is_unavailable(folder: Path) -> None:
    ingest = Ingest([])
    ingest.server.server_close()  # nothing listens on that port any more
    outcomes, problems = backfill(folder, ingest.url, "t", progress=False, tries=2, backoff_s=0.01)
    assert dict(outcomes) == {"unavailable": 1} and "unreachable after 2 tries" in problems[0]
