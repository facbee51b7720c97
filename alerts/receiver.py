"""A minimal webhook receiver: the reference for sites writing their own, used by the demo and tests.

It verifies the signature (401 and nothing kept when it does not hold), drops repeats by the
idempotency key of the signed body (or the `Idempotency-Key` header), and keeps what it received.
"""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from alerts.signing import HEADER, verify


@dataclass
class Received:
    body: dict[str, Any]
    raw: bytes
    idempotency_key: str | None
    signature_ok: bool


@dataclass
class WebhookReceiver:
    secret: str
    host: str = "127.0.0.1"
    port: int = 0
    fail_with: int | None = None  # answer this status instead of 200 (simulates an outage)
    received: list[Received] = field(default_factory=list)
    seen_keys: set[str] = field(default_factory=set)
    attempts: int = 0

    def __post_init__(self) -> None:
        receiver = self
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.attempts += 1
                if receiver.fail_with is not None:
                    self.send_response(receiver.fail_with)
                    self.end_headers()
                    return
                # Verify before anything else: an unsigned or forged request must neither be kept nor
                # mark its Idempotency-Key as seen (that would make us drop the real delivery later).
                if not verify(raw, self.headers.get(HEADER, ""), receiver.secret):
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.loads(raw or b"{}")
                # The header is not signed; the key inside the signed body is, so a captured delivery
                # re-sent under another header key is still recognised as the same delivery.
                key = body.get("idempotency_key") if isinstance(body, dict) else None
                key = key or self.headers.get("Idempotency-Key")
                with receiver._lock:
                    if key not in receiver.seen_keys:
                        receiver.received.append(Received(body, raw, key, True))
                        if key:
                            receiver.seen_keys.add(key)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/alerts"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
