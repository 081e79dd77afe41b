"""Job stores: SQLite (embedded default) and PostgreSQL (scale-out), same behaviour."""

from __future__ import annotations

from collections.abc import Sequence

from rhizome.errors import ConfigError
from rhizome.jobs.store.base import JOBS_MIGRATIONS, MigrationSet, SqlJobStore

JobStore = SqlJobStore


def open_store(
    url: str,
    *,
    migrations: Sequence[MigrationSet] = (),
    migrate: bool = True,
    max_connections: int = 10,
    dead_peer_seconds: float = 30.0,
) -> SqlJobStore:
    """Open the store for a database URL and (by default) apply pending migrations.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
    ``postgresql://user@host:port/db``. ``migrations``: the schemas of other components
    that share the database (e.g. ``rhizome.library.MIGRATIONS``), applied after the jobs
    core's own by this and every later :meth:`~SqlJobStore.migrate`. The jobs core alone
    needs none; :class:`rhizome.app.App` passes the product's. ``dead_peer_seconds``
    (PostgreSQL): how soon a vanished peer's session ends (the lease; see
    :func:`rhizome.jobs.store.postgres._session_settings`).
    """
    store: SqlJobStore
    if url.startswith("sqlite:///"):
        from rhizome.jobs.store.sqlite import SqliteJobStore

        store = SqliteJobStore(url.removeprefix("sqlite:///"))
    elif url.startswith(("postgresql://", "postgres://")):
        from rhizome.jobs.store.postgres import PostgresJobStore

        store = PostgresJobStore(
            url, max_connections=max_connections, dead_peer_seconds=dead_peer_seconds
        )
    else:
        raise ConfigError(
            f"Unsupported database URL {url!r}.",
            "Use sqlite:///path/to/rhizome.db or postgresql://user@host:5432/dbname "
            "in RHIZOME_DATABASE_URL.",
        )
    store.migration_sets = tuple(dict.fromkeys((JOBS_MIGRATIONS, *migrations)))
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["JOBS_MIGRATIONS", "JobStore", "MigrationSet", "SqlJobStore", "open_store"]
