"""Job stores: SQLite (embedded default) and PostgreSQL (scale-out), same behaviour."""

from __future__ import annotations

from rhizome.errors import ConfigError
from rhizome.jobs.store.base import SqlJobStore, register_migrations

JobStore = SqlJobStore


def open_store(url: str, *, migrate: bool = True, max_connections: int = 10) -> SqlJobStore:
    """Open the store for a database URL and (by default) apply pending migrations.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
    ``postgresql://user@host:port/db``.
    """
    store: SqlJobStore
    if url.startswith("sqlite:///"):
        from rhizome.jobs.store.sqlite import SqliteJobStore

        store = SqliteJobStore(url.removeprefix("sqlite:///"))
    elif url.startswith(("postgresql://", "postgres://")):
        from rhizome.jobs.store.postgres import PostgresJobStore

        store = PostgresJobStore(url, max_connections=max_connections)
    else:
        raise ConfigError(
            f"Unsupported database URL {url!r}.",
            "Use sqlite:///path/to/rhizome.db or postgresql://user@host:5432/dbname "
            "in RHIZOME_DATABASE_URL.",
        )
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["JobStore", "SqlJobStore", "open_store", "register_migrations"]
