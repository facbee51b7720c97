"""Who may send what, on the real services: device tokens, patient binding, size limit, file names,
the team API, and webhook signatures."""

import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from alerts.signing import HEADER, sign, verify
from tests.security.conftest import MAX_UPLOAD, SECRET, SecuredPipeline

pytestmark = pytest.mark.timeout(120)


def session(patient: str, fvc_pct: float = 80.0, day: int = 1) -> str:
    return json.dumps({"patient_id": patient, "taken_at": f"2026-10-{day:02d}T09:00:00+00:00", "fvc_l": 3.0,
                       "fvc_pct_pred": fvc_pct, "posture": "sitting", "source": "home-spirometer"})


def new_patient(secured: SecuredPipeline) -> tuple[str, str]:
    patient = f"SEC-{uuid.uuid4().hex[:8]}"
    return patient, secured.device(f"dev-{patient}", patient)


def test_upload_without_or_with_unknown_credentials_is_401(secured: SecuredPipeline) -> None:
    patient, _ = new_patient(secured)
    for token, headers in ((None, {}), ("not-a-token", {}), (None, {"Authorization": "Basic dXNlcjpwYXNz"}),
                           (None, {"Authorization": "Bearer"}), (None, {"Authorization": "Bearer  x"})):
        answer = secured.upload(token, session(patient), headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["reason"] and answer.headers["WWW-Authenticate"] == "Bearer"
    with psycopg.connect(secured.db_url) as db:
        assert db.execute("SELECT count(*) FROM raw_uploads r JOIN devices d USING (device_id)"
                          " WHERE d.patient_id = %s", (patient,)).fetchone() == (0,)


def test_device_cannot_upload_for_another_patient(secured: SecuredPipeline) -> None:
    mine, token = new_patient(secured)
    other, _ = new_patient(secured)
    for body, kind, fmt in ((session(other), "application/json", None),
                            (f"patient_id,taken_at,fvc_pct_pred\n{other},2026-10-02T09:00:00+00:00,41\n", "text/csv",
                             "spirometry_csv")):
        answer = secured.upload(token, body, kind, **({"format": fmt} if fmt else {}))
        assert answer.status_code == 403, answer.text
        assert answer.json()["reason"] and other not in answer.text
    time.sleep(1.0)
    with psycopg.connect(secured.db_url) as db:
        assert db.execute("SELECT count(*) FROM spirometry_sessions WHERE patient_id = %s", (other,)).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM raw_uploads WHERE device_id = %s AND status = 'rejected'",
                          (f"dev-{mine}",)).fetchone() == (2,)


