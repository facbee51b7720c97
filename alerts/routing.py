"""Per-site routing: which categories and severities go to which channel, target and team, and where
an alert goes when nobody acknowledges it in time. Read from a YAML file (`RESPMON_ROUTING_FILE`);
`${VAR}` in the file is taken from the environment, so secrets and addresses stay out of it.

Without a file, every alert from `warn` up goes to `RESPMON_WEBHOOK_URL` (if set) and nothing escalates.
A route sends `warn` and worse unless it says `min_severity: info`: `info` alerts are kept for the team's
view (the alerts API), not sent.
"""

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from respmon.core.settings import Settings
from schemas.findings import CATEGORIES, SEVERITY_ORDER, Category, Severity

Channel = Literal["webhook", "email", "fhir"]
"""`fhir`: the alert itself, as a FHIR transaction Bundle to a FHIR server base URL, at every change
(opened, severity changed, acknowledged, resolved), never as a notification or an escalation."""


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    channel: Channel
    target: str = Field(min_length=1, description="webhook URL, e-mail address(es) comma-separated, FHIR base URL")
    team: str = "respiratory"
    categories: tuple[Category, ...] = CATEGORIES
    min_severity: Severity = "warn"
    """`info` findings are kept for the team's view; a route that wants them says so."""

    def matches(self, category: str, severity: str) -> bool:
        return category in self.categories and SEVERITY_ORDER[severity] >= SEVERITY_ORDER[self.min_severity]


class Escalation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    after_minutes: float = Field(gt=0, description="re-send when not acknowledged within this time")
    routes: tuple[Route, ...]


class Routing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    routes: tuple[Route, ...] = ()
    escalation: Escalation | None = None

    def notify_routes(self, category: str, severity: str) -> list[Route]:
        return [r for r in self.routes if r.matches(category, severity) and r.channel != "fhir"]

    def escalation_routes(self, category: str, severity: str) -> list[Route]:
        return [r for r in self.escalation.routes if r.matches(category, severity) and r.channel != "fhir"
                ] if self.escalation else []

    def fhir_routes(self) -> list[Route]:
        """The FHIR servers every change of an alert goes to (whatever its category and severity: the caller
        filters, since an alert already pushed keeps being pushed when it turns milder)."""
        return [r for r in self.routes if r.channel == "fhir"]


class RoutingError(ValueError):
    pass


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(text: str, path: Path) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise RoutingError(f"{path}: ${{{name}}} is not set in the environment")
        return os.environ[name]

    return _VAR.sub(value, text)


def load_routing(path: Path) -> Routing:
    try:
        data = yaml.safe_load(_expand(path.read_text(), path))
        return Routing.model_validate(data or {})
    except OSError as error:
        raise RoutingError(f"{path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise RoutingError(f"{path}: not valid YAML ({error})") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RoutingError(f"{path}: field {where}: {first['msg']}") from None


@lru_cache
def routing_for(settings: Settings) -> Routing:
    """The routing file's routes (or the default webhook), plus a `fhir` route to `RESPMON_FHIR_SERVER_URL`."""
    if settings.routing_file is not None:
        routing = load_routing(settings.routing_file)
    elif settings.webhook_url:
        routing = default_routing(settings.webhook_url)
    else:
        routing = Routing()
    if settings.fhir_server_url:
        fhir = Route(name="fhir-server", channel="fhir", target=settings.fhir_server_url.rstrip("/"))
        routing = routing.model_copy(update={"routes": (*routing.routes, fhir)})
    return routing


def default_routing(webhook_url: str) -> Routing:
    """Routing without a file: one webhook, `warn` and worse."""
    return Routing(routes=(Route(name="default-webhook", channel="webhook", target=webhook_url),))
