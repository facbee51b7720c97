"""The Prometheus configuration and alerting rules, checked by promtool (Debian's package, installed by
infra/prometheus/install.sh when missing): config syntax, rule syntax, and the rules' own unit tests."""

from pathlib import Path

import pytest
import yaml

from respmon.core.settings import Settings
from tests.test_infra.prom import PROM_DIR, promtool

CONFIGS = [PROM_DIR / "prometheus.yml", PROM_DIR / "prometheus.compose.yml"]
RULES = PROM_DIR / "alerts.yml"
RULE_TESTS = PROM_DIR / "alerts_test.yml"
JOBS = {"respmon-ingest": "ingest_port", "respmon-worker": "worker_web_port", "respmon-alerts": "alerts_api_port"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_promtool_check_config(config: Path) -> None:
    done = promtool("check", "config", config.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_scrape_jobs_target_the_services_default_ports() -> None:
    """prometheus.yml scrapes each service on the port Settings gives it by default."""
    jobs = {job["job_name"]: job for job in _load(CONFIGS[0])["scrape_configs"]}
    assert set(jobs) == set(JOBS)
    defaults = Settings.model_fields
    for name, field in JOBS.items():
        targets = [t for group in jobs[name]["static_configs"] for t in group["targets"]]
        assert targets == [f"127.0.0.1:{defaults[field].default}"], (name, targets)
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"


def test_compose_config_has_the_same_jobs_and_rules() -> None:
    local, compose = (_load(path) for path in CONFIGS)
    assert local["rule_files"] == compose["rule_files"] == [RULES.name]
    assert local["global"] == compose["global"]

    def shape(config: dict) -> dict[str, tuple[str, list[str]]]:
        return {job["job_name"]: (job.get("metrics_path", "/metrics"),
                                  [t.split(":")[-1] for g in job["static_configs"] for t in g["targets"]])
                for job in config["scrape_configs"]}

    assert shape(local) == shape(compose)  # same jobs, paths and ports; only the hosts differ


def test_every_alert_has_severity_annotations_and_a_unit_test() -> None:
    rules = [rule for group in _load(RULES)["groups"] for rule in group["rules"]]
    alerts = {rule["alert"] for rule in rules if "alert" in rule}
    assert len(alerts) == len([r for r in rules if "alert" in r]), "duplicate alert names"
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"].get("summary"), rule["alert"]
        assert rule["annotations"].get("description"), rule["alert"]
    tested = {case["alertname"] for test in _load(RULE_TESTS)["tests"] for case in test.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    assert alerts - tested == set(), f"alerts without a firing unit test: {sorted(alerts - tested)}"


def test_required_operational_alerts_exist() -> None:
    """The issue's list: lag growing, no daytime uploads, dead letters, failing deliveries, DB errors, target down."""
    exprs = " ".join(rule["expr"] for group in _load(RULES)["groups"] for rule in group["rules"])
    for needle in ("respmon_worker_consumer_lag", "hour()", 'outcome=~"rejected|forbidden"',
                   'outcome="deadletter"', 'respmon_alert_delivery_attempts_total{outcome="failed"}',
                   "respmon_db_errors_total", "up{"):
        assert needle in exprs, needle
