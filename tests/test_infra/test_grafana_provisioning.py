"""Grafana provisioning: the datasource the dashboards refer to exists, the provider loads the folder the
compose file mounts, the dashboards are well-formed."""

import json

import yaml

from tests.test_infra.prom import COMPOSE, GRAFANA_DIR

DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources"
PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards"
DASHBOARDS = GRAFANA_DIR / "dashboards"


def _datasource_uids() -> set[str]:
    uids: set[str] = set()
    for path in DATASOURCES.glob("*.y*ml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1
        uids.update(ds["uid"] for ds in doc["datasources"] if ds["type"] == "prometheus")
    return uids


def test_dashboards_use_the_provisioned_datasource_and_are_well_formed() -> None:
    uids = _datasource_uids()
    assert uids
    dashboard_uids = set()
    for path in DASHBOARDS.glob("*.json"):
        dash = json.loads(path.read_text())
        assert dash["uid"] and dash["uid"] not in dashboard_uids
        dashboard_uids.add(dash["uid"])
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in dash["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids
                assert "$" not in target["expr"], "no template variables: the exprs are checked by promtool as is"


def test_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    providers = [p for path in PROVIDERS.glob("*.y*ml") for p in yaml.safe_load(path.read_text())["providers"]]
    assert providers
    path = providers[0]["options"]["path"]
    if path.startswith("$"):  # ${GRAFANA_DASHBOARDS_DIR}: set in the grafana service's environment
        path = compose["environment"][path.strip("${}")]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in compose["volumes"]}
    assert mounts.get(path) == "./grafana/dashboards"
    url = yaml.safe_load(next(DATASOURCES.glob("*.y*ml")).read_text())["datasources"][0]["url"]
    assert url.strip("${}") in compose["environment"], "datasource URL variable not set for grafana"