def test_oversized_uploads_are_413_whether_declared_or_streamed(secured: SecuredPipeline) -> None:
    _, token = new_patient(secured)
    big = b"x" * (MAX_UPLOAD + 1)
    declared = secured.upload(token, big, "text/csv")
    assert declared.status_code == 413 and declared.json()["reason"]

    def chunks():  # no Content-Length: the body is counted as it streams in
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"y" * 65536

    streamed = httpx.post(f"{secured.ingest_url}/v1/uploads", content=chunks(), timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
    assert streamed.status_code == 413 and streamed.json()["reason"]
    # a lying Content-Length (small) over a big body: h11 refuses the mismatch before the app sees it
    url = urlsplit(secured.ingest_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        raw.sendall(b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                    b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 10\r\n\r\n" + big[:200000])
        status = raw.recv(200).split(b" ", 2)[1]
    assert status != b"202" and not status.startswith(b"5"), status
    assert httpx.get(f"{secured.ingest_url}/healthz").status_code == 200


@pytest.mark.parametrize("name", ["../../../../etc/passwd.json", "..\\..\\windows\\s.json", "/abs/dir/s.json",
                                  "a/b/../../c/s.json", "..", "s.json\x00.csv"])
def test_file_names_are_stored_as_base_names_only(secured: SecuredPipeline, name: str) -> None:
    patient, token = new_patient(secured)
    answer = secured.upload(token, session(patient, day=3), filename=name)
    header = secured.upload(token, session(patient, day=4), headers={"X-Filename": name.replace("\x00", "")})
    assert answer.status_code in (202, 422) and header.status_code in (202, 422), (answer.text, header.text)
    if "\x00" in name:  # refused before it reaches ingest (a NUL in any parameter is a 422 naming it)
        assert answer.status_code == 422 and answer.json()["errors"][0]["parameter"] == "filename", answer.text
    with psycopg.connect(secured.db_url) as db:
        stored = [f for (f,) in db.execute("SELECT filename FROM raw_uploads WHERE device_id = %s",
                                           (f"dev-{patient}",)).fetchall()]
    assert len(stored) == (1 if "\x00" in name else 2)
    for filename in stored:
        assert filename is None or ("/" not in filename and "\\" not in filename and filename not in (".", "..")
                                    and "\x00" not in filename), stored


def test_team_api_refuses_device_tokens_and_no_token(secured: SecuredPipeline) -> None:
    _, device_token = new_patient(secured)
    team_token = secured.team_member(f"nurse-{uuid.uuid4().hex[:6]}")
    for path in ("/v1/alerts", "/v1/alerts/1"):
        assert httpx.get(secured.alerts_url + path).status_code == 401
        assert httpx.get(secured.alerts_url + path, headers={"Authorization": f"Bearer {device_token}"}
                         ).status_code == 401
    for action in ("acknowledge", "resolve"):
        assert httpx.post(f"{secured.alerts_url}/v1/alerts/1/{action}", json={},
                          headers={"Authorization": f"Bearer {device_token}"}).status_code == 401
    assert httpx.get(f"{secured.alerts_url}/v1/alerts", headers={"Authorization": f"Bearer {team_token}"}
                     ).status_code == 200
    # and a team token is not a device token
    assert secured.upload(team_token, session("SEC-none")).status_code == 401


# ------------------------------------------------------------------------------------------ webhooks

BODY = json.dumps({"alert_id": 1, "patient_id": "SEC-x", "idempotency_key": "k1"}).encode()


def test_verify_rejects_forged_tampered_replayed_and_malformed_signatures() -> None:
    now = time.time()
    good = sign(BODY, SECRET, int(now))
    assert verify(BODY, good, SECRET, now=now)
    assert not verify(BODY, sign(BODY, "someone-elses-secret", int(now)), SECRET, now=now)  # forged
    assert not verify(BODY.replace(b"SEC-x", b"SEC-y"), good, SECRET, now=now)  # tampered body
    assert not verify(BODY, good, SECRET, now=now + 301)  # replayed after the 5-minute window
    assert not verify(BODY, sign(BODY, SECRET, int(now) + 3600), SECRET, now=now)  # from the future
    ts, mac = good.split(",")
    for header in ("", "garbage", f"{ts}", f"v1={mac.split('=')[1]}", f"t=abc,{mac}", f"{ts},v1=",
                   f"{ts},v1={'0' * 64}", f"{ts},{mac},v1=extra"):
        assert not verify(BODY, header, SECRET, now=now), header


def _post(receiver_url: str, body: bytes, signature: str, key: str) -> int:
    return httpx.post(receiver_url, content=body, headers={HEADER: signature, "Idempotency-Key": key,
                                                           "Content-Type": "application/json"}).status_code


def test_receiver_answers_401_to_forged_or_replayed_webhooks_and_keeps_none(secured: SecuredPipeline) -> None:
    from alerts.receiver import WebhookReceiver

    with WebhookReceiver(SECRET) as receiver:
        key = f"alert-{uuid.uuid4().hex}"
        body = json.dumps({"patient_id": "SEC-x", "idempotency_key": key}).encode()
        assert _post(receiver.url, body, sign(body, "wrong-secret"), key) == 401
        assert _post(receiver.url, body, sign(body, SECRET, int(time.time()) - 600), key) == 401  # replayed
        assert _post(receiver.url, body + b" ", sign(body, SECRET), key) == 401  # tampered
        assert all(r.signature_ok for r in receiver.received), "an unverified webhook was kept"
        # the forged attempts with the real key must not make the receiver drop the real delivery
        assert _post(receiver.url, body, sign(body, SECRET), key) == 200
        assert [r.idempotency_key for r in receiver.received] == [key]
        # a captured delivery re-sent under another Idempotency-Key is still the same delivery
        assert _post(receiver.url, body, sign(body, SECRET), f"{key}-again") in (200, 401)
        assert len(receiver.received) == 1
