"""HTTP-level fuzz of the real ingest: random and mutated bodies, content types, format and file-name
parameters. Every answer is a 2xx (a mutation that is still a valid file) or a 4xx with a JSON
`reason`; never a 5xx (ingest turns unexpected exceptions into 503, so a parser crash would show as
503 here, not only as 500), never a traceback; and the process stays up."""

import json
import uuid

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ingest.app import ACCEPTED_TYPES
from ingest.parsers import FORMATS
from tests.conftest import ROOT
from tests.security.conftest import SecuredPipeline

SYN = ROOT / "tests" / "data" / "synthetic"
SEEDS = {name: (SYN / name).read_bytes()[:6000] for name in (
    "spirometry.json", "spirometry.csv", "niv.csv", "alsfrs_flat.json", "fhir_bundle.json",
    "O2Ring_20260308223000.csv", "O2Ring_20260310223000.bin", "oximetry_generic.csv")}
PATIENT = f"FUZZ-{uuid.uuid4().hex[:6]}"
FUZZ = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

HEADER_TEXT = st.characters(min_codepoint=32, max_codepoint=126)
content_types = st.sampled_from(sorted(ACCEPTED_TYPES)) | st.text(HEADER_TEXT, max_size=30)
formats = st.none() | st.sampled_from(list(FORMATS)) | st.text(max_size=20)
filenames = (st.none() | st.sampled_from([n for n in SEEDS] + ["../x.csv", "STR.edf", "a\\b.json"])
             | st.text(max_size=40))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name].replace(b"ALS-001", PATIENT.encode()).replace(b"ALS-002", PATIENT.encode()))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 400))]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from([b"\x00", b"\\u0000", b'"', b",", b"\n", b"-1e999", b"NaN", b"{",
                                                b"]", b"\xff\xfe", b"9" * 40, b"\\u0000", b"2026-13-45T25:61:00"]))
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 300))]
    return name, bytes(data)


@pytest.fixture(scope="module")
def token(secured: SecuredPipeline) -> str:
    return secured.device(f"dev-{PATIENT}", PATIENT)


def check(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("application/json"), answer.text[:200]
        body = answer.json()
        assert body.get("reason") or body.get("detail"), body


def post(secured: SecuredPipeline, token: str, body: bytes, kind: str, fmt: str | None, name: str | None
         ) -> httpx.Response:
    params = {k: v for k, v in (("format", fmt), ("filename", name)) if v is not None}
    try:
        return httpx.post(f"{secured.ingest_url}/v1/uploads", content=body, params=params, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": kind})
    except httpx.LocalProtocolError:  # a header value httpx itself refuses to send: not an ingest answer
        assume(False)
        raise


@pytest.mark.timeout(300)
@FUZZ
@given(body=st.binary(max_size=3000), kind=content_types, fmt=formats, name=filenames)
def test_random_uploads_never_5xx(secured: SecuredPipeline, token: str, body: bytes, kind: str, fmt: str | None,
                                  name: str | None) -> None:
    check(post(secured, token, body, kind, fmt, name))


@pytest.mark.timeout(300)
@FUZZ
@given(seed=mutated(), fmt=st.none() | st.sampled_from(list(FORMATS)))
def test_mutated_device_files_never_5xx(secured: SecuredPipeline, token: str, seed: tuple[str, bytes],
                                        fmt: str | None) -> None:
    name, body = seed
    kind = "application/json" if name.endswith(".json") else "application/octet-stream" \
        if name.endswith(".bin") else "text/csv"
    check(post(secured, token, body, kind, fmt, name))


@pytest.mark.timeout(120)
def test_ingest_is_still_up_and_the_patient_stream_still_flows(secured: SecuredPipeline, token: str) -> None:
    """After the fuzz, a plain upload is accepted and stored: no poison record stalls the partition."""
    import time

    assert httpx.get(f"{secured.ingest_url}/healthz").status_code == 200
    body = json.dumps({"patient_id": PATIENT, "taken_at": "2026-11-01T09:00:00+00:00", "fvc_pct_pred": 77.0,
                       "posture": "sitting", "source": "after-fuzz"})
    answer = post(secured, token, body.encode(), "application/json", None, None)
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 60
    with psycopg.connect(secured.db_url, autocommit=True) as db:
        while time.monotonic() < deadline:
            if db.execute("SELECT 1 FROM spirometry_sessions WHERE patient_id = %s AND source = 'after-fuzz'",
                          (PATIENT,)).fetchone():
                return
            time.sleep(0.5)
    pytest.fail("the worker did not store a plain upload after the fuzz: a fuzzed record stalls its partition")


@pytest.mark.timeout(120)
def test_nul_in_a_text_field_is_refused_and_does_not_stall_the_stream(secured: SecuredPipeline) -> None:
    """Regression: a JSON string with \\u0000 used to be accepted (202) and then failed its PostgreSQL
    insert on every retry of the worker, stalling every patient on that partition."""
    import time

    patient = f"NUL-{uuid.uuid4().hex[:6]}"
    token = secured.device(f"dev-{patient}", patient)
    poison = json.dumps({"patient_id": patient, "taken_at": "2026-10-01T09:00:00+00:00", "fvc_pct_pred": 50.0,
                         "posture": "sitting", "source": "home\u0000spiro"})
    answer = post(secured, token, poison.encode(), "application/json", None, None)
    assert answer.status_code == 422 and "NUL" in answer.json()["reason"], answer.text
    key = json.dumps({"patient_id": patient, "taken_at": "2026-10-01T09:00:00+00:00", "fvc_pct_pred": 50.0,
                      "posture": "sitting", "x\u0000y": 1})
    answer = post(secured, token, key.encode(), "application/json", None, None)
    assert answer.status_code == 422 and "\x00" not in answer.json()["reason"], answer.text
    good = poison.replace("home\\u0000spiro", "home")
    assert post(secured, token, good.encode(), "application/json", None, None).status_code == 202
    deadline = time.monotonic() + 60
    with psycopg.connect(secured.db_url, autocommit=True) as db:
        while time.monotonic() < deadline:
            if db.execute("SELECT 1 FROM spirometry_sessions WHERE patient_id = %s", (patient,)).fetchone():
                return
            time.sleep(0.5)
    pytest.fail("the good upload was not stored")
