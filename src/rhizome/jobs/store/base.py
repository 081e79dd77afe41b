"""The job store logic shared by both dialects.

A dialect supplies connections and transactions (:meth:`SqlJobStore.transaction`) and its
own batch statements; everything about *which* change is legal lives here and in
:mod:`rhizome.jobs.states`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from rhizome.errors import (
    IllegalTransitionError,
    InvalidInputError,
    JobLostError,
    JobNotFoundError,
)
from rhizome.jobs import states
from rhizome.jobs.model import (
    DEFAULT_MAX_TAKEOVERS,
    JOB_SORTS,
    Control,
    ErrorType,
    Facets,
    Job,
    JobEvent,
    JobFilter,
    JobLogLine,
    JobStatus,
    NewJob,
    WorkerInfo,
    new_job_id,
    parse_time,
)
from rhizome.jobs.store.queries import Migration, load_migrations, load_queries, specialize

log = logging.getLogger("rhizome.jobs.store")

Row = dict[str, Any]

FILTER_PARAMS = frozenset(
    {"user_id", "types", "exclude_types", "stored", "shown", "stage", "ids", "entity_type"}
    | {"entity_ids", "pattern"}
)
"""The optional parameters of the ``job_filter`` SQL fragment (``_filter_params``)."""


class Tx(Protocol):
    """A transaction (or autocommit session) that runs named queries."""

    def all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]: ...
    def one(self, name: str, params: dict[str, Any] | None = None) -> Row | None: ...
    def run(self, name: str, params: dict[str, Any] | None = None) -> int: ...
    def many(self, name: str, params: Sequence[dict[str, Any]]) -> None: ...
    def script(self, sql: str) -> None: ...


class ChangeWaiter(Protocol):
    """Blocks until the database changed (True) or ``timeout`` seconds passed (False)."""

    def __call__(self, timeout: float) -> bool: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class MetricsSnapshot:
    """The rows behind the Prometheus metrics (read at scrape time)."""

    started: list[Row]
    """Jobs started since the window began: job_type, created_at, run_at, started_at,
    attempt."""
    finished: list[Row]
    """Jobs finished since the window began: job_type, status, started_at, completed_at."""
    retries: list[Row]
    """Per job type: retries (recorded on the jobs in the table) and scheduled (jobs
    waiting for an automatic retry, i.e. shown as retrying)."""
    heartbeats: list[Row]
    """Processing jobs: job_type, worker_id, heartbeat_at."""


class MigrationSet(NamedTuple):
    """A component's schema: the numbered ``sql/<dialect>/migrations/NNNN_*.sql`` files of
    ``package``, recorded in ``schema_migrations`` under ``component``."""

    component: str
    package: str


JOBS_MIGRATIONS = MigrationSet("jobs", "rhizome.jobs.store")
"""The jobs core's own tables; every store applies them first."""


