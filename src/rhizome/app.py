"""Wiring: settings → store, storage, registry, worker. Used by the CLI (and the server)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rhizome.config import Settings, load_settings
from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.admin import Admin
from rhizome.jobs.registry import Registry
from rhizome.jobs.retry import RetryPolicy
from rhizome.jobs.store import SqlJobStore, open_store
from rhizome.jobs.worker import Worker, WorkerConfig
from rhizome.library import Library
from rhizome.storage import Storage, open_storage


@dataclass
class App:
    settings: Settings = field(default_factory=load_settings)
    _store: SqlJobStore | None = None
    _storage: Storage | None = None

    def __post_init__(self) -> None:
        load_builtin_handlers()

    @property
    def registry(self) -> Registry:
        return load_builtin_handlers()

    @property
    def store(self) -> SqlJobStore:
        if self._store is None:
            self._store = open_store(
                self.settings.database_url, max_connections=self.settings.concurrency + 4
            )
        return self._store

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = open_storage(self.settings.storage_url)
        return self._storage

    def worker(
        self,
        *,
        concurrency: int | None = None,
        burst: bool = False,
        job_types: list[str] | None = None,
    ) -> Worker:
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
        )
        return Worker(self.store, self.storage, self.registry, config)

    def library(self) -> Library:
        return Library(self.store)

    def admin(self, user_id: str | None = None) -> Admin:
        return Admin(self.store, self.storage, user_id)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
