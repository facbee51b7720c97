"""The README "Operations" section documents every metric the services export and every alert."""

import re

import yaml

from tests.test_infra.prom import PROM_DIR, ROOT, exported_metrics

README = ROOT / "README.md"


def _operations() -> str:
    text = README.read_text()
    start = text.index("\n## Operations\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def test_every_exported_metric_is_documented() -> None:
    section = _operations()
    documented = set(re.findall(r"`(respmon_[a-z0-9_]+)`", section))
    names = exported_metrics().names
    # one name per family: a counter as ..._total, a histogram by its base name
    families = {n for n in names if not n.endswith(("_created", "_bucket", "_sum", "_count"))}
    families |= {n[: -len("_bucket")] for n in names if n.endswith("_bucket")}
    assert families - documented == set(), f"metrics missing from README Operations: {sorted(families - documented)}"


def test_every_alert_is_documented() -> None:
    section = _operations()
    alerts = {r["alert"] for g in yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    missing = {a for a in alerts if f"`{a}`" not in section}
    assert not missing, f"alerts missing from README Operations: {sorted(missing)}"
