"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", sent as `X-Respmon-Signature: t=<ts>,v1=<hex>`.

A receiver recomputes the HMAC with the shared secret over the exact bytes it received and the
timestamp from the header, compares in constant time, and rejects timestamps older than its tolerance
(replay protection).
"""

import hashlib
import hmac
import time

HEADER = "X-Respmon-Signature"


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(body: bytes, header: str, secret: str, tolerance_s: int = 300, now: float | None = None) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
