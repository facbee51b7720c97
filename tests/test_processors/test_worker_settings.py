"""The worker hands its typed settings to faust, and reports what its memory grows with."""

from collections.abc import Iterator
from typing import Any, cast

import pytest
from aiohttp import http as aiohttp_http
from aiohttp import web_response

from processors.app import Worker, create_app
from respmon.core.settings import Settings


@pytest.fixture(autouse=True)
def server_software(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The worker's web server sets aiohttp's default `Server` header; put it back after each test."""
    monkeypatch.setattr(web_response, "SERVER_SOFTWARE", aiohttp_http.SERVER_SOFTWARE)
    yield


def test_session_timeout_setting_reaches_faust() -> None:
    """A dead worker's partitions move to another after RESPMON_WORKER_SESSION_TIMEOUT_S, not faust's 60 s."""
    conf = create_app(Settings(worker_session_timeout_s=15)).conf
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (15.0, 3.0)


def test_the_default_session_timeout_is_ten_seconds() -> None:
    settings = Settings()
    assert create_app(settings).conf.broker_session_timeout == settings.worker_session_timeout_s == 10.0


def test_the_worker_is_built_from_its_settings_alone() -> None:
    """Two workers with other settings in one process: nothing is read or patched at import."""
    one = Worker(Settings(topic_prefix="one", worker_app_id="one-worker"))
    two = Worker(Settings(topic_prefix="two", worker_app_id="two-worker"))
    assert (one.app.conf.id, one.measurements.get_topic_name()) == ("one-worker", "one.measurements")
    assert (two.app.conf.id, two.measurements.get_topic_name()) == ("two-worker", "two.measurements")
    assert list(one.app.agents) == ["processors.app.process_measurements"]
    assert one.rules is not two.rules and one.histories is not two.histories


def test_history_gauges_count_held_values_and_their_bytes_when_scraped() -> None:
    from prometheus_client import generate_latest

    from processors import telemetry

    table: dict[str, bytes | None] = {"A": b'{"a":1}', "B": None, "C": b"x" * 1000}
    telemetry.watch_histories(lambda: telemetry.history_footprint(table.values()))
    table["D"] = b"yy"  # a patient added after start-up shows at the next scrape
    lines = generate_latest().decode().splitlines()
    assert "respmon_worker_patient_histories 3.0" in lines
    assert "respmon_worker_patient_history_bytes 1009.0" in lines


def test_the_web_port_binds_the_worker_host_and_routes_only_the_workers_own_pages() -> None:
    """faust binds 0.0.0.0 and serves its table, router and statistics views unless told otherwise."""
    app = create_app(Settings(worker_host="127.0.0.2"))
    web = cast(Any, app.web)
    web.init_server()
    assert app.conf.web_bind == "127.0.0.2"
    assert sorted({r.resource.canonical for r in web.web_app.router.routes()}) == ["/healthz", "/metrics", "/readyz"]


def test_the_worker_producer_lingers_to_batch_a_batch_s_writes() -> None:
    """Changelog writes and findings of one batch go out in one produce request, not one each (faust's 0)."""
    import asyncio

    app = create_app(Settings())
    assert app.conf.producer_linger == 0.005

    async def build() -> float:
        producer = cast(Any, app.producer)._new_producer()
        linger = producer._message_accumulator._linger_time  # aiokafka's own field, in seconds
        await producer.stop()
        return float(linger)

    assert asyncio.run(build()) == 0.005
