"""Routing files: matching by category and severity, environment expansion, clear errors."""

from pathlib import Path

import pytest

from alerts.routing import RoutingError, load_routing


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


def test_routes_match_category_and_minimum_severity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK", "https://hospital.test/hook")
    routing = load_routing(write(tmp_path, """
routes:
  - {name: all, channel: webhook, target: "${HOOK}"}
  - {name: trach-mail, channel: email, target: a@b.test, categories: [TRACH_DISCUSS], min_severity: high}
escalation: {after_minutes: 240, routes: [{name: oncall, channel: email, target: c@d.test, min_severity: warn}]}
"""))
    assert routing.routes[0].target == "https://hospital.test/hook"
    assert [r.name for r in routing.notify_routes("TRACH_DISCUSS", "high")] == ["all", "trach-mail"]
    assert [r.name for r in routing.notify_routes("TRACH_DISCUSS", "warn")] == ["all"]
    assert [r.name for r in routing.notify_routes("NIV_START", "urgent")] == ["all"]
    assert routing.escalation_routes("DATA_QUALITY", "info") == []


def test_errors_name_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match=r"routing.yaml: field routes.0.channel"):
        load_routing(write(tmp_path, "routes: [{name: x, channel: pager, target: y}]"))
    with pytest.raises(RoutingError, match=r"\$\{NOT_SET_ANYWHERE\} is not set"):
        load_routing(write(tmp_path, "routes: [{name: x, channel: webhook, target: '${NOT_SET_ANYWHERE}'}]"))
