"""The new device files through the real pipeline (ingest HTTP -> Kafka -> worker -> PostgreSQL): a Löwenstein
night, a Contec night, an O2Ring night with the ring's own summary in its device_* columns, and a broken
Contec file answered 422 with one line naming the file and field."""

import uuid
from datetime import datetime
from pathlib import Path

import psycopg

from tests.integration.conftest import Pipeline
from tests.integration.test_walking_skeleton import wait_until
from tests.test_ingest.device_files import contec_spo2, o2ring_bin

DATA = Path(__file__).resolve().parents[1] / "data"
START = datetime(2026, 11, 20, 22, 30)
OCTETS = "application/octet-stream"


def test_new_device_files_reach_their_tables(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    wmedf = (DATA / "lowenstein" / "signal_real.wmedf").read_bytes()
    answer = pipeline.upload(token, wmedf, OCTETS, filename="signal_001.wmedf")
    assert answer.status_code == 202 and answer.json()["format"] == "lowenstein_wmedf", answer.text
    night = [(95, 60)] * 3600 + [(86, 72)] * 120 + [(127, 255)] * 30
    answer = pipeline.upload(token, contec_spo2(START, night), OCTETS, filename="20261120.SpO2")
    assert answer.status_code == 202 and answer.json()["format"] == "contec_spo2", answer.text
    ring = o2ring_bin(START.replace(day=21), [(95, 60)] * 3000 + [(88, 70)] * 99, mean=94, lowest=87,
                      drops3=53, drops4=22, t90_s=396)
    assert pipeline.upload(token, ring, OCTETS, filename="O2Ring.bin").status_code == 202

    def rows() -> list[tuple]:
        return db.execute("SELECT source, recording_min, min_spo2, device_mean_spo2, device_min_spo2, device_drops3,"
                          " device_drops4, device_t90_s FROM oximetry_nights WHERE patient_id = %s ORDER BY source",
                          (patient,)).fetchall()

    wait_until(lambda: len(rows()) == 2, what="two oximetry nights stored")
    assert rows() == [("contec_spo2", 62.5, 86, None, None, None, None, None),
                      ("o2ring_bin", 206.6, 88, 94, 87, 53, 22, 396)]
    niv = wait_until(lambda: db.execute("SELECT usage_hours, leak_kind, resp_rate FROM niv_nights"
                                        " WHERE patient_id = %s AND source = 'lowenstein_wmedf'",
                                        (patient,)).fetchone(), what="the Löwenstein night")
    assert niv == (4.526, "total", 14.0)


def test_truncated_contec_file_is_422_naming_file_and_field(pipeline: Pipeline) -> None:
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"dev-{patient}", patient)
    truncated = contec_spo2(START, [(95, 60)] * 600)[:-7]
    answer = pipeline.upload(token, truncated, OCTETS, filename="20261120.SpO2")
    assert answer.status_code == 422
    reason = answer.json()["reason"]
    assert reason.startswith("20261120.SpO2: ") and "field 'sample count'" in reason and "truncated" in reason
    assert "\n" not in reason
