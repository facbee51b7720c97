"""The worker's web server: only the pages the worker registers itself (/healthz, /readyz, /metrics).

Upstream (faust-streaming 0.15.3, aiohttp 3.14.5): faust serves built-in views next to an app's own
pages (faust/web/base.py `Web._enabled_blueprints`): `/table/<table>/<key>/` returns a table's values,
here a patient's whole history, with no credential; `/router/` names the cluster's workers; `/` is an
index or sensor statistics; `/graph/` and `/performance/` describe the worker. `HealthOnlyWeb`
registers none of their blueprints, so those paths do not exist (404). processors/app.py turns the
per-blueprint settings off too, so a faust upgrade that stops calling `_enabled_blueprints` still serves
none of them but the index at `/` (the tests see it).

aiohttp names itself in every answer (`Server: Python/3.11 aiohttp/3.x`): telling a scanner which
versions to try is of no use to Prometheus or an orchestrator, so every answer says `Server: respmon`.
Routed answers get it from the `on_response_prepare` signal; the 400 aiohttp writes for a request it
cannot parse never reaches the app's signals, and takes aiohttp's default, the module global
`web_response.SERVER_SOFTWARE` (aiohttp/web_response.py:532), which is set too when the worker's web
server is built (the worker process serves no other aiohttp app).
"""

from typing import Any

from aiohttp import web as aiohttp_web
from aiohttp import web_response
from faust.web.drivers import aiohttp as faust_aiohttp

SERVER_NAME = "respmon"


async def _neutral_server_header(request: aiohttp_web.Request, response: aiohttp_web.StreamResponse) -> None:
    """Set before aiohttp adds its own (it only fills a missing `Server` header)."""
    response.headers["Server"] = SERVER_NAME


class HealthOnlyWeb(faust_aiohttp.Web):
    """faust's aiohttp web server without faust's built-in views."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.web_app.on_response_prepare.append(_neutral_server_header)
        web_response.SERVER_SOFTWARE = SERVER_NAME  # the answers aiohttp writes before routing

    def _enabled_blueprints(self) -> list[tuple[str, Any]]:
        return []
