"""Read queries the web layer needs beyond the store's: filtered and searched job lists
(type, status incl. pausing/retrying, stage, text), faceted counts for the filter badges,
and the rows behind the Prometheus metrics. Built per dialect with bound parameters only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from rhizome.jobs.model import Job, JobStatus
from rhizome.jobs.store import SqlJobStore

DERIVED = {
    "active": "j.status IN ('pending', 'processing')",
    "pausing": "(j.status = 'processing' AND j.pause_requested)",
    "cancelling": "(j.status = 'processing' AND j.cancel_requested)",
    "retrying": "(j.status = 'failed' AND j.next_retry_at IS NOT NULL)",
}
STORED = tuple(s.value for s in JobStatus)
STATUS_KEYS = tuple(dict.fromkeys((*STORED, *DERIVED)))


@dataclass(frozen=True)
class JobFilter:
    """Which jobs to show: every given dimension must match (values inside one are ORed)."""

    types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    stage: str | None = None
    q: str | None = None
    ids: tuple[str, ...] = ()
    entity_ids: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    """Hidden types, left out unless asked for by name in ``types``."""

    def without(self, dimension: str) -> JobFilter:
        if dimension == "type":
            return replace(self, types=())
        if dimension == "status":
            return replace(self, statuses=())
        if dimension == "stage":
            return replace(self, stage=None)
        raise ValueError(dimension)


class _Sql:
    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.params: dict[str, Any] = {}

    def p(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}" if self.dialect == "sqlite" else f"%({name})s"

    def plist(self, values: Sequence[Any]) -> str:
        return ", ".join(self.p(v) for v in values)


def _doc_join(dialect: str) -> str:
    if dialect == "sqlite":
        match = "d.id = j.entity_id"
    else:
        match = "d.id = CASE WHEN j.entity_id ~ '^[0-9a-fA-F-]{36}$' THEN j.entity_id::uuid END"
    return (
        f" LEFT JOIN documents d ON j.entity_type = 'document' AND {match}"
        " AND d.user_id = j.user_id"
    )


def _where(sql: _Sql, f: JobFilter, user_id: str | None) -> str:
    parts: list[str] = []
    if user_id is not None:
        parts.append(f"j.user_id = {sql.p(user_id)}")
    if f.types:
        parts.append(f"j.job_type IN ({sql.plist(f.types)})")
    elif f.exclude_types:
        parts.append(f"j.job_type NOT IN ({sql.plist(f.exclude_types)})")
    if f.statuses:
        ors: list[str] = []
        stored = [s for s in f.statuses if s in STORED]
        if stored:
            ors.append(f"j.status IN ({sql.plist(stored)})")
        ors.extend(DERIVED[s] for s in f.statuses if s in DERIVED)
        parts.append("(" + " OR ".join(ors or ["1 = 0"]) + ")")
    if f.stage:
        parts.append(f"j.progress ->> 'stage' = {sql.p(f.stage)}")
    if f.ids:
        parts.append(f"j.id IN ({sql.plist(f.ids)})")
    if f.entity_ids:
        parts.append(f"j.entity_id IN ({sql.plist(f.entity_ids)})")
    if f.q:
        pattern = "%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        if sql.dialect == "sqlite":
            text = (
                "(j.id || ' ' || j.job_type || ' ' || coalesce(j.input_data, '') || ' ' ||"
                " coalesce(j.progress ->> 'details', '') || ' ' ||"
                " coalesce(j.progress ->> 'stage', '') || ' ' || coalesce(j.error_message, '')"
                " || ' ' || coalesce(j.entity_id, '') || ' ' || coalesce(j.worker_id, '') ||"
                " ' ' || coalesce(d.title, ''))"
            )
            parts.append(f"{text} LIKE {sql.p(pattern)} ESCAPE '\\'")
        else:
            text = (
                "concat_ws(' ', j.id::text, j.job_type, j.input_data::text,"
                " j.progress ->> 'details', j.progress ->> 'stage', j.error_message,"
                " j.entity_id, j.worker_id, d.title)"
            )
            parts.append(f"{text} ILIKE {sql.p(pattern)} ESCAPE '\\'")
    return " WHERE " + " AND ".join(parts) if parts else ""


def _query(store: SqlJobStore, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with store.session({"q": sql}) as s:
        return s.all("q", params)


@dataclass
class JobPage:
    jobs: list[Job]
    document_titles: dict[str, str] = field(default_factory=dict)


def search_jobs(
    store: SqlJobStore,
    f: JobFilter,
    *,
    user_id: str | None,
    limit: int = 50,
    offset: int = 0,
) -> JobPage:
    """Newest first, with the titles of the documents the jobs belong to."""
    sql = _Sql(store.dialect)
    where = _where(sql, f, user_id)
    text = (
        "SELECT j.*, d.title AS document_title FROM background_jobs j"
        + _doc_join(store.dialect)
        + where
        + f" ORDER BY j.created_at DESC, j.id DESC LIMIT {sql.p(limit)} OFFSET {sql.p(offset)}"
    )
    rows = _query(store, text, sql.params)
    page = JobPage([Job.from_row(r) for r in rows])
    for r in rows:
        if r.get("document_title"):
            page.document_titles[str(r["id"])] = str(r["document_title"])
    return page


def job_ids(store: SqlJobStore, f: JobFilter, *, user_id: str | None, limit: int) -> list[str]:
    """Ids of the matching jobs (oldest first), for bulk actions by filter."""
    sql = _Sql(store.dialect)
    where = _where(sql, f, user_id)
    text = (
        "SELECT j.id FROM background_jobs j"
        + _doc_join(store.dialect)
        + where
        + f" ORDER BY j.created_at, j.id LIMIT {sql.p(limit)}"
    )
    return [str(r["id"]) for r in _query(store, text, sql.params)]


@dataclass(frozen=True)
class _Group:
    job_type: str
    status: str
    pausing: bool
    cancelling: bool
    retrying: bool
    stage: str | None

    def matches_status(self, statuses: Sequence[str]) -> bool:
        if not statuses:
            return True
        for s in statuses:
            if (
                s == self.status
                or (s == "active" and self.status in ("pending", "processing"))
                or (s == "pausing" and self.pausing)
                or (s == "cancelling" and self.cancelling)
                or (s == "retrying" and self.retrying)
            ):
                return True
        return False


@dataclass
class Facets:
    total: int
    by_type: dict[str, int]
    by_status: dict[str, int]
    by_stage: dict[str, int]
    everything: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "all": self.everything,
            "by_type": self.by_type,
            "by_status": self.by_status,
            "by_stage": self.by_stage,
        }


def facets(store: SqlJobStore, f: JobFilter, *, user_id: str | None) -> Facets:
    """Counts for the filter badges: each dimension counted under the other two filters
    (so a badge says how many jobs clicking it would show)."""
    base = JobFilter(q=f.q, ids=f.ids, entity_ids=f.entity_ids, exclude_types=f.exclude_types)
    if f.types and f.exclude_types:
        # types asked for by name are shown even when hidden
        base = replace(base, exclude_types=tuple(t for t in f.exclude_types if t not in f.types))
    sql = _Sql(store.dialect)
    where = _where(sql, base, user_id)
    text = (
        "SELECT j.job_type, j.status, j.pause_requested, j.cancel_requested,"
        " CASE WHEN j.next_retry_at IS NULL THEN 0 ELSE 1 END AS retry_due,"
        " j.progress ->> 'stage' AS stage, count(*) AS n FROM background_jobs j"
        + _doc_join(store.dialect)
        + where
        + " GROUP BY j.job_type, j.status, j.pause_requested, j.cancel_requested,"
        " CASE WHEN j.next_retry_at IS NULL THEN 0 ELSE 1 END, j.progress ->> 'stage'"
    )
    groups: list[tuple[_Group, int]] = []
    for r in _query(store, text, sql.params):
        status = str(r["status"])
        groups.append(
            (
                _Group(
                    job_type=str(r["job_type"]),
                    status=status,
                    pausing=status == "processing" and bool(r["pause_requested"]),
                    cancelling=status == "processing" and bool(r["cancel_requested"]),
                    retrying=status == "failed" and bool(r["retry_due"]),
                    stage=r["stage"],
                ),
                int(r["n"]),
            )
        )

    def type_ok(g: _Group) -> bool:
        return not f.types or g.job_type in f.types

    def stage_ok(g: _Group) -> bool:
        return not f.stage or g.stage == f.stage

    by_type: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    by_stage: Counter[str] = Counter()
    total = everything = 0
    for g, n in groups:
        if g.job_type in f.exclude_types and g.job_type not in f.types:
            continue
        everything += n
        if g.matches_status(f.statuses) and stage_ok(g):
            by_type[g.job_type] += n
        if type_ok(g) and stage_ok(g):
            for s in STATUS_KEYS:
                if g.matches_status([s]):
                    by_status[s] += n
        if type_ok(g) and g.matches_status(f.statuses) and g.stage:
            by_stage[g.stage] += n
        if type_ok(g) and stage_ok(g) and g.matches_status(f.statuses):
            total += n
    return Facets(total, dict(by_type), dict(by_status), dict(by_stage), everything)


def document_jobs(store: SqlJobStore, document_id: str, user_id: str) -> list[Job]:
    return search_jobs(
        store, JobFilter(entity_ids=(document_id,)), user_id=user_id, limit=1000
    ).jobs


# --- metrics ------------------------------------------------------------------------------


def _time_param(store: SqlJobStore, value: datetime) -> Any:
    if store.dialect == "sqlite":
        from rhizome.jobs.store.sqlite import format_time

        return format_time(value)
    return value


def recent_started(store: SqlJobStore, since: datetime, limit: int = 5000) -> list[dict[str, Any]]:
    sql = _Sql(store.dialect)
    text = (
        "SELECT job_type, created_at, run_at, started_at, attempt FROM background_jobs"
        f" WHERE started_at >= {sql.p(_time_param(store, since))}"
        f" ORDER BY started_at DESC LIMIT {sql.p(limit)}"
    )
    return _query(store, text, sql.params)


def recent_finished(store: SqlJobStore, since: datetime, limit: int = 5000) -> list[dict[str, Any]]:
    sql = _Sql(store.dialect)
    text = (
        "SELECT job_type, status, started_at, completed_at FROM background_jobs"
        f" WHERE completed_at >= {sql.p(_time_param(store, since))}"
        " AND started_at IS NOT NULL"
        f" ORDER BY completed_at DESC LIMIT {sql.p(limit)}"
    )
    return _query(store, text, sql.params)


def retry_totals(store: SqlJobStore) -> list[dict[str, Any]]:
    text = (
        "SELECT job_type, sum(retry_count) AS retries,"
        " sum(CASE WHEN status = 'failed' AND next_retry_at IS NOT NULL THEN 1 ELSE 0 END)"
        " AS scheduled FROM background_jobs GROUP BY job_type"
    )
    return _query(store, text, {})


def heartbeat_ages(store: SqlJobStore) -> list[dict[str, Any]]:
    text = (
        "SELECT job_type, worker_id, heartbeat_at FROM background_jobs"
        " WHERE status = 'processing' AND heartbeat_at IS NOT NULL"
    )
    return _query(store, text, {})
