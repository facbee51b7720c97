"""Every PromQL expression of the Grafana dashboard and of the alerting rules parses, and uses only metric
names and labels the services really export (read from the Prometheus registry, not from a list)."""

import json
from pathlib import Path

import pytest
import yaml

from tests.test_infra.prom import (
    GRAFANA_DIR,
    PROM_DIR,
    TARGET_LABELS,
    Exported,
    check_exprs_parse,
    exported_metrics,
    grouping_labels,
    metric_names,
    selector_labels,
)

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
RULE_FILES = [PROM_DIR / "alerts.yml"]


def dashboard_exprs(path: Path) -> dict[str, str]:
    exprs: dict[str, str] = {}

    def walk(panels: list[dict[str, object]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []) or []:  # type: ignore[union-attr]
                exprs[f"{path.name}: {panel.get('title')} [{target.get('refId')}]"] = target["expr"]
            walk(panel.get("panels", []) or [])  # type: ignore[arg-type]

    walk(json.loads(path.read_text())["panels"])
    return exprs


def rule_exprs(path: Path) -> dict[str, str]:
    doc = yaml.safe_load(path.read_text())
    return {f"{path.name}: {rule.get('alert') or rule.get('record')}": rule["expr"]
            for group in doc["groups"] for rule in group["rules"]}


def all_exprs() -> dict[str, str]:
    exprs: dict[str, str] = {}
    for path in DASHBOARDS:
        exprs.update(dashboard_exprs(path))
    for path in RULE_FILES:
        exprs.update(rule_exprs(path))
    return exprs


@pytest.fixture(scope="module")
def exported() -> Exported:
    return exported_metrics()


def test_there_is_an_ops_dashboard_with_queries() -> None:
    assert DASHBOARDS, "no dashboard JSON under infra/grafana/dashboards"
    for path in DASHBOARDS:
        assert len(dashboard_exprs(path)) >= 10, path


def test_registry_sees_the_services_metrics(exported: Exported) -> None:
    # sanity of the collection itself: one counter, one histogram, one gauge, each with its real suffixes
    assert "respmon_ingest_uploads_total" in exported.names
    assert {"respmon_db_write_seconds_bucket", "respmon_db_write_seconds_count"} <= exported.names
    assert "respmon_worker_consumer_lag" in exported.names
    assert exported.labels["respmon_worker_consumer_lag"] == {"topic", "partition"}
    assert "respmon_ingest_uploads" not in exported.names  # a counter's family name is never a sample


def test_every_expression_parses_with_prometheus_parser() -> None:
    exprs = all_exprs()
    done = check_exprs_parse(exprs)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("where, expr", sorted(all_exprs().items()))
def test_expression_uses_only_exported_metrics_and_labels(where: str, expr: str, exported: Exported) -> None:
    used = metric_names(expr)
    assert used or expr.startswith("up{"), f"{where}: no respmon_* metric in {expr!r}"  # up: Prometheus' own
    unknown = used - exported.names
    assert not unknown, f"{where}: {sorted(unknown)} not exported by the services (expr {expr!r})"
    for metric, labels in selector_labels(expr).items():
        allowed = exported.labels[metric] | TARGET_LABELS
        assert labels <= allowed, f"{where}: {metric} has no label(s) {sorted(labels - allowed)}"
    allowed = set().union(set(), *(exported.labels[m] for m in used)) | TARGET_LABELS
    grouping = grouping_labels(expr)
    assert grouping <= allowed, f"{where}: grouping by unknown label(s) {sorted(grouping - allowed)}"


def test_dashboard_shows_every_exported_metric(exported: Exported) -> None:
    """Operations can see everything: each metric family of the services is on a dashboard panel."""
    used = set().union(*(metric_names(e) for path in DASHBOARDS for e in dashboard_exprs(path).values()))
    families = {_family(name) for name in exported.names}
    shown = {_family(name) for name in used}
    assert families - shown == set(), f"metrics on no dashboard panel: {sorted(families - shown)}"


def test_no_patient_identifiers_in_metric_labels(exported: Exported) -> None:
    forbidden = ("patient", "device", "upload_id", "alert_id", "delivery_id", "name", "token", "email", "user")
    for metric, labels in exported.labels.items():
        bad = {label for label in labels if any(word in label for word in forbidden)}
        assert not bad, f"{metric} has identifying label(s) {sorted(bad)}"


def _family(sample: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_created", "_total"):
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample
