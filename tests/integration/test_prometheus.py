"""A real Prometheus (Debian's package) scrapes the running ingest and worker: after one upload, the
uploads counter, the worker's processed-events counter and the consumer lag gauge read back > 0 / present
through the HTTP API. Prometheus runs on a free loopback port with its own TSDB and is stopped after."""

import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import free_port
from tests.integration.conftest import Pipeline
from tests.test_infra.prom import binaries, prometheus_server

DEADLINE_S = 40


def _scrape_config(pipeline: Pipeline) -> str:
    def target(url: str) -> str:
        return urlparse(url).netloc

    return json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "respmon-ingest", "static_configs": [{"targets": [target(pipeline.ingest_url)]}]},
            {"job_name": "respmon-worker", "static_configs": [{"targets": [target(pipeline.worker_url)]}]},
        ],
    })


def test_prometheus_scrapes_ingest_and_worker(pipeline: Pipeline, stack_env: dict[str, str],
                                              tmp_path: Path) -> None:
    binaries()  # installs Debian's prometheus via infra/prometheus/install.sh when missing
    patient = f"P-{uuid.uuid4().hex[:8]}"
    token = pipeline.device(f"spiro-{patient}", patient)
    body = json.dumps({"patient_id": patient, "taken_at": "2026-11-20T09:30:00+00:00", "fvc_l": 3.1,
                       "fvc_pct_pred": 88.0, "posture": "sitting", "source": "home-spirometer"})
    answer = pipeline.upload(token, body)
    assert answer.status_code == 202, answer.text
    topic = f"{stack_env['RESPMON_TOPIC_PREFIX']}.measurements"

    with prometheus_server(_scrape_config(pipeline), free_port(), tmp_path / "prometheus") as prom:
        wanted = {
            "up": 'min(up{job=~"respmon-ingest|respmon-worker"})',
            "uploads": 'sum(respmon_ingest_uploads_total{job="respmon-ingest", outcome="accepted"})',
            "processed": 'sum(respmon_worker_events_processed_total{job="respmon-worker", outcome="ok"})',
            "lag partitions": f'count(respmon_worker_consumer_lag{{job="respmon-worker", topic="{topic}"}})',
        }
        values: dict[str, float] = {}
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            for name, expr in wanted.items():
                result = prom.query(expr)
                if result:
                    values[name] = float(result[0]["value"][1])  # type: ignore[index]
            if len(values) == len(wanted) and all(v > 0 for v in values.values()):
                break
            time.sleep(0.5)
        else:
            targets = prom.query("up")
            pytest.fail(f"not all series seen within {DEADLINE_S}s: {values}; up = {targets}; "
                        f"prometheus log {prom.log}")

        assert values["up"] == 1
        assert values["uploads"] >= 1
        assert values["processed"] >= 1
        assert values["lag partitions"] >= 1  # the worker owns (all) partitions of this run's topic
        lags = prom.query(f'respmon_worker_consumer_lag{{topic="{topic}"}}')
        assert all(float(s["value"][1]) >= 0 for s in lags)  # type: ignore[index]
        assert {s["metric"]["partition"] for s in lags} <= {str(p) for p in range(64)}  # type: ignore[index]

        # once the worker has committed what it processed, the lag of this run's topic comes back to 0
        while time.monotonic() < deadline + 15:
            total = prom.query(f'sum(respmon_worker_consumer_lag{{topic="{topic}"}})')
            if total and float(total[0]["value"][1]) == 0:  # type: ignore[index]
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"consumer lag of {topic} did not come back to 0: {prom.query('respmon_worker_consumer_lag')}")
