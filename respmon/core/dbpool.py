"""PostgreSQL pools of the worker (async) and ingest (sync), configured to reconnect within seconds
once the server is back.

psycopg_pool's defaults made a 30 s PostgreSQL outage cost the worker up to another 30 s afterwards:

- a failed reconnection is retried after 1, 2, 4, 8, 16, 32 ... s (`AttemptWithBackoff`,
  psycopg_pool/base.py:200-229), capped only by `reconnect_timeout` (default 300 s,
  pool_async.py:741-771). After an outage of T seconds the next attempt can come up to ~T s after the
  server is back; meanwhile `connection()` waits its full `timeout` (default 30 s) for a connection
  that nobody is trying to make, then raises `PoolTimeout`.
- without a `check`, the first `connection()` after a restart hands out a connection the server has
  already closed, and the write fails on it instead of on a fresh one.

So: each attempt series gives up after `RECONNECT_TIMEOUT_S`; the next client that has to wait then
starts a fresh series at once (pool_async.py:352-360, `_maybe_grow_pool`), and since every
`connection()` waits at most `CONNECTION_TIMEOUT_S`, a new waiting client comes at least that often
(the worker's `_write` retry and its 0.2-1 s timers). The longest gap between two connection attempts
is then about max(RECONNECT_TIMEOUT_S / 2, CONNECTION_TIMEOUT_S) seconds, whatever the outage length.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, overload

from psycopg import Connection
from psycopg.rows import Row, RowFactory, TupleRow
from psycopg_pool import AsyncConnectionPool, ConnectionPool

log = logging.getLogger("respmon.db")

CONNECTION_TIMEOUT_S = 5.0
RECONNECT_TIMEOUT_S = 8.0
CONNECT_TIMEOUT_S = 5  # libpq connect_timeout: a black-holed server cannot hold an attempt longer


def _reconnect_failed(pool: AsyncConnectionPool[Any] | ConnectionPool[Any]) -> None:
    """Called by psycopg_pool when one attempt series gave up; the next waiting client starts another."""
    log.warning("database still unreachable; reconnecting on the next request",
                extra={"pool": pool.name, "reconnect_timeout_s": RECONNECT_TIMEOUT_S})


def new_async_pool(url: str, min_size: int = 1, max_size: int = 4) -> AsyncConnectionPool:
    """The worker's pool: closed (open it with `await pool.open(...)`) whose recovery after an outage is bounded."""
    return AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        timeout=CONNECTION_TIMEOUT_S,
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        reconnect_failed=_reconnect_failed,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
    )


@overload
def new_sync_pool(url: str, min_size: int = ..., max_size: int = ..., *,
                  autocommit: bool = ...) -> ConnectionPool[Connection[TupleRow]]: ...
@overload
def new_sync_pool(url: str, min_size: int = ..., max_size: int = ..., *,
                  autocommit: bool = ..., row_factory: RowFactory[Row]) -> ConnectionPool[Connection[Row]]: ...
def new_sync_pool(url: str, min_size: int = 1, max_size: int = 8, *, autocommit: bool = False,
                  row_factory: RowFactory[Any] | None = None) -> ConnectionPool[Any]:
    """Ingest's pool, with the same bounded reconnects (devices get 503 and retry during an outage, then
    uploads go through again within seconds). No `check` on checkout: ingest makes several short calls
    per upload, and a connection the restarted server closed fails one request, which the device retries.

    Its connections yield tuples, or the rows of `row_factory` (typed: `row_factory=dict_row` gives a
    `ConnectionPool[Connection[DictRow]]`)."""
    kwargs: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": autocommit}
    if row_factory is not None:
        kwargs["row_factory"] = row_factory
    return ConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        timeout=CONNECTION_TIMEOUT_S,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        reconnect_failed=_reconnect_failed,
        kwargs=kwargs,
    )


def answers(pool: ConnectionPool[Any], timeout_s: float = 2.0) -> bool:
    """Whether PostgreSQL answers through `pool` within `timeout_s` (the readiness check of ingest and
    the team API)."""
    try:
        with pool.connection(timeout=timeout_s) as conn:
            conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False
    return True


async def answers_async(get_pool: Callable[[], Awaitable[AsyncConnectionPool[Any]]], timeout_s: float = 3.0) -> bool:
    """`answers` for the worker's async pool, which it opens on first use: getting the pool counts
    against the same `timeout_s`."""
    async def ping() -> None:
        async with (await get_pool()).connection() as conn:
            await conn.execute("SELECT 1")

    try:
        await asyncio.wait_for(ping(), timeout=timeout_s)
    except Exception:  # noqa: BLE001 - any failure (timeout included) means not ready
        return False
    return True
