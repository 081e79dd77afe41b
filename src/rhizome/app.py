"""Wiring: settings → store, storage, registry, worker. Used by the CLI (and the server).

The jobs core keeps no global list of other components' tables or admin hooks: the app
hands them over explicitly, to :func:`open_store` (``migrations=``) and to :class:`Admin`
(``hooks=``). The built-in components are listed once, here."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from rhizome.auth import MIGRATIONS as AUTH_MIGRATIONS
from rhizome.config import Settings, load_settings
from rhizome.errors import DatabaseUnavailableError
from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.admin import Admin, AdminHooks
from rhizome.jobs.plugins import load_apps, load_entry_points
from rhizome.jobs.registry import Registry
from rhizome.jobs.retry import RetryPolicy
from rhizome.jobs.store import MigrationSet, SqlJobStore, open_store
from rhizome.jobs.worker import Worker, WorkerConfig
from rhizome.library import ADMIN_HOOKS as LIBRARY_ADMIN_HOOKS
from rhizome.library import MIGRATIONS as LIBRARY_MIGRATIONS
from rhizome.library import Library
from rhizome.storage import Storage, open_storage

log = logging.getLogger("rhizome.app")

BUILTIN_MIGRATIONS: tuple[MigrationSet, ...] = (LIBRARY_MIGRATIONS, AUTH_MIGRATIONS)
"""Schemas of the built-in components beside the jobs core (which applies its own)."""
BUILTIN_ADMIN_HOOKS: tuple[AdminHooks, ...] = (LIBRARY_ADMIN_HOOKS,)
"""Their parts of nuclear reset and fix orphans."""


@dataclass
class App:
    settings: Settings = field(default_factory=load_settings)
    _store: SqlJobStore | None = None
    _storage: Storage | None = None
    migrations: list[MigrationSet] = field(default_factory=lambda: list(BUILTIN_MIGRATIONS))
    """Handed to :func:`open_store`: the tables of every component beside the jobs core."""
    admin_hooks: list[AdminHooks] = field(default_factory=lambda: list(BUILTIN_ADMIN_HOOKS))
    """Handed to every :class:`Admin` this app builds."""

    apps: list[str] = field(default_factory=list)
    """Modules to import for their job types, beside ``settings.apps`` (``--app``)."""

    def __post_init__(self) -> None:
        load_builtin_handlers()
        # Job types from the user's code: installed plugins, then RHIZOME_APPS / --app.
        # A component that brings tables or admin hooks appends to the two lists above.
        load_entry_points()
        load_apps([*self.settings.apps, *self.apps])

    @property
    def registry(self) -> Registry:
        return load_builtin_handlers()

    def open_store(
        self, *, migrate: bool = True, max_connections: int | None = None
    ) -> SqlJobStore:
        """A new store on the configured database, with every component's migrations."""
        return open_store(
            self.settings.database_url,
            migrations=self.migrations,
            migrate=migrate,
            max_connections=max_connections or self.settings.concurrency + 4,
            dead_peer_seconds=self.settings.lease_seconds,
        )

    @property
    def store(self) -> SqlJobStore:
        if self._store is None:
            self._store = self.open_store()
        return self._store

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = open_storage(self.settings.storage_url)
        return self._storage

    def wait_for_store(self, *, exit_if_unavailable: bool = False) -> SqlJobStore:
        """The store, waiting (with backoff up to 30 s and a log line per try) while the
        database cannot be reached, e.g. a worker started before its database; with
        ``exit_if_unavailable`` the first failure raises instead."""
        delay = 1.0
        while True:
            try:
                return self.store
            except DatabaseUnavailableError as exc:
                if exit_if_unavailable:
                    raise
                log.warning(
                    "database unavailable at start-up: %s Retrying in %.0fs "
                    "(--exit-if-unavailable exits instead).",
                    exc.message,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def worker(
        self,
        *,
        concurrency: int | None = None,
        burst: bool = False,
        job_types: list[str] | None = None,
        exit_if_unavailable: bool = True,
    ) -> Worker:
        """A worker on this app's store (waiting for the database unless
        ``exit_if_unavailable``)."""
        s = self.settings
        if job_types:
            for name in job_types:
                self.registry.get(name)  # raises UnknownJobTypeError with the list
        config = WorkerConfig(
            concurrency=concurrency or s.concurrency,
            lease_seconds=s.lease_seconds,
            heartbeat_seconds=s.heartbeat_seconds,
            poll_seconds=s.poll_seconds,
            burst=burst,
            job_types=job_types,
            shutdown_grace_seconds=s.shutdown_grace_seconds,
            retry=RetryPolicy(base_seconds=s.retry_base_seconds, cap_seconds=s.retry_cap_seconds),
            max_takeovers=s.max_takeovers,
            time_limits=dict(s.job_time_limits),
            memory_limits=dict(s.job_memory_limits),
        )
        store = self.wait_for_store(exit_if_unavailable=exit_if_unavailable)
        return Worker(store, self.storage, self.registry, config)

    def library(self) -> Library:
        return Library(self.store)

    def admin(self, user_id: str | None = None) -> Admin:
        return Admin(self.store, self.storage, user_id, hooks=self.admin_hooks)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
