"""The FHIR push: the sender of the outbox's `fhir` deliveries (`alerts/fhirpush.py` queues them).

Each delivery names an alert; the sender reads the alert as it stands now and the Observations its evidence
cites, builds a transaction Bundle (`resources.transaction`: every entry a PUT on a stable id, the patient a
conditional create) and POSTs it to the route's FHIR base URL with `RESPMON_FHIR_SERVER_TOKEN` as bearer
token. A 2xx is delivered; anything else (the server, or our database, unavailable) is a failed attempt that
the dispatcher retries with its backoff. `install` registers it with the dispatcher: the top layer calls it
at the worker's start (`respmon worker`), since `alerts` and `processors` may not import this package.
"""

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg

from alerts.dispatcher import Delivery, SendResult, register_sender
from alerts.fhirpush import CHANNEL
from respmon.core.settings import Settings
from respmon.fhir import resources as fr
from respmon.fhir.api import MEDIA, alert_evidence
from respmon.queries import fhir as q


@dataclass(frozen=True)
class FhirPush:
    """Sends one `fhir` delivery: the alert's transaction Bundle to the delivery's target."""

    settings: Settings

    def bundle(self, alert_id: int, server: str) -> dict[str, Any] | None:
        """The alert's transaction Bundle for `server` (None when no such alert), read on a connection of its
        own (the dispatcher's is asynchronous and the FHIR reads are not)."""
        with psycopg.connect(self.settings.database_url, autocommit=True,
                             connect_timeout=max(1, int(self.settings.delivery_timeout_s))) as conn:
            alert = q.read_alert(conn, alert_id)
            if alert is None:
                return None
            cited = alert_evidence(conn, alert, self.settings)
        rows = {q.observation_id(r): r for rows in cited.values() for r in rows}
        issue = fr.detected_issue(alert, {rule_id: [q.observation_id(r) for r in rs] for rule_id, rs in cited.items()})
        return fr.transaction(server, issue, [fr.observation(r) for r in rows.values()], alert["patient_id"])

    async def __call__(self, client: httpx.AsyncClient, delivery: Delivery) -> SendResult:
        try:
            bundle = await asyncio.to_thread(self.bundle, int(delivery.payload["alert_id"]), delivery.target)
        except psycopg.Error as error:
            return False, None, f"database: {type(error).__name__}"
        if bundle is None:
            return False, None, "alert not found"
        headers = {"Content-Type": MEDIA, "Accept": MEDIA, "Idempotency-Key": delivery.idempotency_key}
        if self.settings.fhir_server_token is not None:
            headers["Authorization"] = f"Bearer {self.settings.fhir_server_token.get_secret_value()}"
        try:
            response = await client.post(delivery.target, content=orjson.dumps(bundle), headers=headers,
                                         timeout=self.settings.delivery_timeout_s)
        except httpx.HTTPError as error:
            return False, None, type(error).__name__
        if 200 <= response.status_code < 300:
            return True, response.status_code, None
        return False, response.status_code, f"HTTP {response.status_code}"


def install(settings: Settings) -> FhirPush:
    """Register the FHIR sender with this process's alert dispatchers."""
    push = FhirPush(settings)
    register_sender(CHANNEL, push)
    return push
