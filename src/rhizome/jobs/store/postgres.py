"""PostgreSQL job store: psycopg 3 (sync) with a connection pool.

Claims use one statement with ``FOR UPDATE SKIP LOCKED``; enqueue sends
``NOTIFY rhizome_wakeup`` in its transaction and idle workers ``LISTEN`` for it, so a new
job starts within milliseconds; a short poll is the fallback.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from rhizome.errors import DatabaseUnavailableError
from rhizome.jobs.model import DEFAULT_MAX_TAKEOVERS, Control, Job
from rhizome.jobs.store.base import ChangeWaiter, Row, SqlJobStore, Tx
from rhizome.jobs.store.queries import Migration

WAKEUP_CHANNEL = "rhizome_wakeup"
CHANGES_CHANNEL = "rhizome_changes"
"""Notified by the statement trigger of migration 0004 on every change to a job."""
_MIGRATION_LOCK_KEY = 0x52485A4D  # "RHZM"


def _adapt(value: Any) -> Any:
    if isinstance(value, dict):
        return Jsonb(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [Jsonb(v) for v in value]
    return value


def _params(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: _adapt(v) for k, v in (params or {}).items()}


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Row], queries: dict[str, str]) -> None:
        self.conn = conn
        self.queries = queries

    def all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        cur = self.conn.execute(self.queries[name], _params(params))
        return cur.fetchall() if cur.description else []

    def one(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        cur = self.conn.execute(self.queries[name], _params(params))
        return cur.fetchone() if cur.description else None

    def run(self, name: str, params: dict[str, Any] | None = None) -> int:
        return self.conn.execute(self.queries[name], _params(params)).rowcount

    def many(self, name: str, params: Sequence[dict[str, Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self.queries[name], [_params(p) for p in params])

    def script(self, sql: str) -> None:
        self.conn.execute(sql.encode())


class PostgresJobStore(SqlJobStore):
    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 10,
        connect_timeout: float = 5,
        dead_peer_seconds: float = 30.0,
    ) -> None:
        super().__init__()
        self.url = url
        self._conninfo = url
        self._session = _session_settings(dead_peer_seconds)
        try:
            probe = psycopg.connect(url, connect_timeout=max(1, int(connect_timeout)))
            probe.close()
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(
                f"Cannot connect to PostgreSQL at {_redact(url)}: {_first_line(exc)}."
            ) from None
        self.pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, max_connections),
            kwargs={"row_factory": dict_row, **self._session},
            open=False,
            name="rhizome",
        )
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            self.pool.close()
            raise DatabaseUnavailableError(
                f"Cannot connect to PostgreSQL at {_redact(url)} (timed out)."
            ) from None
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_lock = threading.Lock()

    @contextmanager
    def transaction(self, queries: dict[str, str] | None = None) -> Iterator[Tx]:
        try:
            with self.pool.connection() as conn:
                tx = _PgTx(conn, queries or self.queries)
                self._check_fence(tx)
                yield tx
        except (
            psycopg.OperationalError,
            psycopg.InterfaceError,
            psycopg.errors.IdleInTransactionSessionTimeout,  # the peer looked dead
            PoolTimeout,
        ) as exc:
            raise DatabaseUnavailableError(
                f"Lost the connection to PostgreSQL: {_first_line(exc)}."
            ) from exc

    session = transaction

    def _owned_row(self, tx: Tx, job_id: str, worker_id: str) -> Row | None:
        assert isinstance(tx, _PgTx)
        return _PgTx(tx.conn, self.queries).one("owned_job", {"id": job_id, "worker_id": worker_id})

    def close(self) -> None:
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self.pool.close()

    def _migration_lock(self, tx: Tx) -> None:
        assert isinstance(tx, _PgTx)
        tx.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))

    def _raw(self, tx: Tx, sql: str) -> list[Row]:
        assert isinstance(tx, _PgTx)
        return tx.conn.execute(sql.encode()).fetchall()

    def _record_migration(self, tx: Tx, m: Migration) -> None:
        assert isinstance(tx, _PgTx)
        tx.conn.execute(
            "INSERT INTO schema_migrations (component, version, name, applied_at)"
            " VALUES (%s, %s, %s, %s)",
            (m.component, m.version, m.name, datetime.now(UTC).isoformat()),
        )

    # --- wake-ups -----------------------------------------------------------------------------

    def _wakeup(self, tx: Tx, job_types: set[str]) -> None:
        tx.run("notify_wakeup", {"job_type": ",".join(sorted(job_types))[:7000]})

    def wait_for_jobs(self, timeout: float) -> bool:
        with self._listener_lock:
            if self._listener is None:
                try:
                    self._listener = psycopg.connect(
                        self._conninfo, autocommit=True, connect_timeout=5, **self._session
                    )
                    self._listener.execute(f"LISTEN {WAKEUP_CHANNEL}")
                except psycopg.Error as exc:
                    self._listener = None
                    raise DatabaseUnavailableError(
                        f"Cannot listen for new jobs on PostgreSQL: {_first_line(exc)}."
                    ) from None
            listener = self._listener
        try:
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                return True
        except (psycopg.OperationalError, psycopg.InterfaceError):
            with self._listener_lock:
                self._listener = None
            return True  # reconnect next time; let the caller poll meanwhile
        return False

    def change_waiter(self) -> ChangeWaiter:
        return _ListenWaiter(self._conninfo, self._session)

    # --- batch operations -----------------------------------------------------------------

    def _insert_new(self, tx: Tx, rows: list[Row]) -> list[Row]:
        params = {
            "ids": [r["id"] for r in rows],
            "job_types": [r["job_type"] for r in rows],
            "user_ids": [r["user_id"] for r in rows],
            "entity_types": [r["entity_type"] for r in rows],
            "entity_ids": [r["entity_id"] for r in rows],
            "priorities": [r["priority"] for r in rows],
            "inputs": [Jsonb(r["input_data"]) for r in rows],
            "max_retries": [r["max_retries"] for r in rows],
            "run_ats": [r["run_at"] for r in rows],
            "progresses": [Jsonb(r["progress"]) for r in rows],
        }
        inserted = {str(r["id"]): r for r in tx.all("insert_jobs", params)}
        return [inserted[r["id"]] for r in rows]

    def _delete_rows(self, tx: Tx, ids: list[str], user_id: str | None, reason: str) -> list[Row]:
        return tx.all("delete_jobs", {"ids": ids, "user_id": user_id, "reason": reason})

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
        params = {
            "worker_id": worker_id,
            "limit": limit,
            "lease": float(lease_seconds),
            "types": list(job_types) if job_types else None,
            "max_takeovers": max_takeovers,
        }
        with self.transaction() as tx:
            assert isinstance(tx, _PgTx)
            # One round trip: BEGIN, the settings, the claim and COMMIT go out as one
            # pipeline (the claim loop waits for this; it bounds a worker's jobs/s).
            with tx.conn.pipeline():
                # A claim lost in a crash only makes the job due again: no fsync wait.
                tx.script("SET LOCAL synchronous_commit = off")
                # Without statistics (a fresh or just-filled table) the planner would scan
                # and sort every pending row for each claim; the ordered index scan is
                # always right.
                tx.script("SET LOCAL enable_bitmapscan = off")
                cur = tx.conn.execute(self.queries["claim"], _params(params))
                tx.conn.commit()
            rows = cur.fetchall()
        rows.sort(key=lambda r: (-int(r["priority"]), r["created_at"]))
        return [Job.from_row(r) for r in rows]

    def complete(self, worker_id: str, results: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        if not results:
            return []
        params = {
            "worker_id": worker_id,
            "ids": [r[0] for r in results],
            "outputs": [Jsonb(r[1]) for r in results],
        }
        with self.transaction() as tx:
            assert isinstance(tx, _PgTx)
            with tx.conn.pipeline():  # BEGIN, the statement and COMMIT in one round trip
                cur = tx.conn.execute(self.queries["complete_jobs"], params)
                tx.conn.commit()
            rows = cur.fetchall()
        return [str(r["id"]) for r in rows]

    def heartbeat(
        self, worker_id: str, lease_seconds: float, job_ids: Sequence[str]
    ) -> dict[str, Control]:
        params = {"worker_id": worker_id, "lease": float(lease_seconds), "ids": list(job_ids)}
        with self.transaction() as tx:
            rows = tx.all("heartbeat", params)
        return {
            str(r["id"]): Control(bool(r["pause_requested"]), bool(r["cancel_requested"]))
            for r in rows
        }

    def expire_leases(self, max_takeovers: int = DEFAULT_MAX_TAKEOVERS) -> list[str]:
        with self.transaction() as tx:
            rows = tx.all("expire_leases", {"max_takeovers": max_takeovers})
            if rows:
                self._wakeup(tx, set())
        return [str(r["id"]) for r in rows]

    def promote_retries(self, as_of: datetime | None = None) -> list[str]:
        with self.transaction() as tx:
            rows = tx.all("promote_retries", {"as_of": as_of})
            if rows:
                self._wakeup(tx, set())
        return [str(r["id"]) for r in rows]


class _ListenWaiter:
    """``LISTEN rhizome_changes`` on a connection of its own."""

    def __init__(self, conninfo: str, session: dict[str, Any]) -> None:
        try:
            self.conn = psycopg.connect(conninfo, autocommit=True, **session)
            self.conn.execute(f"LISTEN {CHANGES_CHANNEL}")
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(
                f"Cannot listen for changes on PostgreSQL at {_redact(conninfo)}: "
                f"{_first_line(exc)}."
            ) from None

    def __call__(self, timeout: float) -> bool:
        try:
            return any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(
                f"Lost the change feed connection: {_first_line(exc)}."
            ) from None

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()


def _session_settings(dead_peer_seconds: float) -> dict[str, Any]:
    """Connection settings so that a peer that vanished (a worker cut off by the network
    in the middle of a transaction, or the server) is noticed within ``dead_peer_seconds``
    (the lease, so that its jobs can be taken over once their leases ran out): both sides
    drop a connection whose packets go unacknowledged that long (``tcp_user_timeout``),
    keepalives probe idle ones, and the server ends a session left idle in a transaction
    that long. Without them a worker cut off mid-transaction keeps its row locks — SKIP
    LOCKED claims and the reaper pass its jobs by — until TCP gives up, hours later. (The
    idle timeout is not armed after a pipelined ``executemany``; the TCP settings cover
    that case: measured in bench/scaleout.)"""
    ms = int(max(dead_peer_seconds, 5.0) * 1000)
    # keepalive probes find a silent peer within ~5/8 of the lease: idle a quarter of it,
    # then three probes an eighth apart (a session waiting on a client that vanished
    # mid-pipeline sends nothing, so only keepalives notice it)
    idle = max(1, int(dead_peer_seconds / 4))
    interval = max(1, int(dead_peer_seconds / 8))
    return {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": 3,
        "tcp_user_timeout": ms,
        "options": (
            f"-c idle_in_transaction_session_timeout={ms} -c tcp_user_timeout={ms} "
            f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
            "-c tcp_keepalives_count=3"
        ),
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redact(url: str) -> str:
    """Hide a password in a URL before showing it."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url
