"""Webhook signatures: a receiver can verify them, and a tampered body or an old timestamp fails."""

import time

from alerts.signing import sign, verify

BODY = b'{"alert_id":1,"patient_id":"P-1","rule_id":"NS-FVC50"}'


def test_signature_verifies_over_the_exact_body() -> None:
    assert verify(BODY, sign(BODY, "s3cret"), "s3cret")


def test_tampered_body_or_wrong_secret_fails() -> None:
    header = sign(BODY, "s3cret")
    assert not verify(BODY.replace(b"NS-FVC50", b"NS-FVC80"), header, "s3cret")
    assert not verify(BODY, header, "other-secret")


def test_replayed_old_signature_fails() -> None:
    old = sign(BODY, "s3cret", timestamp=int(time.time()) - 3600)
    assert not verify(BODY, old, "s3cret", tolerance_s=300)


def test_malformed_header_fails() -> None:
    assert not verify(BODY, "garbage", "s3cret")
    assert not verify(BODY, "t=abc,v1=00", "s3cret")