class SqlJobStore(ABC):
    dialect: str
    url: str

    migration_sets: tuple[MigrationSet, ...] = (JOBS_MIGRATIONS,)
    """What :meth:`migrate` applies, in order: the jobs core's set, then those the caller
    handed to :func:`rhizome.jobs.store.open_store` (e.g. the library's)."""

    def __init__(self) -> None:
        self.queries = load_queries(self.dialect)

    # --- plumbing supplied by the dialect ---------------------------------------------

    @abstractmethod
    def transaction(self, queries: dict[str, str] | None = None) -> AbstractContextManager[Tx]:
        """A write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: read committed).
        ``queries``: another named-query set on the same database (e.g. the library's)."""

    @abstractmethod
    def session(self, queries: dict[str, str] | None = None) -> AbstractContextManager[Tx]:
        """An autocommit session for reads."""

    @abstractmethod
    def _migration_lock(self, tx: Tx) -> None:
        """Serialize concurrent migrators (several workers starting at once)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def wait_for_jobs(self, timeout: float) -> bool:
        """Block until new work may be due (a wake-up arrived) or ``timeout`` passes."""

    @abstractmethod
    def change_waiter(self) -> ChangeWaiter:
        """A waiter for the change feed (:mod:`rhizome.jobs.events`): it returns as soon as
        anything was committed (PostgreSQL: LISTEN for the change trigger's NOTIFY;
        SQLite: ``PRAGMA data_version``). Close it when done."""

    # --- the fence -----------------------------------------------------------------------

    @contextmanager
    def fence(self, job_id: str, worker_id: str) -> Iterator[None]:
        """Within this block, every transaction this thread opens on this store first
        checks that ``worker_id`` still runs ``job_id`` (and, on PostgreSQL, locks the row
        against a takeover until it commits); :class:`JobLostError` otherwise. The worker
        runs each handler inside one, so a worker whose lease ran out (cut off from the
        database, say) cannot write a document's chunks, connections or follow-up jobs
        once another worker took the job over: its late writes are refused, whatever
        component's tables they touch."""
        previous = getattr(_FENCE, "held", None)
        _FENCE.held = (self, job_id, worker_id)
        try:
            yield
        finally:
            _FENCE.held = previous

    def _check_fence(self, tx: Tx) -> None:
        """Called by the stores at the start of each transaction."""
        held = getattr(_FENCE, "held", None)
        if held is None or held[0] is not self:
            return
        _, job_id, worker_id = held
        if self._owned_row(tx, job_id, worker_id) is None:
            raise JobLostError(f"Job {job_id} is no longer owned by worker {worker_id}.")

    @abstractmethod
    def _owned_row(self, tx: Tx, job_id: str, worker_id: str) -> Row | None:
        """The ``owned_job`` query in ``tx`` (whatever queries ``tx`` was opened with)."""

    @abstractmethod
    def claim(
        self,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        job_types: Sequence[str] | None,
        *,
        max_takeovers: int = DEFAULT_MAX_TAKEOVERS,
    ) -> list[Job]:
        """Take up to ``limit`` due jobs: pending ones, and running ones whose lease ran out
        (a takeover), except those taken over ``max_takeovers`` times already (see
        :meth:`fail_crash_loops`)."""

    @abstractmethod
    def complete(self, worker_id: str, results: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        """Mark jobs completed with their outputs; returns the ids it completed."""

    @abstractmethod
    def expire_leases(self, max_takeovers: int = DEFAULT_MAX_TAKEOVERS) -> list[str]:
        """The reaper: running jobs whose lease ran out go back to pending (each such
        takeover is counted), except crash loops (see :meth:`fail_crash_loops`)."""

    def fail_crash_loops(self, max_takeovers: int = DEFAULT_MAX_TAKEOVERS) -> list[str]:
        """Running jobs whose lease ran out after ``max_takeovers`` takeovers fail as
        ``permanent``: every worker that ran them died (killed, out of memory, crashed),
        so handing them on would take down the next one too. Their message names the
        stage where the workers died."""
        failed: list[str] = []
        with self.transaction() as tx:
            for row in tx.all("crash_loops", {"max_takeovers": max_takeovers}):
                job_id = str(row["id"])
                stage = _stage(row)
                deaths = int(row["takeovers"]) + 1
                where = f" in stage {stage!r}" if stage else ""
                message = (
                    f"The job's worker stopped without finishing it {deaths} times in a "
                    f"row{where} (killed, out of memory or crashed), so it is not handed to "
                    "another worker again. What to do: check the job's input (a file too big "
                    "or malformed for this machine?), give the workers more memory or raise "
                    "RHIZOME_MAX_TAKEOVERS, then retry the job; it continues from its last "
                    "checkpoint."
                )
                t = states.find("fail", row["status"])
                tx.one(
                    "set_failed",
                    {
                        "id": job_id,
                        "error_type": ErrorType.PERMANENT.value,
                        "last_error": f"crash loop: lease expired {deaths} times{where}; "
                        f"last worker {row['worker_id'] or '?'}",
                        "error_message": message,
                        "retry_increment": 0,
                        "retry_delay": None,
                    },
                )
                self._event(
                    tx,
                    job_id,
                    t.source,
                    t.target,
                    f"failed (permanent): crash loop, {deaths} workers died{where}",
                    stage=stage,
                    worker_id=row["worker_id"],
                )
                failed.append(job_id)
        return failed

    @abstractmethod
    def promote_retries(self, as_of: datetime | None = None) -> list[str]:
        """Failed jobs whose retry is due (at ``as_of``, default: the database's now) go
        back to pending. ``as_of`` lets tests move the clock instead of sleeping."""

    @abstractmethod
    def heartbeat(
        self, worker_id: str, lease_seconds: float, job_ids: Sequence[str]
    ) -> dict[str, Control]:
        """Extend the leases of ``job_ids`` (the jobs the worker runs or holds now) where
        it still owns them; returns their pause/cancel flags. A job missing from the
        answer is no longer the worker's."""

    @abstractmethod
    def _insert_new(self, tx: Tx, rows: list[Row]) -> list[Row]:
        """Insert jobs without a dedupe key (and their 'created' events), in bulk."""

    @abstractmethod
    def _wakeup(self, tx: Tx, job_types: set[str]) -> None:
        """Tell idle workers that jobs arrived (inside the enqueue transaction)."""

    # --- schema ------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply every migration not applied yet; returns their names."""
        applied: list[str] = []
        with self.transaction() as tx:
            self._migration_lock(tx)
            tx.script(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL, PRIMARY KEY (component, version))"
            )
            done = {
                (r["component"], int(r["version"]))
                for r in self._raw(tx, "SELECT component, version FROM schema_migrations")
            }
            for component, package in self.migration_sets:
                for m in self._migrations(component, package):
                    if (m.component, m.version) in done:
                        continue
                    tx.script(m.sql)
                    self._record_migration(tx, m)
                    applied.append(f"{m.component}/{m.version:04d}_{m.name}")
        for name in applied:
            log.info("applied migration %s", name, extra={"migration": name})
        return applied

    def _migrations(self, component: str, package: str) -> list[Migration]:
        return load_migrations(self.dialect, component, package)

    @abstractmethod
    def _raw(self, tx: Tx, sql: str) -> list[Row]: ...

    @abstractmethod
    def _record_migration(self, tx: Tx, m: Migration) -> None: ...

    def check(self) -> None:
        """Raise if the database cannot be reached."""
        with self.session() as s:
            s.one("ping")

    # --- enqueue and read ----------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Insert jobs in one transaction. A job whose ``dedupe_key`` matches an unfinished
        job is not inserted; the existing job is returned in its place."""
        rows = [self._new_row(j) for j in jobs]
        plain = [r for r in rows if r["dedupe_key"] is None]
        keyed = [r for r in rows if r["dedupe_key"] is not None]
        by_id: dict[str, Row] = {}
        with self.transaction() as tx:
            if plain:
                for row in self._insert_new(tx, plain):
                    by_id[str(row["id"])] = row
            for row in keyed:
                inserted = tx.one("insert_job", row)
                if inserted is None:
                    existing = tx.one("find_unfinished_by_dedupe", row)
                    if existing is None:  # finished between the two statements
                        existing = tx.one("insert_job", row)
                    assert existing is not None
                    by_id[row["id"]] = existing
                else:
                    self._event(tx, row["id"], None, JobStatus.PENDING, "created")
                    by_id[row["id"]] = inserted
            self._wakeup(tx, {r["job_type"] for r in rows})
        return [Job.from_row(by_id[r["id"]]) for r in rows]

    def _new_row(self, j: NewJob) -> Row:
        return {
            "id": new_job_id(),
            "job_type": j.job_type,
            "user_id": j.user_id,
            "entity_type": j.entity_type,
            "entity_id": j.entity_id,
            "priority": j.priority,
            "dedupe_key": j.dedupe_key,
            "input_data": j.input_data,
            "max_retries": j.max_retries,
            "run_at": self._time_param(j.run_at),
            "progress": {"percent": 0},
        }

    def _time_param(self, value: datetime | None) -> Any:
        return value

    def get(self, job_id: str, user_id: str | None = None) -> Job:
        job_id = _check_id(job_id)
        with self.session() as s:
            row = s.one("get_job", {"id": job_id})
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise JobNotFoundError(f"No job with id {job_id}.")
        return Job.from_row(row)

    def list_jobs(
        self,
        *,
        statuses: Sequence[str] | None = None,
        job_types: Sequence[str] | None = None,
        stage: str | None = None,
        ids: Sequence[str] | None = None,
        user_id: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Newest first. ``statuses`` are status filter values (the stored statuses and the
        derived ones: active, pausing, cancelling, retrying; see
        :data:`rhizome.jobs.model.STATUS_FILTERS`); an unknown one is a ``ValueError``."""
        f = JobFilter(
            user_id=user_id,
            types=tuple(job_types or ()),
            statuses=tuple(statuses or ()),
            stage=stage,
            ids=tuple(_check_id(i) for i in ids) if ids is not None else None,
            entity_type=entity_type,
            entity_ids=(entity_id,) if entity_id is not None else None,
        )
        return self.search_jobs(f, limit=limit, offset=offset)

    def count_jobs(self, user_id: str | None = None) -> dict[tuple[str, str], int]:
        """``{(status, job_type): count}``."""
        with self.session() as s:
            rows = s.all("count_jobs", {"user_id": user_id})
        return {(r["status"], r["job_type"]): int(r["n"]) for r in rows}

    def events(self, job_id: str) -> list[JobEvent]:
        with self.session() as s:
            return [JobEvent.from_row(r) for r in s.all("list_events", {"id": _check_id(job_id)})]

    def add_event(
        self,
        job_id: str,
        message: str,
        *,
        stage: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        """An informational timeline entry (no status change)."""
        with self.transaction() as tx:
            tx.run(
                "insert_event",
                {
                    "job_id": job_id,
                    "from_status": None,
                    "to_status": None,
                    "stage": stage,
                    "message": message,
                    "worker_id": worker_id,
                },
            )

    # --- running jobs (called by the owning worker) -------------------------------------

    def update_progress(
        self,
        job_id: str,
        worker_id: str,
        progress: dict[str, Any],
        *,
        event: str | None = None,
    ) -> Control:
        """Write progress; with ``event``, also a timeline entry. Returns control flags."""
        with self.transaction() as tx:
            row = tx.one(
                "update_progress", {"id": job_id, "worker_id": worker_id, "progress": progress}
            )
            if row is None:
                raise JobLostError(f"Job {job_id} is no longer owned by worker {worker_id}.")
            if event:
                tx.run(
                    "insert_event",
                    {
                        "job_id": job_id,
                        "from_status": None,
                        "to_status": None,
                        "stage": progress.get("stage"),
                        "message": event,
                        "worker_id": worker_id,
                    },
                )
        return Control(bool(row["pause_requested"]), bool(row["cancel_requested"]))

    def record_checkpoint(
        self,
        job_id: str,
        worker_id: str,
        *,
        path: str,
        stage: str,
        sha256: str,
        progress: dict[str, Any],
    ) -> Control:
        with self.transaction() as tx:
            row = tx.one(
                "record_checkpoint",
                {
                    "id": job_id,
                    "worker_id": worker_id,
                    "path": path,
                    "stage": stage,
                    "hash": sha256,
                    "progress": progress,
                },
            )
        if row is None:
            raise JobLostError(f"Job {job_id} is no longer owned by worker {worker_id}.")
        return Control(bool(row["pause_requested"]), bool(row["cancel_requested"]))

    def fail(
        self,
        job_id: str,
        worker_id: str | None,
        *,
        error_type: ErrorType,
        last_error: str,
        error_message: str,
        retry_delay: float | None,
    ) -> Job:
        """Fail a running job; with ``retry_delay`` it retries automatically after it."""
        message = f"failed ({error_type.value})"
        if retry_delay is not None:
            message += f"; automatic retry in {retry_delay:.1f}s"
        return self._apply(
            job_id,
            "fail",
            "set_failed",
            {
                "error_type": error_type.value,
                "last_error": last_error[:20000],
                "error_message": error_message[:4000],
                "retry_increment": 1 if retry_delay is not None else 0,
                "retry_delay": retry_delay,
            },
            message=message,
            owner=worker_id,
        )

    def stop(
        self, job_id: str, worker_id: str, action: str, reason: str, *, delay: float = 0.0
    ) -> Job:
        """The owning worker stops a job at a safe point: ``pause``, ``cancel`` or
        ``release`` (back to pending, e.g. on shutdown; with ``delay`` seconds it is not
        due before then, counted in ``infra_retries``)."""
        query = {"pause": "set_paused", "cancel": "set_cancelled", "release": "set_released"}
        return self._apply(
            job_id,
            action,
            query[action],
            {"reason": reason, "delay": float(delay)},
            message=reason,
            owner=worker_id,
        )

    # --- requests from users and admins -------------------------------------------------

    def request_pause(
        self, job_id: str, *, reason: str = "paused by user", user_id: str | None = None
    ) -> Job:
        """Pending → paused at once; processing → pause requested (honoured at the next
        safe point)."""
        current = self.get(job_id, user_id)
        if current.status is JobStatus.PROCESSING:
            return self._control(job_id, pause=True, reason=reason, message="pause requested")
        return self._apply(job_id, "pause", "set_paused", {"reason": reason}, message=reason)

    def request_cancel(self, job_id: str, *, user_id: str | None = None) -> Job:
        current = self.get(job_id, user_id)
        if current.status is JobStatus.PROCESSING:
            return self._control(job_id, cancel=True, message="cancel requested")
        return self._apply(job_id, "cancel", "set_cancelled", {}, message="cancelled by user")

    def resume(self, job_id: str, *, restart: bool = False, user_id: str | None = None) -> Job:
        self.get(job_id, user_id)
        msg = "resumed; restarting from the beginning" if restart else "resumed"
        return self._apply(job_id, "resume", "set_resumed", {"restart": restart}, message=msg)

    def retry(self, job_id: str, *, restart: bool = False, user_id: str | None = None) -> Job:
        """Manual retry of a failed or cancelled job (from its checkpoint by default)."""
        self.get(job_id, user_id)
        msg = "retried by hand" + ("; restarting from the beginning" if restart else "")
        return self._apply(
            job_id,
            "retry",
            "set_retried",
            {"reset_retries": True, "restart": restart},
            message=msg,
        )

    def force_fail(self, job_id: str, reason: str = "failed by an administrator") -> Job:
        return self._apply(
            job_id,
            "force_fail",
            "set_failed",
            {
                "error_type": ErrorType.PERMANENT.value,
                "last_error": reason,
                "error_message": f"{reason}. Retry the job to run it again.",
                "retry_increment": 0,
                "retry_delay": None,
            },
            message=reason,
        )

    def clear_checkpoint(self, job_id: str) -> Job:
        with self.transaction() as tx:
            row = tx.one("clear_checkpoint", {"id": job_id})
        if row is None:
            raise JobNotFoundError(f"No job with id {job_id}.")
        return Job.from_row(row)

    def delete(self, job_id: str, *, user_id: str | None = None, reason: str = "deleted") -> Job:
        """Delete a job and its timeline, leaving one tombstone event."""
        job_id = _check_id(job_id)
        with self.transaction() as tx:
            row = tx.one("lock_job", {"id": job_id})
            if row is None or (user_id is not None and row["user_id"] != user_id):
                raise JobNotFoundError(f"No job with id {job_id}.")
            tx.run("delete_job", {"id": job_id})
            tx.run("delete_job_events", {"id": job_id})
            tx.run("delete_job_logs", {"id": job_id})
            self._event(tx, job_id, row["status"], None, reason, stage=_stage(row))
        return Job.from_row(row)

    # --- bulk and queue controls ----------------------------------------------------------

    def job_ids_where(
        self,
        *,
        statuses: Sequence[str] | None = None,
        job_types: Sequence[str] | None = None,
        stage: str | None = None,
        user_id: str | None = None,
    ) -> list[str]:
        """Ids of the jobs matching a filter (oldest first); ``statuses`` as in
        :meth:`list_jobs`."""
        return self.filtered_job_ids(
            JobFilter(
                user_id=user_id,
                types=tuple(job_types or ()),
                statuses=tuple(statuses or ()),
                stage=stage,
            )
        )

    def delete_many(
        self, ids: Sequence[str], *, user_id: str | None = None, reason: str = "deleted"
    ) -> list[Job]:
        """Delete jobs and their timelines in one transaction per 1,000, leaving one
        tombstone event per job. Returns the deleted jobs (unknown ids are ignored)."""
        checked = [_check_id(i) for i in ids]
        deleted: list[Job] = []
        for part in iter_chunks(checked, 1000):
            with self.transaction() as tx:
                rows = self._delete_rows(tx, list(part), user_id, reason)
            deleted.extend(Job.from_row(r) for r in rows)
        return deleted

    @abstractmethod
    def _delete_rows(
        self, tx: Tx, ids: list[str], user_id: str | None, reason: str
    ) -> list[Row]: ...

    def set_queue_paused(
        self, paused: bool, job_type: str | None = None, reason: str | None = None
    ) -> None:
        """Pause or resume claiming for one job type, or (``None``) the whole queue."""
        with self.transaction() as tx:
            tx.run(
                "set_queue_control",
                {"job_type": job_type or "*", "paused": paused, "reason": reason},
            )
            if not paused:
                self._wakeup(tx, {job_type or "*"})

    def queue_controls(self) -> dict[str, dict[str, Any]]:
        """``{"*" or job_type: {"paused": bool, "reason": str | None, "updated_at": ...}}``."""
        with self.session() as s:
            rows = s.all("list_queue_controls")
        return {
            str(r["job_type"]): {
                "paused": bool(r["paused"]),
                "reason": r["reason"],
                "updated_at": str(r["updated_at"]),
            }
            for r in rows
        }

    # --- workers -------------------------------------------------------------------------

    def register_worker(
        self, worker_id: str, host: str, pid: int, concurrency: int, job_types: Sequence[str] | None
    ) -> None:
        with self.transaction() as tx:
            tx.run(
                "insert_worker",
                {
                    "id": worker_id,
                    "host": host,
                    "pid": pid,
                    "concurrency": concurrency,
                    "job_types": ",".join(job_types) if job_types else None,
                },
            )

    def unregister_worker(self, worker_id: str) -> None:
        with self.transaction() as tx:
            tx.run("stop_worker", {"id": worker_id})

    def list_workers(self) -> list[WorkerInfo]:
        with self.session() as s:
            return [WorkerInfo.from_row(r) for r in s.all("list_workers")]

    # --- read models: search, facet counts, metrics, change feed (sql/*/views.sql) --------

    def search_jobs(
        self, f: JobFilter, *, limit: int = 50, offset: int = 0, sort: str | None = None
    ) -> list[Job]:
        """The jobs matching ``f``, newest first, or in the order ``sort`` names (one of
        :data:`~rhizome.jobs.model.JOB_SORTS`)."""
        params = {**self._filter_params(f), "limit": limit, "offset": offset}
        if sort and sort not in JOB_SORTS:
            raise ValueError(f"Unknown sort {sort!r}. Use one of: {', '.join(JOB_SORTS)}.")
        if sort and sort != "created_desc":
            with self.session(self._shaped("list_jobs_sorted", params)) as s:
                rows = s.all("list_jobs_sorted", {**params, "sort": sort})
        else:
            with self.session(self._shaped("list_jobs", params)) as s:
                rows = s.all("list_jobs", params)
        return [Job.from_row(r) for r in rows]

    def latest_jobs(
        self, entity_type: str, entity_ids: Sequence[str], user_id: str | None = None
    ) -> dict[str, Job]:
        """The newest job of each entity (entity id → job); entities without jobs are
        left out. One query, whatever the number of jobs per entity."""
        if not entity_ids:
            return {}
        params = {"entity_type": entity_type, "entity_ids": list(entity_ids), "user_id": user_id}
        with self.session() as s:
            rows = s.all("latest_job_per_entity", params)
        jobs = [Job.from_row(r) for r in rows]
        return {str(j.entity_id): j for j in jobs if j.entity_id is not None}

    def filtered_job_ids(self, f: JobFilter, *, limit: int | None = None) -> list[str]:
        """Ids of the jobs matching ``f``, oldest first (what bulk actions by filter use)."""
        params = {**self._filter_params(f), "limit": limit}
        with self.session(self._shaped("filtered_job_ids", params)) as s:
            rows = s.all("filtered_job_ids", params)
        return [str(r["id"]) for r in rows]

    def facet_counts(self, f: JobFilter) -> Facets:
        """Counts for filter badges (see :class:`~rhizome.jobs.model.Facets`): one grouped
        query under ``f`` without its type, status and stage."""
        base = f.without("type").without("status").without("stage")
        params = self._filter_params(base)
        with self.session(self._shaped("facet_counts", params)) as s:
            rows = s.all("facet_counts", params)
        return Facets.count(
            f,
            (
                (str(r["job_type"]), str(r["shown"]), _text_or_none(r["stage"]), int(r["n"]))
                for r in rows
            ),
        )

    def metrics_snapshot(self, since: datetime, *, limit: int = 5000) -> MetricsSnapshot:
        """The rows behind the Prometheus metrics; ``since``: the start of the window for
        the recently started and finished jobs."""
        window = {"since": self._time_param(since), "limit": limit}
        with self.session() as s:
            return MetricsSnapshot(
                started=s.all("metrics_started", window),
                finished=s.all("metrics_finished", window),
                retries=s.all("metrics_retries"),
                heartbeats=s.all("metrics_heartbeats"),
            )

    def metric_gauges(self) -> tuple[list[Row], list[Row]]:
        """What the Prometheus gauges read now: per job type the jobs waiting for an
        automatic retry (``job_type``, ``scheduled``), and the processing jobs' heartbeats
        (``job_type``, ``worker_id``, ``heartbeat_at``)."""
        with self.session() as s:
            return s.all("metrics_retries"), s.all("metrics_heartbeats")

    def feed_position(self) -> tuple[int, datetime]:
        """The newest timeline event id and the database's clock: where a change feed
        starts reading."""
        with self.session() as s:
            row = s.one("last_event_id")
        assert row is not None
        now = parse_time(row["now"])
        assert now is not None
        return int(row["id"]), now

    def changes_since(
        self, since: datetime | None, after_event: int
    ) -> tuple[list[Job], list[JobEvent]]:
        """Jobs updated (or heartbeating) after ``since`` and timeline events after the id
        ``after_event``, oldest first, at most 1,000 of each."""
        when = since if since is not None else datetime(1970, 1, 1, tzinfo=UTC)
        with self.session() as s:
            jobs = s.all("changed_jobs", {"since": self._time_param(when)})
            events = s.all("events_after", {"after": after_event})
        return [Job.from_row(r) for r in jobs], [JobEvent.from_row(r) for r in events]

    # --- a job's own log (what its handler logged while it ran) ----------------------------

    def append_logs(self, lines: Sequence[Row], *, keep: int) -> None:
        """Store log lines (``job_id``, ``at``, ``level``, ``logger``, ``message``,
        ``stage``, ``worker_id``, ``attempt``) in one transaction, keeping the newest
        ``keep`` lines of each job."""
        if not lines:
            return
        rows = [{**line, "at": self._time_param(line.get("at"))} for line in lines]
        with self.transaction() as tx:
            tx.many("insert_job_log", rows)
            for job_id in dict.fromkeys(str(r["job_id"]) for r in rows):
                tx.run("trim_job_logs", {"job_id": job_id, "keep": keep})

    def job_logs(
        self, job_id: str, *, after: int = 0, limit: int = 1000, tail: bool = False
    ) -> list[JobLogLine]:
        """A job's log lines, oldest first: those after the line id ``after``, or (``tail``)
        the last ``limit`` lines."""
        params = {"job_id": _check_id(job_id), "after": after, "limit": limit}
        with self.session() as s:
            rows = s.all("job_log_tail", params) if tail else s.all("job_logs_after", params)
        return [JobLogLine.from_row(r) for r in rows]

    def logs_since(self, after: int) -> list[JobLogLine]:
        """Log lines of every job after the line id ``after`` (at most 1,000): the change
        feed's view of the logs."""
        with self.session() as s:
            return [JobLogLine.from_row(r) for r in s.all("logs_after", {"after": after})]

    def last_log_id(self) -> int:
        with self.session() as s:
            row = s.one("last_log_id")
        return int(row["id"]) if row else 0

    # --- lifetime metrics (written by workers, summed by /metrics) ------------------------

    def add_metrics(self, worker_id: str, deltas: Sequence[tuple[str, str, str, float]]) -> None:
        """Add ``(metric, job_type, label, increment)`` to the worker's series."""
        if not deltas:
            return
        rows = [
            {"worker_id": worker_id, "metric": m, "job_type": t, "label": lb, "value": float(v)}
            for m, t, lb, v in deltas
        ]
        with self.transaction() as tx:
            tx.many("add_metric", rows)

    def retire_metrics(self, worker_id: str) -> None:
        """Fold a stopped worker's series into the retired workers' ('*')."""
        with self.transaction() as tx:
            tx.run("fold_worker_metrics", {"worker_id": worker_id})
            tx.run("delete_worker_metrics", {"worker_id": worker_id})

    def metric_totals(self) -> list[Row]:
        """``metric``, ``job_type``, ``label``, ``value`` summed over every worker."""
        with self.session() as s:
            return s.all("metric_totals")

    # --- ids ------------------------------------------------------------------------------

    def resolve_job_id(self, value: str, user_id: str | None = None) -> str:
        """A full job id from an id, its short id (its last 8 to 12 characters: what the
        UI and ``jobs list`` show) or a unique prefix of at least 8 characters."""
        text = str(value).strip().lower()
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
        digits = text.replace("-", "")
        if len(digits) < 8 or len(digits) > 32 or any(c not in "0123456789abcdef" for c in digits):
            raise JobNotFoundError(
                f"{value!r} is not a job id.",
                "Give the full id or its short id (8 characters, see `rhizome jobs list`).",
            )
        low = str(uuid.UUID(digits.ljust(32, "0")))
        high = str(uuid.UUID(digits.ljust(32, "f")))
        with self.session() as s:
            rows = s.all("resolve_job_id", {"low": low, "high": high, "user_id": user_id})
            if len(digits) <= 12:  # the last group of the id: a short id
                rows += s.all("resolve_job_suffix", {"suffix": digits, "user_id": user_id})
        found = sorted({str(r["id"]) for r in rows})
        if not found:
            raise JobNotFoundError(f"No job with the id {value!r}.")
        if len(found) > 1:
            raise InvalidInputError(
                f"Several jobs match the id {value!r}.", "Give more characters, or the full id."
            )
        return found[0]

    # --- dashboards (sql/*/operator.sql) --------------------------------------------------

    def status_transitions(
        self, since: datetime, bucket_seconds: int, f: JobFilter | None = None
    ) -> list[Row]:
        """Status changes since ``since``: ``bucket`` (epoch seconds, a multiple of
        ``bucket_seconds``), ``job_type``, ``from_status``, ``to_status``, ``n``."""
        params = {**self._dash_params(since, f), "bucket": int(bucket_seconds)}
        with self.session() as s:
            return s.all("dash_transitions", params)

    def claim_latencies(
        self, since: datetime, f: JobFilter | None = None, *, limit: int = 20000
    ) -> list[Row]:
        """Claims since ``since``, newest first: ``at``, ``job_type``, ``seconds`` (from
        due to claimed)."""
        with self.session() as s:
            return s.all("dash_claims", {**self._dash_params(since, f), "limit": limit})

    def run_times(
        self, since: datetime, f: JobFilter | None = None, *, limit: int = 20000
    ) -> list[Row]:
        """Jobs completed since ``since``, newest first: ``at``, ``job_type``, ``seconds``
        (the time they spent processing, over all their runs)."""
        with self.session() as s:
            return s.all("dash_runs", {**self._dash_params(since, f), "limit": limit})

    def stage_times(
        self, since: datetime, f: JobFilter | None = None, *, limit: int = 20000
    ) -> list[Row]:
        """Per job and stage: ``job_type``, ``stage``, ``seconds`` spent in it, for stages
        left since ``since``."""
        with self.session() as s:
            return s.all("dash_stage_times", {**self._dash_params(since, f), "limit": limit})

    def _dash_params(self, since: datetime, f: JobFilter | None) -> Row:
        return {
            "since": self._time_param(since),
            "user_id": f.user_id if f else None,
            "exclude_types": (list(f.exclude_types) or None) if f else None,
        }

    def worker_activity(self, since: datetime) -> tuple[list[Row], list[Row]]:
        """The jobs each worker runs now (``worker_id``, ``id``, ``job_type``, ``user_id``)
        and how many it completed and failed since ``since`` (``worker_id``,
        ``to_status``, ``n``)."""
        with self.session() as s:
            running = s.all("worker_running_jobs")
            finished = s.all("worker_finished_counts", {"since": self._time_param(since)})
        return running, finished

    def taken_over_jobs(self, worker_id: str) -> list[str]:
        """Jobs whose lease ran out while this worker held them (taken over by another)."""
        escaped = worker_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params = {
            "worker_id": worker_id,
            "claim_pattern": f"lease expired; taken over from {escaped} %",
        }
        with self.session() as s:
            return [str(r["job_id"]) for r in s.all("worker_taken_over", params)]

    def _shaped(self, name: str, params: Row) -> dict[str, str]:
        """The named query for the filter parameters that are given (the others' conditions
        dropped, see :func:`~rhizome.jobs.store.queries.specialize`), so that the database
        can use its indexes; each shape is made once."""
        given = frozenset(k for k in FILTER_PARAMS if params.get(k) is not None)
        shapes: dict[tuple[str, frozenset[str]], str] = self.__dict__.setdefault("_shapes", {})
        sql = shapes.get((name, given))
        if sql is None:
            sql = self._shape_sql(specialize(self.queries[name], given, FILTER_PARAMS), given)
            shapes[(name, given)] = sql
        return {name: sql}

    def _shape_sql(self, sql: str, given: frozenset[str]) -> str:
        """A dialect's last touch to a specialized filter query (see :meth:`_shaped`)."""
        return sql

    def _filter_params(self, f: JobFilter) -> Row:
        return {
            "user_id": f.user_id,
            "types": list(f.types) or None,
            "exclude_types": list(f.exclude_types) or None,
            "stored": _list_or_none(f.stored_statuses()),
            "shown": _list_or_none(f.shown_statuses()),
            "stage": f.stage,
            "ids": _list_or_none(f.checked_ids("ids")),
            "entity_type": f.entity_type,
            "entity_ids": _list_or_none(f.entity_ids),
            "pattern": f.like_pattern(),
            "q_entity_ids": list(f.q_entity_ids),
        }

    # --- helpers ---------------------------------------------------------------------------

    def _apply(
        self,
        job_id: str,
        action: str,
        query: str,
        params: dict[str, Any],
        *,
        message: str | None = None,
        owner: str | None = None,
    ) -> Job:
        """Lock one job, check the transition against the state table, update it and
        write its event, all in one transaction."""
        job_id = _check_id(job_id)
        with self.transaction() as tx:
            row = tx.one("lock_job", {"id": job_id})
            if row is None:
                raise JobNotFoundError(f"No job with id {job_id}.")
            if owner is not None and (
                row["worker_id"] != owner or row["status"] != JobStatus.PROCESSING
            ):
                raise JobLostError(f"Job {job_id} is no longer owned by worker {owner}.")
            t = states.find(action, row["status"])
            if t.target is JobStatus.PENDING and row["dedupe_key"] is not None:
                self._check_dedupe_free(tx, row, action)
            new = tx.one(query, {"id": job_id, **params})
            assert new is not None
            self._event(
                tx,
                job_id,
                t.source,
                t.target,
                message or t.meaning,
                stage=_stage(row),
                worker_id=owner,
            )
            if t.target is JobStatus.PENDING:
                self._wakeup(tx, {row["job_type"]})
        return Job.from_row(new)

    def _check_dedupe_free(self, tx: Tx, row: Row, action: str) -> None:
        """A job may only run again if no *other* unfinished job holds its dedupe key."""
        holder = tx.one("find_unfinished_by_dedupe", {"dedupe_key": row["dedupe_key"]})
        if holder is not None and str(holder["id"]) != str(row["id"]):
            raise IllegalTransitionError(
                f"Cannot {action.replace('_', ' ')} job {row['id']}: job {holder['id']} with "
                f"the same dedupe key {row['dedupe_key']!r} is not finished yet.",
                "Wait for that job to finish, or cancel it, then try again.",
            )

    def _control(
        self,
        job_id: str,
        *,
        pause: bool = False,
        cancel: bool = False,
        reason: str | None = None,
        message: str,
    ) -> Job:
        with self.transaction() as tx:
            row = tx.one("lock_job", {"id": job_id})
            if row is None:
                raise JobNotFoundError(f"No job with id {job_id}.")
            if row["status"] != JobStatus.PROCESSING:
                # it stopped running meanwhile: apply the plain transition instead
                t = states.find("pause" if pause else "cancel", row["status"])
                if pause:
                    new = tx.one("set_paused", {"id": job_id, "reason": reason})
                else:
                    new = tx.one("set_cancelled", {"id": job_id})
                assert new is not None
                plain = (reason or t.meaning) if pause else "cancelled by user"
                self._event(tx, job_id, t.source, t.target, plain, stage=_stage(row))
                return Job.from_row(new)
            new = tx.one(
                "set_control",
                {
                    "id": job_id,
                    "pause_requested": bool(row["pause_requested"]) or pause,
                    "cancel_requested": bool(row["cancel_requested"]) or cancel,
                    "reason": reason,
                },
            )
            assert new is not None
            self._event(tx, job_id, None, None, message, stage=_stage(row))
        return Job.from_row(new)

    def _event(
        self,
        tx: Tx,
        job_id: str,
        from_status: str | None,
        to_status: str | None,
        message: str,
        *,
        stage: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        tx.run(
            "insert_event",
            {
                "job_id": job_id,
                "from_status": str(from_status) if from_status else None,
                "to_status": str(to_status) if to_status else None,
                "stage": stage,
                "message": message,
                "worker_id": worker_id,
            },
        )


_FENCE = threading.local()
"""The fence of this thread: (store, job id, worker id), or unset."""


def _list_or_none(values: Sequence[str] | None) -> list[str] | None:
    return list(values) if values is not None else None


def _text_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None


def _stage(row: Row) -> str | None:
    progress = row.get("progress")
    if isinstance(progress, str):
        progress = json.loads(progress)
    if isinstance(progress, dict):
        value = progress.get("stage")
        return str(value) if value is not None else None
    return None


def _check_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise JobNotFoundError(
            f"{job_id!r} is not a job id.", "Job ids are UUIDs; see `rhizome jobs list`."
        ) from None


def utcnow() -> datetime:
    return datetime.now(UTC)


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
