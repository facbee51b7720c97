"""Every workaround for faust-streaming, aiokafka, mode and aiohttp internals, in one place.

Written for faust-streaming 0.15.3 and aiokafka 0.14.0 (pinned exactly in pyproject.toml), with the
mode-streaming 0.7.1 and aiohttp 3.14.5 they were installed with. Each module's docstring names the
upstream behaviour it works around and where it lives; tests/test_processors/test_faust_patches.py
fails when one of them changes, so an upgrade starts there.

| module | what |
|---|---|
| `producer` | faust's producer with acks=all and idempotence (faust sets them in transactions only) |
| `rewind` | stream partitions without a committed offset rewound after faust seeks to committed offsets |
| `fetch` | fetches that wait for a batch (`fetch_min_bytes`, `fetch_max_wait_ms`) instead of one record each |
| `flow` | stream queues not emptied when faust resumes flow |
| `web` | no faust built-in views, `Server: respmon` |
| `app` | `PatchedApp`: the faust App subclass that plugs them in |
| `internals` | read access to faust/aiokafka private state (offsets, buffers, diagnostics) |

Nothing is patched at import: only apps built by `patched_app` (or `PatchedApp`) get the patches.
"""

from typing import Any

import faust

from processors.faustfix.app import PatchedApp

__all__ = ["PatchedApp", "patched_app"]


def patched_app(app_id: str, *, fetch_min_bytes: int | None = None, fetch_max_wait_ms: int | None = None,
                **options: Any) -> faust.App:
    """A faust App with every patch of this package; `options` are faust's settings, the fetch sizes
    `faustfix.fetch`'s (faust's own when None)."""
    app = PatchedApp(app_id, **options)
    if fetch_min_bytes is not None:
        app.fetch_min_bytes = fetch_min_bytes
    if fetch_max_wait_ms is not None:
        app.fetch_max_wait_ms = fetch_max_wait_ms
    return app
