"""Helpers for the infrastructure tests: Debian's promtool/prometheus, installed by the project's own
script when missing, a throwaway Prometheus server, and the metric names the services export."""

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import httpx

from respmon.launcher import stop, wait_http

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "infra" / "prometheus"
GRAFANA_DIR = ROOT / "infra" / "grafana"
COMPOSE = ROOT / "infra" / "compose.yaml"
INSTALL = PROM_DIR / "install.sh"

# The modules whose import registers every Prometheus metric of the three services.
METRIC_MODULES = ("ingest.metrics", "processors.telemetry", "processors.lag", "alerts.metrics", "alerts.api")
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series


@cache
def binaries() -> tuple[str, str]:
    """Paths of promtool and prometheus; runs infra/prometheus/install.sh once if either is missing."""
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{INSTALL} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    if not (promtool and prometheus):
        raise RuntimeError(f"{INSTALL} ran but promtool/prometheus are still not on PATH")
    return promtool, prometheus


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller checks the exit code (tests assert on its output either way)."""
    return subprocess.run([binaries()[0], *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@dataclass
class PrometheusServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> list[dict[str, object]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])


@contextmanager
def prometheus_server(config_text: str, port: int, workdir: Path, timeout_s: float = 20) -> Iterator[PrometheusServer]:
    """Run Debian's prometheus on 127.0.0.1:`port` with `config_text`, its own TSDB under `workdir`;
    yield once it is ready; always stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(config_text)
    log = workdir / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binaries()[1], f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=out, stderr=subprocess.STDOUT)
    server = PrometheusServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        try:
            wait_http(f"{server.url}/-/ready", timeout_s, proc, status=200)
        except (RuntimeError, TimeoutError) as error:
            raise type(error)(f"prometheus: {error}:\n{log.read_text()[-3000:]}") from None
        yield server
    finally:
        stop(proc, timeout_s=15)


# ---------- the metrics the services export ----------

@dataclass
class Exported:
    """Sample names a scrape can show (with _total/_bucket/_sum/_count/_created) and each one's labels."""
    labels: dict[str, set[str]] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return set(self.labels)


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


def exported_metrics(modules: Iterable[str] = METRIC_MODULES) -> Exported:
    """Import the metric modules, then read every respmon_* family from the default registry."""
    import importlib
    import importlib.util

    from prometheus_client import REGISTRY

    for module in modules:
        if importlib.util.find_spec(module) is not None:  # alerts.api: the alerts-api service, being added
            importlib.import_module(module)
    exported = Exported()
    collectors = set(REGISTRY._names_to_collectors.values())  # the registry has no public list of collectors
    for collector in collectors:
        labelnames = set(getattr(collector, "_labelnames", ()))
        describe = getattr(collector, "describe", None)
        families = describe() if describe is not None else collector.collect()
        for family in families:
            if not family.name.startswith("respmon_"):
                continue
            for suffix in _SUFFIXES.get(family.type, ("",)):
                extra = {"le"} if suffix == "_bucket" else set()
                exported.labels[family.name + suffix] = labelnames | extra
    return exported


# ---------- PromQL: the metric and label names an expression uses ----------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """respmon_* metric names in a PromQL expression (string literals are ignored)."""
    bare = _STRING.sub('""', expr)
    return {name for name in _IDENT.findall(bare) if name.startswith("respmon_")}


def selector_labels(expr: str) -> dict[str, set[str]]:
    """Label names matched in each respmon_* selector: {metric: {label, ...}}."""
    bare = _STRING.sub('""', expr)
    found: dict[str, set[str]] = {}
    for metric, matchers in _SELECTOR.findall(bare):
        if metric.startswith("respmon_"):
            found.setdefault(metric, set()).update(_MATCHER.findall(matchers))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names in by/without/on/ignoring/group_* clauses."""
    bare = _STRING.sub('""', expr)
    labels: set[str] = set()
    for inside in _GROUPING.findall(bare):
        labels.update(name.strip() for name in inside.split(",") if name.strip())
    return labels


def check_exprs_parse(exprs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Parse PromQL expressions with Prometheus' own parser: as recording rules through `promtool check rules`."""
    import yaml

    rules = [{"record": f"respmon_check:expr_{i}", "expr": expr} for i, expr in enumerate(exprs.values())]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exprs.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
        return promtool("check", "rules", str(path))
