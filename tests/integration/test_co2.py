"""Hypercapnia on the real stack (issue 12): a blood gas CSV and an overnight TcCO2 CSV uploaded like a
device, parsed by ingest, stored by the worker in their tables and raising the NIV_START findings."""

import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from tests.integration.conftest import Pipeline
from tests.integration.test_walking_skeleton import wait_until


def days_ago(days: int, hour: int) -> datetime:
    """Recent data (ingest refuses records from the future; old findings are history, not news)."""
    return (datetime.now(UTC) - timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


def gas_csv(patient: str) -> str:
    return ("patient_id,taken_at,sample,pco2,pco2_unit,bicarbonate_mmol_l,ph,po2\n"
            f"{patient},{days_ago(4, 9).isoformat()},venous,45,mmHg,26,7.38,\n"
            f"{patient},{days_ago(3, 9).isoformat()},capillary,6.3,kPa,29.5,7.36,8.0\n")


def tcco2_csv() -> str:
    """6 h, one sample a minute: 42 mmHg with 15 minutes at 58 from the third hour."""
    start = days_ago(2, 22)
    rows = [f"{(start + timedelta(minutes=m)).isoformat()},{58 if 120 <= m < 135 else 42},95,70" for m in range(360)]
    return "timestamp,tcpco2_mmhg,spo2,pulse\n" + "\n".join(rows) + "\n"


def test_blood_gas_and_tcco2_uploads_are_stored_and_raise_niv_start(pipeline: Pipeline, db: psycopg.Connection) -> None:
    patient = f"P-co2-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"co2-{patient}", patient)
    gas = pipeline.upload(token, gas_csv(patient), "text/csv", filename="gas.csv")
    assert gas.status_code == 202, gas.text
    assert (gas.json()["format"], gas.json()["records"]) == ("blood_gas_csv", 2)
    night = pipeline.upload(token, tcco2_csv(), "text/csv", filename="tcco2.csv")
    assert night.status_code == 202, night.text
    assert (night.json()["format"], night.json()["records"]) == ("tcco2_csv", 1)

    def findings() -> dict[str, str]:
        rows = db.execute("SELECT rule_id, severity FROM findings WHERE patient_id = %s AND state = 'open'",
                          (patient,)).fetchall()
        return dict(rows)

    wait_until(lambda: {"NS-PACO2", "NS-TCCO2"} <= set(findings()), what="the NIV_START findings")
    # venous 45 with bicarbonate 26 screens nothing; the capillary gas's bicarbonate 29.5 is a screen hit too
    assert findings() == {"NS-PACO2": "urgent", "NS-TCCO2": "high", "NS-CO2SCREEN": "warn"}
    gases = db.execute("SELECT sample, pco2_mmhg, bicarbonate_mmol_l, po2_mmhg, source FROM blood_gases"
                       " WHERE patient_id = %s ORDER BY taken_at", (patient,)).fetchall()
    assert gases == [("venous", 45.0, 26.0, None, "blood_gas_csv"),
                     ("capillary", 47.254, 29.5, 60.005, "blood_gas_csv")]  # kPa stored in mmHg
    nights = db.execute("SELECT night_date, valid, valid_min, baseline_tcpco2, max_tcpco2, gt55_min, rise10_min"
                        " FROM capnography_nights WHERE patient_id = %s", (patient,)).fetchall()
    assert nights == [(days_ago(2, 22).date(), True, 360.0, 42.0, 58.0, 15.0, 15.0)]
