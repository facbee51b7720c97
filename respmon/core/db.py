"""PostgreSQL access: connections and versioned migrations (applied by `respmon migrate`)."""

from importlib import resources

import psycopg

MIGRATIONS_PACKAGE = "respmon.core.migrations"


def connect(url: str, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(url, **kwargs)  # type: ignore[arg-type]


def available_migrations() -> list[tuple[str, str]]:
    """(version, sql) pairs in order; a version is the file name without `.sql`."""
    files = sorted((f for f in resources.files(MIGRATIONS_PACKAGE).iterdir() if f.name.endswith(".sql")),
                   key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(url: str) -> list[str]:
    """Apply pending migrations, each in its own transaction; safe to run twice or concurrently."""
    applied: list[str] = []
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in available_migrations():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('respmon-migrate'))")
                done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone()
                if done:
                    continue
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
    return applied
