"""infra/compose.yaml, validated without Docker: images, settings names (read from Settings), variable
interpolation (secrets required, the rest defaulted), mounts of our Prometheus/Grafana files, ports."""

import re
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from respmon.core.settings import Settings
from tests.test_infra.prom import COMPOSE, ROOT

INFRA = COMPOSE.parent
DOC = yaml.safe_load(COMPOSE.read_text())
SERVICES: dict[str, dict] = DOC["services"]
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
VAR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(:\?|:-|\?|-)?(.*)$", re.DOTALL)


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _resolve(value: str) -> str:
    """Interpolate like compose would with an empty environment (required variables get a placeholder)."""
    def one(match: re.Match[str]) -> str:
        name, op, rest = VAR.match(match.group(1)).groups()  # type: ignore[union-attr]
        return rest if op in (":-", "-") else f"placeholder-{name.lower()}"
    return INTERPOLATION.sub(one, value)


def _respmon_vars() -> list[tuple[str, str, str]]:
    return [(name, key, value) for name, service in SERVICES.items()
            for key, value in _environment(service).items() if key.startswith("RESPMON_")]


def _field(var: str) -> str:
    return var.removeprefix("RESPMON_").lower()


def test_every_service_has_an_image_or_a_build() -> None:
    assert {"kafka", "db", "ingest", "worker", "alerts-api", "prometheus", "grafana"} <= set(SERVICES)
    for name, service in SERVICES.items():
        assert service.get("image") or service.get("build"), name
        build = service.get("build")
        if build:
            context = (INFRA / build["context"]).resolve()
            assert context == ROOT, name
            assert (context / build["dockerfile"]).is_file(), name


def test_images_are_the_ones_of_the_issue() -> None:
    assert "apache/kafka" in SERVICES["kafka"]["image"]
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert "timescale/timescaledb" in SERVICES["db"]["image"]
    commands = {tuple(SERVICES[s]["command"]) for s in ("ingest", "worker", "alerts-api")}
    assert commands == {("ingest",), ("worker",), ("alerts-api",)}


def test_every_respmon_variable_is_a_settings_field() -> None:
    fields = Settings.model_fields
    set_vars = _respmon_vars()
    assert set_vars
    for service, var, _ in set_vars:
        assert _field(var) in fields, f"{service}: {var} is not a field of respmon.core.settings.Settings"
    example = INFRA / "respmon.env.example"
    for var in re.findall(r"^#?\s*(RESPMON_[A-Z0-9_]+)=", example.read_text(), re.MULTILINE):
        assert _field(var) in fields, f"{example.name}: {var} is not a Settings field"


def test_settings_values_validate() -> None:
    """What compose passes each service is accepted by Settings (types, e.g. booleans, ports)."""
    for name, service in SERVICES.items():
        values = {_field(k): _resolve(v) for k, v in _environment(service).items() if k.startswith("RESPMON_")}
        if values:
            settings = Settings(**values)
            for field, value in values.items():
                assert getattr(settings, field) is not None, (name, field, value)


def test_interpolations_require_secrets_and_default_the_rest() -> None:
    text = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"(?<!\$)\$(?![{$])[A-Za-z_]", text), "use ${VAR:-default} / ${VAR:?}, not $VAR"
    secret_fields = {f"RESPMON_{name.upper()}" for name, info in Settings.model_fields.items()
                     if info.annotation is SecretStr}
    seen = set()
    for inner in INTERPOLATION.findall(text):
        name, op, _ = VAR.match(inner).groups()  # type: ignore[union-attr]
        seen.add(name)
        assert op in (":?", ":-"), f"${{{inner}}}: give a default (:-) or require it (:?)"
        if name in secret_fields or re.search(r"SECRET|PASSWORD|TOKEN", name):
            assert op == ":?", f"${{{inner}}}: a secret must be required, never defaulted"
    assert {"POSTGRES_PASSWORD", "RESPMON_WEBHOOK_SECRET", "GRAFANA_ADMIN_PASSWORD"} <= seen


