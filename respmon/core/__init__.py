"""The ground every package stands on: settings, logs, database pools and migrations, tokens, health
and metrics routes, HTTP hardening, exit codes and the signal codec.

It imports nothing else of the project (an import contract in `pyproject.toml` checks it), so
`schemas`, `alerts`, `processors` and `ingest` can all use it and it never depends on them.
"""
