"""No patient identifier and no measured value in any service log or /metrics output.

Known patient ids (and id-like markers in places an attacker or a broken device controls: another
patient's id, a JSON key, a CSV cell) go through uploads that succeed, duplicate and fail; then every
log file the services wrote and every /metrics page is scanned for them."""

import json
import re
import time
import uuid

import httpx
import psycopg
import pytest

from tests.integration.test_walking_skeleton import recent
from tests.security.conftest import MAX_UPLOAD, SecuredPipeline

pytestmark = pytest.mark.timeout(180)


def test_no_patient_id_or_measured_value_in_logs_or_metrics(secured: SecuredPipeline) -> None:
    run = uuid.uuid4().hex[:6].upper()
    patient = f"PIDLEAK{run}A"
    other = f"PIDLEAK{run}B"      # named in an upload by a device that is not hers
    key_marker = f"PIDLEAK{run}K"  # an id-like JSON key, echoed by the parser's reason?
    cell_marker = f"PIDLEAK{run}C"  # an id-like CSV cell in a bad value
    fvc = "41.3719"               # a measured value nobody else uses, matched below as a whole number
    #                               (a log timestamp 19:22:41.376 once matched a shorter "41.37")
    token = secured.device(f"scan-dev-{run}", patient)
    team = secured.team_member(f"scan-nurse-{run}")

    good = json.dumps({"patient_id": patient, "taken_at": recent(4), "fvc_l": 1.83,
                       "fvc_pct_pred": float(fvc), "mip_cmh2o": -33.3, "posture": "sitting", "source": "scan"})
    answers = {
        "accepted": secured.upload(token, good),
        "duplicate": secured.upload(token, good),
        "other_patient": secured.upload(token, good.replace(patient, other)),
        "bad_key": secured.upload(token, json.dumps({"patient_id": patient, "taken_at": recent(3),
                                                     key_marker: 1})),
        "bad_cell": secured.upload(token, f"patient_id,taken_at,fvc_pct_pred\n{patient},{recent(2)},"
                                          f"{cell_marker}\n", "text/csv", format="spirometry_csv"),
        "bad_date": secured.upload(token, f"patient_id,taken_at,fvc_pct_pred\n{patient},{cell_marker},{fvc}\n",
                                   "text/csv", format="spirometry_csv"),
        "no_token": secured.upload(None, good),
        "too_large": secured.upload(token, good.encode() + b" " * MAX_UPLOAD),
        "csv_other": secured.upload(token, f"patient_id,taken_at,fvc_pct_pred\n{other},{recent(1)},{fvc}\n",
                                    "text/csv", format="spirometry_csv"),
    }
    assert answers["accepted"].status_code == 202 and answers["duplicate"].status_code == 200
    assert answers["other_patient"].status_code == 403 and answers["csv_other"].status_code == 403
    assert answers["bad_key"].status_code == 422 and answers["bad_cell"].status_code == 422
    assert answers["no_token"].status_code == 401 and answers["too_large"].status_code == 413

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(r.body.get("patient_id") == patient
                                                   for r in secured.receiver.received):
        time.sleep(0.3)
    assert any(r.body.get("patient_id") == patient for r in secured.receiver.received), "no alert delivered"
    listed = httpx.get(f"{secured.alerts_url}/v1/alerts", params={"patient_id": patient},
                       headers={"Authorization": f"Bearer {team}"}).json()["alerts"]
    assert listed
    for path in (f"/v1/alerts/{listed[0]['alert_id']}", f"/v1/alerts?patient_id={other}"):
        httpx.get(secured.alerts_url + path, headers={"Authorization": f"Bearer {team}"})
    with psycopg.connect(secured.db_url) as db:  # the data itself is where it belongs
        assert db.execute("SELECT fvc_pct_pred FROM spirometry_sessions WHERE patient_id = %s",
                          (patient,)).fetchone() == (float(fvc),)
    time.sleep(1.5)  # let log handlers and the dispatcher write their lines

    pages = {name: httpx.get(f"{url}/metrics").text for name, url in
             (("ingest", secured.ingest_url), ("worker", secured.worker_url), ("alerts-api", secured.alerts_url))}
    logs = {p.name: p.read_text(errors="replace") for p in secured.log_dir.glob("*.log")}
    assert set(logs) >= {"ingest.log", "worker.log", "alerts.log"}
    assert "upload published" in logs["ingest.log"] and "upload rejected" in logs["ingest.log"]
    leaks = []
    for source, text in [*(("metrics " + k, v) for k, v in pages.items()), *(("log " + k, v) for k, v in logs.items())]:
        for what in (patient, other, key_marker, cell_marker, f"PIDLEAK{run}", fvc):
            found = re.compile(rf"(?<![\d.]){re.escape(what)}(?!\d)")
            line = next((ln for ln in text.splitlines() if found.search(ln)), None)
            if line is not None:
                leaks.append(f"{source}: {what!r} in {line[:240]!r}")
    assert leaks == [], "\n".join(leaks)
