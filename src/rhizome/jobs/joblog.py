"""A job's own log: what its handler logs while it runs is stored with the job.

The worker installs one :class:`JobLogHandler` (a :class:`logging.Handler` on the
``rhizome`` logger and the root logger) and marks each job thread with the job it runs
(:meth:`JobLogHandler.enter` / :meth:`JobLogHandler.leave`, a context variable). Every log
record emitted in that thread while the job runs (``ctx.log.info(...)``, or any logger at
the level logging lets through) becomes a line of ``job_logs`` with the job's id, stage,
worker and attempt. Lines are buffered and written in batches by one thread (every
``flush_interval`` seconds, one transaction for all jobs); each job keeps its newest
``keep`` lines, and a message is cut at ``max_message`` characters, so a chatty handler
cannot grow the database without bound. The log shows live on the job page and in
``rhizome jobs logs ID --follow``.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rhizome.jobs.model import Job

if TYPE_CHECKING:
    from rhizome.jobs.store.base import SqlJobStore

log = logging.getLogger("rhizome.jobs.joblog")

KEEP_LINES = 1000
"""Log lines kept per job (the newest)."""
MAX_MESSAGE = 4000
"""Characters kept of one message (with its traceback)."""
MAX_BUFFERED = 20000
"""Lines waiting for the writer at most; more are dropped (and counted in one line)."""


@dataclass
class _Scope:
    job_id: str
    worker_id: str
    attempt: int
    stage: Callable[[], str | None]
    owner: int
    """The handler (``id()``) whose worker runs the job: several workers in one process
    each store only their own jobs' lines, in their own store."""


_current: ContextVar[_Scope | None] = ContextVar("rhizome_job_log_scope", default=None)


class JobLogHandler(logging.Handler):
    """Collects the log records of running jobs and writes them to ``job_logs``."""

    def __init__(
        self,
        store: SqlJobStore,
        *,
        keep: int = KEEP_LINES,
        max_message: int = MAX_MESSAGE,
        flush_interval: float = 0.5,
        level: int = logging.DEBUG,
    ) -> None:
        super().__init__(level)
        self.store = store
        self.keep = keep
        self.max_message = max_message
        self.flush_interval = flush_interval
        self._buffer: list[dict[str, Any]] = []
        self._dropped: dict[str, int] = {}
        self._buffer_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loggers: list[logging.Logger] = []
        self.written = 0

    # --- which job a thread runs ------------------------------------------------------------

    def enter(self, job: Job, worker_id: str, stage: Callable[[], str | None]) -> Token[Any]:
        """Mark the calling thread (context) as running ``job`` until :meth:`leave`."""
        return _current.set(_Scope(job.id, worker_id, job.attempt, stage, id(self)))

    def leave(self, token: Token[Any]) -> None:
        _current.reset(token)

    # --- logging.Handler ----------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        scope = _current.get()
        if scope is None or scope.owner != id(self) or getattr(record, "_rhizome_job_log", False):
            return
        record.__dict__["_rhizome_job_log"] = True  # reached through two loggers: store once
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            stage = getattr(record, "stage", None) or scope.stage()
            line = {
                "job_id": scope.job_id,
                "at": datetime.fromtimestamp(record.created, UTC),
                "level": record.levelname,
                "logger": record.name,
                "message": message[: self.max_message],
                "stage": str(stage) if stage else None,
                "worker_id": scope.worker_id,
                "attempt": scope.attempt,
            }
        except Exception:
            self.handleError(record)
            return
        with self._buffer_lock:
            if len(self._buffer) >= MAX_BUFFERED:
                self._dropped[scope.job_id] = self._dropped.get(scope.job_id, 0) + 1
                return
            self._buffer.append(line)
            full = len(self._buffer) >= 500
        if full:
            self._wake.set()

    # --- the writer ---------------------------------------------------------------------

    def install(self, *loggers: logging.Logger) -> None:
        """Attach to ``loggers`` (default: ``rhizome`` and the root logger) and start the
        writer thread."""
        self._loggers = list(loggers) or [logging.getLogger("rhizome"), logging.getLogger()]
        for target in self._loggers:
            target.addHandler(self)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rhizome-job-logs", daemon=True)
        self._thread.start()

    def uninstall(self) -> None:
        """Detach, stop the writer and write what is left."""
        for target in self._loggers:
            target.removeHandler(self)
        self._loggers = []
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines (one transaction)."""
        with self._buffer_lock:
            lines, self._buffer = self._buffer, []
            dropped, self._dropped = self._dropped, {}
        for job_id, n in dropped.items():
            lines.append(
                {
                    "job_id": job_id,
                    "at": datetime.now(UTC),
                    "level": "WARNING",
                    "logger": "rhizome.jobs.joblog",
                    "message": f"{n:,} log lines dropped: the job logged faster than they "
                    "could be stored",
                    "stage": None,
                    "worker_id": None,
                    "attempt": None,
                }
            )
        if not lines:
            return
        try:
            self.store.append_logs(lines, keep=self.keep)
            self.written += len(lines)
        except Exception as exc:  # never break a job for its log
            log.warning("could not store %d job log line(s): %s", len(lines), exc)
