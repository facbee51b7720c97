"""The worker's web port serves /healthz, /readyz and /metrics only: faust's built-in views (a patient's
whole history at /table/patient-history/<patient>/, the cluster at /router/, statistics at /) answer
404, the port listens on loopback only, and no answer names aiohttp or Python (issue 13)."""

import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.security.conftest import SecuredPipeline

pytestmark = pytest.mark.timeout(120)

FAUST_VIEWS = ("/", "/router/", "/table/", "/table/patient-history/", "/graph/", "/stats/", "/assignment/",
               "/performance/", "/signal/", "/healthz/x", "/metrics/../table/")


def stored_patient(secured: SecuredPipeline) -> str:
    """A patient whose upload the worker has processed (its history is in the worker's table)."""
    patient = f"SECW-{uuid.uuid4().hex[:8]}"
    token = secured.device(f"dev-{patient}", patient)
    body = json.dumps({"patient_id": patient, "taken_at": "2026-10-03T09:00:00+00:00", "fvc_l": 1.8,
                       "fvc_pct_pred": 44.0, "posture": "sitting", "source": "home-spirometer"})
    assert secured.upload(token, body).status_code == 202
    deadline = time.monotonic() + 60
    with psycopg.connect(secured.db_url, autocommit=True) as db:
        while not db.execute("SELECT 1 FROM findings WHERE patient_id = %s", (patient,)).fetchone():
            assert time.monotonic() < deadline, "the upload was not processed"
            time.sleep(0.3)
    return patient


def assert_no_server_software(answer: httpx.Response) -> None:
    server = answer.headers.get("Server", "")
    assert "aiohttp" not in server.lower() and "python" not in server.lower(), server


def test_faust_views_answer_404_and_never_show_a_history(secured: SecuredPipeline) -> None:
    patient = stored_patient(secured)
    for path in (*FAUST_VIEWS, f"/table/patient-history/{patient}/", f"/table/patient-history/{patient}",
                 f"/router/patient-history/{patient}/"):
        answer = httpx.get(f"{secured.worker_url}{path}", timeout=10)
        assert answer.status_code == 404, (path, answer.status_code)
        assert patient not in answer.text and "fvc" not in answer.text, path
        assert_no_server_software(answer)
    for method in ("POST", "PUT", "DELETE"):
        answer = httpx.request(method, f"{secured.worker_url}/table/patient-history/{patient}/", timeout=10)
        assert answer.status_code in (404, 405) and patient not in answer.text, method


def test_health_readiness_and_metrics_still_answer_without_naming_the_server(secured: SecuredPipeline) -> None:
    health = httpx.get(f"{secured.worker_url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    deadline = time.monotonic() + 60
    while (ready := httpx.get(f"{secured.worker_url}/readyz", timeout=10)).status_code != 200:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.5)
    metrics = httpx.get(f"{secured.worker_url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "respmon_worker_events_processed_total" in metrics.text
    for answer in (health, ready, metrics):
        assert_no_server_software(answer)
        assert answer.headers["Server"] == "respmon"


def test_a_malformed_request_does_not_name_the_server_either(secured: SecuredPipeline) -> None:
    url = urlsplit(secured.worker_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        head = raw.recv(4096).split(b"\r\n\r\n")[0].decode("latin-1")
    assert head.split(" ")[1] == "400", head
    assert "aiohttp" not in head.lower() and "python" not in head.lower(), head


def test_the_worker_port_listens_on_loopback_only(secured: SecuredPipeline) -> None:
    """RESPMON_WORKER_HOST (127.0.0.1 by default) is the address the port binds, not only its name."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        pytest.skip("this host has no network interface but loopback")
    finally:
        probe.close()
    if address.startswith("127."):
        pytest.skip("this host has no network interface but loopback")
    port = urlsplit(secured.worker_url).port
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=3).close()
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