def test_required_secret_settings_are_given_to_the_services_that_need_them() -> None:
    secret_fields = {f"RESPMON_{name.upper()}" for name, info in Settings.model_fields.items()
                     if info.annotation is SecretStr}
    worker = _environment(SERVICES["worker"])
    assert secret_fields <= set(worker), "the worker signs webhooks: it needs every required secret"
    for var in secret_fields:
        assert worker[var].startswith(f"${{{var}:?"), var


@pytest.mark.parametrize("service", ["prometheus", "grafana"])
def test_our_files_are_mounted(service: str) -> None:
    mounts = [v for v in SERVICES[service]["volumes"] if v.startswith("./")]
    assert mounts
    for volume in mounts:
        source = INFRA / volume.split(":")[0]
        assert source.exists(), f"{service}: {source} does not exist"


def test_prometheus_finds_its_rules_and_scrapes_the_compose_services() -> None:
    mounts = {v.split(":")[1]: INFRA / v.split(":")[0] for v in SERVICES["prometheus"]["volumes"] if v.startswith("./")}
    config_path = next(a for a in SERVICES["prometheus"]["command"] if a.startswith("--config.file=")).split("=", 1)[1]
    config = yaml.safe_load(mounts[config_path].read_text())
    for rule_file in config["rule_files"]:
        inside = str(Path(config_path).parent / rule_file)
        assert inside in mounts, f"rule file {inside} is not mounted"
        assert mounts[inside].name == "alerts.yml"
    for job in config["scrape_configs"]:
        for target in (t for g in job["static_configs"] for t in g["targets"]):
            host, port = target.rsplit(":", 1)
            assert host in SERVICES, f"{job['job_name']}: {host} is no compose service"
            env = _environment(SERVICES[host])
            port_vars = [k for k, v in env.items() if k.endswith("_PORT") and v == port]
            assert port_vars, f"{job['job_name']}: {host} does not listen on {port}"
            # the listen address of that port: RESPMON_INGEST_HOST for RESPMON_INGEST_PORT,
            # RESPMON_WORKER_HOST for RESPMON_WORKER_WEB_PORT
            listen = [v for k, v in env.items() if k.endswith("_HOST") and port_vars[0].startswith(k[:-5] + "_")]
            assert listen == ["0.0.0.0"], f"{host} must listen on all interfaces in its container ({listen})"


PUBLISHED = re.compile(r"^\$\{(?P<addr>[A-Z_]+_PUBLISH_ADDR):-(?P<default>[^}]*)\}"
                       r":\$\{[A-Z_]+_PUBLISH_PORT:-\d+\}:\d+$")


def test_every_published_port_binds_the_hosts_loopback_unless_its_address_variable_says_otherwise() -> None:
    """A port written without an address (`"6066:6066"`) is published on every interface of the host."""
    for name, service in SERVICES.items():
        for port in service.get("ports") or []:
            match = PUBLISHED.match(str(port))
            assert match, f"{name}: publish {port!r} as ${{X_PUBLISH_ADDR:-127.0.0.1}}:${{X_PUBLISH_PORT:-n}}:n"
            assert match["default"] == "127.0.0.1", f"{name}: {port} defaults to {match['default']}"


def test_the_workers_metrics_port_is_reachable_by_prometheus_and_published_on_loopback_only() -> None:
    worker = SERVICES["worker"]
    assert _environment(worker)["RESPMON_WORKER_WEB_PORT"] == "6066"
    assert worker["ports"] == ["${WORKER_METRICS_PUBLISH_ADDR:-127.0.0.1}:${WORKER_METRICS_PUBLISH_PORT:-6066}:6066"]
    assert not worker.get("network_mode"), "the worker shares no host network: only its published port is reachable"
    assert "WORKER_METRICS_PUBLISH_ADDR" in COMPOSE.read_text().split("name: respmon")[0], "documented in the header"


def test_respmon_services_do_not_restart_a_bad_configuration_forever() -> None:
    """A configuration error exits 2 at once: `unless-stopped`/`always` would restart it in a loop and
    bury its one-line reason; a bounded on-failure policy leaves the container exited, reason in its log."""
    for name in ("setup", "ingest", "worker", "alerts-api"):
        policy = str(DOC["services"][name].get("restart", "no"))
        assert policy == "no" or policy.startswith("on-failure:"), (name, policy)
        if policy.startswith("on-failure:"):
            assert 1 <= int(policy.split(":")[1]) <= 10
