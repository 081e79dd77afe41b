"""SQLite job store: WAL, ``BEGIN IMMEDIATE`` write transactions, one connection per thread.

Several worker *processes* on one machine may share the database file safely: every claim
runs in one ``BEGIN IMMEDIATE`` transaction, so two workers never take the same job.
Idle workers watch ``PRAGMA data_version`` (it changes when another connection commits)
instead of re-running the claim.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rhizome.errors import DatabaseUnavailableError
from rhizome.jobs.model import DEFAULT_MAX_TAKEOVERS, Control, Job
from rhizome.jobs.store.base import ChangeWaiter, Row, SqlJobStore, Tx
from rhizome.jobs.store.queries import Migration

_LOCAL_WAKEUPS: dict[str, threading.Condition] = {}
_LOCAL_WAKEUPS_LOCK = threading.Lock()


def _adapt(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return format_time(value)
    return value


def format_time(value: datetime) -> str:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _params(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: _adapt(v) for k, v in (params or {}).items()}


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection, queries: dict[str, str]) -> None:
        self.conn = conn
        self.queries = queries

    def all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        cur = self.conn.execute(self.queries[name], _params(params))
        return [dict(r) for r in cur.fetchall()]

    def one(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        rows = self.all(name, params)
        return rows[0] if rows else None

    def run(self, name: str, params: dict[str, Any] | None = None) -> int:
        return self.conn.execute(self.queries[name], _params(params)).rowcount

    def many(self, name: str, params: Sequence[dict[str, Any]]) -> None:
        self.conn.executemany(self.queries[name], [_params(p) for p in params])

    def script(self, sql: str) -> None:
        statement = ""
        for line in sql.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                if statement.strip():
                    self.conn.execute(statement)
                statement = ""
        if statement.strip() and not all(
            ln.strip().startswith("--") or not ln.strip() for ln in statement.splitlines()
        ):
            self.conn.execute(statement)


def _unavailable(exc: BaseException) -> bool:
    """Whether an SQLite error means the database cannot be used right now (locked past
    the busy timeout, unreadable, disk full) rather than a wrong statement."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return any(word in text for word in ("locked", "busy", "disk i/o", "unable to open", "full"))


