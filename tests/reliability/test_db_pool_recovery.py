"""The worker's and ingest's PostgreSQL pools (respmon/core/dbpool.py) hands out a working connection within a
few seconds of the server coming back, however long it was down.

With psycopg_pool's defaults the pool retried after 1, 2, 4, 8, 16, 32 s: after a 20 s outage the next
attempt came ~10 s after the server was back, and a `connection()` already waiting kept waiting for it
(then raised PoolTimeout after 30 s). The bound asserted here is what respmon/core/dbpool.py promises:
no gap between two connection attempts longer than max(RECONNECT_TIMEOUT_S / 2, CONNECTION_TIMEOUT_S).
"""

import asyncio
import threading
import time

import psycopg
import pytest

from respmon.core.dbpool import CONNECTION_TIMEOUT_S, RECONNECT_TIMEOUT_S, new_async_pool, new_sync_pool
from tests.reliability.stack import PrivateStack

OUTAGE_S = 20.0
SLACK_S = 3.0  # one client retry pause, a connect and a check on a busy machine


class Client:
    """Asks the pool for a connection over and over, like the worker's write retry and timers."""

    def __init__(self) -> None:
        self.successes: list[float] = []
        self.failures: list[str] = []

    async def run(self, url: str, stop: asyncio.Event) -> None:
        pool = new_async_pool(url)
        await pool.open(wait=True, timeout=30)
        try:
            while not stop.is_set():
                try:
                    async with pool.connection() as conn, conn.transaction():
                        await conn.execute("SELECT 1")
                    self.successes.append(time.monotonic())
                except Exception as error:  # noqa: BLE001 - every failure is what the test looks at
                    self.failures.append(type(error).__name__)
                await asyncio.sleep(0.5)
        finally:
            await pool.close()


class SyncClient(Client):
    """The same, through ingest's threaded pool (each upload asks it for connections)."""

    async def run(self, url: str, stop: asyncio.Event) -> None:
        halt = threading.Event()
        worker = asyncio.create_task(asyncio.to_thread(self._loop, url, halt))
        await stop.wait()
        halt.set()
        await worker

    def _loop(self, url: str, halt: threading.Event) -> None:
        pool = new_sync_pool(url, autocommit=True)
        pool.open(wait=True, timeout=30)
        try:
            while not halt.is_set():
                try:
                    with pool.connection() as conn:
                        conn.execute("SELECT 1")
                    self.successes.append(time.monotonic())
                except Exception as error:  # noqa: BLE001 - every failure is what the test looks at
                    self.failures.append(type(error).__name__)
                halt.wait(0.5)
        finally:
            pool.close()


async def outage(stack: PrivateStack, url: str, client: Client) -> tuple[Client, float, float]:
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(url, stop))
    await asyncio.sleep(2)
    await asyncio.to_thread(stack.pg_stop)
    stopped_at = time.monotonic()
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(stack.pg_start)  # returns once the server accepts connections (pg_ctl -w)
    back_at = time.monotonic()
    deadline = back_at + 60
    while time.monotonic() < deadline and not [t for t in client.successes if t > back_at]:
        await asyncio.sleep(0.1)
    stop.set()
    await task
    return client, stopped_at, back_at


@pytest.mark.timeout(180)
@pytest.mark.parametrize("client", [Client, SyncClient], ids=["worker-async-pool", "ingest-sync-pool"])
def test_pool_reconnects_within_seconds_after_a_long_outage(private_stack: PrivateStack, client: type[Client]
                                                            ) -> None:
    private_stack.start()
    url = private_stack.new_database()
    with psycopg.connect(url):  # the database answers before the test breaks it
        pass
    used, stopped_at, back_at = asyncio.run(outage(private_stack, url, client()))
    first_after = min((t for t in used.successes if t > back_at), default=None)
    assert used.failures, "the outage was not seen by the client: nothing was tested"
    assert first_after is not None, f"no connection within 60 s of the restart; failures {used.failures[-5:]}"
    bound = max(RECONNECT_TIMEOUT_S / 2, CONNECTION_TIMEOUT_S) + SLACK_S
    recovered_s = first_after - back_at
    print(f"outage {back_at - stopped_at:.1f}s, first connection {recovered_s:.1f}s after the restart,"
          f" {len(used.failures)} failed attempts ({sorted(set(used.failures))})")
    assert recovered_s <= bound, f"took {recovered_s:.1f}s after PostgreSQL was back (bound {bound:.1f}s)"
