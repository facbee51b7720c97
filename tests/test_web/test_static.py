"""The page assets come from the team service itself (a hospital network reaches no CDN): htmx and uPlot
at the versions pinned in respmon/web/package-lock.json, with their licences, and no other origin."""

import json
from pathlib import Path

from fastapi.testclient import TestClient

WEB = Path(__file__).resolve().parents[2] / "respmon" / "web"


def pinned() -> dict[str, str]:
    packages = json.loads((WEB / "package-lock.json").read_text())["packages"]
    return {name: packages[f"node_modules/{name}"]["version"] for name in ("htmx.org", "uplot")}


def test_the_vendored_libraries_are_the_pinned_ones_and_htmx_is_2x(web_app: TestClient) -> None:
    versions = pinned()
    assert versions["htmx.org"].startswith("2."), "htmx 4 changed behaviour: the view is written for 2.x"
    served = web_app.get("/static/vendor/VERSIONS").text.split()
    assert served == [f"{name}@{version}" for name, version in versions.items()]
    htmx = web_app.get("/static/vendor/htmx.min.js")
    assert htmx.status_code == 200 and f'version:"{versions["htmx.org"]}"' in htmx.text.replace(" ", "")
    assert web_app.get("/static/vendor/uPlot.iife.min.js").status_code == 200


def test_the_licences_are_served_beside_the_libraries(web_app: TestClient) -> None:
    for name, licence in (("LICENSE.htmx", "Zero-Clause BSD"), ("LICENSE.uplot", "The MIT License")):
        answer = web_app.get(f"/static/vendor/{name}")
        assert answer.status_code == 200 and licence in answer.text


def test_templates_reference_no_other_origin() -> None:
    pdf_only = "{% if page_css %}<style>{{ page_css }}</style>"  # the PDF's temporary file, printed from disk
    for template in (WEB / "templates").rglob("*.html"):
        text = template.read_text().replace(pdf_only, "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, template.name
        assert "<script>" not in text and " style=" not in text and "<style" not in text, template.name