class SqliteJobStore(SqlJobStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30000) -> None:
        super().__init__()
        self.path = Path(path).expanduser().absolute()
        self.url = f"sqlite:///{self.path}"
        self.busy_timeout_ms = busy_timeout_ms
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailableError(
                f"Cannot create the folder for the SQLite database {self.path}: {exc}."
            ) from exc
        self._local = threading.local()
        # Every connection with the thread that opened it: ``close`` closes only those of
        # threads that ended (or its own); closing one another thread is using crashes
        # the interpreter (segfault), so those are left to close when their thread ends.
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        with _LOCAL_WAKEUPS_LOCK:
            self._wakeup_cond = _LOCAL_WAKEUPS.setdefault(str(self.path), threading.Condition())
        self._watch_version: int | None = None

    # --- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise DatabaseUnavailableError(
                f"Cannot open the SQLite database {self.path}: {exc}."
            ) from exc
        with self._lock:
            self._all.append((threading.current_thread(), conn))
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, queries: dict[str, str] | None = None) -> Iterator[Tx]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise DatabaseUnavailableError(f"SQLite database {self.path}: {exc}.") from exc
        try:
            tx = _SqliteTx(conn, queries or self.queries)
            self._check_fence(tx)
            yield tx
        except BaseException as exc:
            with suppress(sqlite3.Error):  # a failed statement may have rolled it back
                conn.execute("ROLLBACK")
            if _unavailable(exc):
                raise DatabaseUnavailableError(f"SQLite database {self.path}: {exc}.") from exc
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise DatabaseUnavailableError(f"SQLite database {self.path}: {exc}.") from exc

    def _owned_row(self, tx: Tx, job_id: str, worker_id: str) -> Row | None:
        assert isinstance(tx, _SqliteTx)
        return _SqliteTx(tx.conn, self.queries).one(
            "owned_job", {"id": job_id, "worker_id": worker_id}
        )

    @contextmanager
    def session(self, queries: dict[str, str] | None = None) -> Iterator[Tx]:
        try:
            yield _SqliteTx(self._conn(), queries or self.queries)
        except sqlite3.OperationalError as exc:
            if _unavailable(exc):
                raise DatabaseUnavailableError(f"SQLite database {self.path}: {exc}.") from exc
            raise

    def _shape_sql(self, sql: str, given: frozenset[str]) -> str:
        # SQLite walks the (user_id, created_at) index whenever it can: a list stops after
        # one page. Ids and entity ids have indexes of their own, which select far fewer
        # rows; ``+column`` keeps SQLite off the user index then.
        if given & {"ids", "entity_ids"}:
            return sql.replace("(j.user_id = :user_id)", "(+j.user_id = :user_id)")
        return sql

    def close(self) -> None:
        me = threading.current_thread()
        with self._lock:
            conns, self._all = self._all, []
        for thread, conn in conns:
            if thread is me or not thread.is_alive():
                with suppress(sqlite3.Error):
                    conn.close()
        self._local = threading.local()

    def _migration_lock(self, tx: Tx) -> None:
        """BEGIN IMMEDIATE already holds the write lock."""

    def _raw(self, tx: Tx, sql: str) -> list[Row]:
        assert isinstance(tx, _SqliteTx)
        return [dict(r) for r in tx.conn.execute(sql).fetchall()]

    def _record_migration(self, tx: Tx, m: Migration) -> None:
        assert isinstance(tx, _SqliteTx)
        tx.conn.execute(
            "INSERT INTO schema_migrations (component, version, name, applied_at)"
            " VALUES (?, ?, ?, ?)",
            (m.component, m.version, m.name, format_time(datetime.now(UTC))),
        )

    def _time_param(self, value: datetime | None) -> Any:
        return format_time(value) if value else None

    # --- wake-ups ---------------------------------------------------------------------------

    def _wakeup(self, tx: Tx, job_types: set[str]) -> None:
        # Other processes see the commit through PRAGMA data_version; threads of this
        # process are woken right away (after the commit, which happens momentarily).
        with self._wakeup_cond:
            self._wakeup_cond.notify_all()

    def wait_for_jobs(self, timeout: float) -> bool:
        watcher = getattr(self._local, "watcher", None)
        if watcher is None:
            watcher = self._connect()
            self._local.watcher = watcher
        deadline = time.monotonic() + timeout
        start = watcher.execute("PRAGMA data_version").fetchone()[0]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._wakeup_cond:
                if self._wakeup_cond.wait(min(0.005, remaining)):
                    return True
            if watcher.execute("PRAGMA data_version").fetchone()[0] != start:
                return True

    def change_waiter(self) -> ChangeWaiter:
        return _DataVersionWaiter(self.path)

    # --- batch operations -----------------------------------------------------------------

    def _insert_new(self, tx: Tx, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        for row in rows:
            inserted = tx.one("insert_job", row)
            assert inserted is not None
            out.append(inserted)
        tx.many("insert_created_event", [{"id": r["id"]} for r in rows])
        return out

    def _delete_rows(self, tx: Tx, ids: list[str], user_id: str | None, reason: str) -> list[Row]:
        rows = tx.all("select_jobs_by_ids", {"ids": ids, "user_id": user_id})
        gone = [r["id"] for r in rows]
        if gone:
            tx.run("delete_jobs_by_ids", {"ids": gone})
            tx.run("delete_events_by_job_ids", {"ids": gone})
            tx.run("delete_logs_by_job_ids", {"ids": gone})
            tx.many(
                "insert_event",
                [
                    {
                        "job_id": r["id"],
                        "from_status": r["status"],
                        "to_status": None,
                        "stage": _stage_of(r),
                        "message": reason,
                        "worker_id": None,
                    }
                    for r in rows
                ],
            )
        return rows

    def claim(
        self,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        job_types: Sequence[str] | None,
        *,
        max_takeovers: int = DEFAULT_MAX_TAKEOVERS,
    ) -> list[Job]:
        if limit <= 0:
            return []
        types = list(job_types) if job_types else None
        params = {"limit": limit, "types": types, "max_takeovers": max_takeovers}
        with self.transaction() as tx:
            picked = tx.all("claim_candidates", params)
            if not picked:
                return []
            before = {r["id"]: r["status"] for r in picked}
            previous = {r["id"]: r["worker_id"] for r in picked}
            rows = tx.all(
                "claim_update",
                {"ids": list(before), "worker_id": worker_id, "lease": lease_seconds},
            )
            tx.many(
                "insert_event",
                [
                    {
                        "job_id": r["id"],
                        "from_status": before[r["id"]],
                        "to_status": "processing",
                        "stage": _stage_of(r),
                        "message": (
                            f"lease expired; taken over from {previous[r['id']] or '?'} "
                            f"(attempt {r['attempt']})"
                            if before[r["id"]] == "processing"
                            else f"claimed (attempt {r['attempt']})"
                        ),
                        "worker_id": worker_id,
                    }
                    for r in rows
                ],
            )
        rows.sort(key=lambda r: (-int(r["priority"]), r["created_at"]))
        return [Job.from_row(r) for r in rows]

    def complete(self, worker_id: str, results: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        if not results:
            return []
        done: list[Row] = []
        with self.transaction() as tx:
            for job_id, output in results:
                params = {"id": job_id, "output": output, "worker_id": worker_id}
                row = tx.one("complete_job", params)
                if row is not None:
                    done.append(row)
            tx.many(
                "insert_event",
                [
                    {
                        "job_id": r["id"],
                        "from_status": "processing",
                        "to_status": "completed",
                        "stage": r["stage"],
                        "message": "completed",
                        "worker_id": worker_id,
                    }
                    for r in done
                ],
            )
        return [str(r["id"]) for r in done]

    def heartbeat(
        self, worker_id: str, lease_seconds: float, job_ids: Sequence[str]
    ) -> dict[str, Control]:
        params = {"worker_id": worker_id, "lease": lease_seconds, "ids": list(job_ids)}
        with self.transaction() as tx:
            tx.run("touch_worker", {"worker_id": worker_id})
            rows = tx.all("heartbeat", params) if job_ids else []
        return {
            str(r["id"]): Control(bool(r["pause_requested"]), bool(r["cancel_requested"]))
            for r in rows
        }

    def expire_leases(self, max_takeovers: int = DEFAULT_MAX_TAKEOVERS) -> list[str]:
        with self.transaction() as tx:
            rows = tx.all("expire_leases", {"max_takeovers": max_takeovers})
            tx.many(
                "insert_event",
                [
                    {
                        "job_id": r["id"],
                        "from_status": "processing",
                        "to_status": "pending",
                        "stage": r["stage"],
                        "message": f"lease expired: worker {r['worker_id']} stopped heartbeating",
                        "worker_id": r["worker_id"],
                    }
                    for r in rows
                ],
            )
        if rows:
            self._wakeup(tx, set())
        return [str(r["id"]) for r in rows]

    def promote_retries(self, as_of: datetime | None = None) -> list[str]:
        with self.transaction() as tx:
            rows = tx.all("promote_retries", {"as_of": as_of})
            tx.many(
                "insert_event",
                [
                    {
                        "job_id": r["id"],
                        "from_status": "failed",
                        "to_status": "pending",
                        "stage": r["stage"],
                        "message": f"automatic retry {r['retry_count']} of {r['max_retries']} "
                        "is due",
                        "worker_id": None,
                    }
                    for r in rows
                ],
            )
        if rows:
            self._wakeup(tx, set())
        return [str(r["id"]) for r in rows]


class _DataVersionWaiter:
    """Watches ``PRAGMA data_version`` on its own connection: it changes whenever another
    connection (any process) commits."""

    def __init__(self, path: Path) -> None:
        try:
            self.conn = sqlite3.connect(str(path), check_same_thread=False)
            self.version = self._read()
        except sqlite3.Error as exc:
            raise DatabaseUnavailableError(f"SQLite database {path}: {exc}.") from exc

    def _read(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def __call__(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                now = self._read()
            except sqlite3.Error as exc:
                raise DatabaseUnavailableError(f"SQLite change feed: {exc}.") from exc
            if now != self.version:
                self.version = now
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def close(self) -> None:
        with suppress(sqlite3.Error):
            self.conn.close()


def _stage_of(row: Row) -> str | None:
    progress = row.get("progress")
    if isinstance(progress, str):
        progress = json.loads(progress)
    return progress.get("stage") if isinstance(progress, dict) else None
