"""The operator's view: the dashboard's series over a time window, the Stats view's
percentiles per job type and stage, and the workers with what they run. Everything is
computed from ``job_events`` (and the current job counts) by the store's SQL on either
database; only the percentiles of the returned samples are taken here."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rhizome.jobs.durations import percentile
from rhizome.jobs.model import JobFilter, JobStatus, WorkerInfo, parse_time
from rhizome.jobs.vocabulary import stage_label, status_text
from rhizome.web import display
from rhizome.web.state import WebState
from rhizome.web.views import worker_view


@dataclass(frozen=True)
class Window:
    name: str
    label: str
    seconds: int
    bucket: int
    """Seconds per point of the charts."""
    bucket_label: str


WINDOWS: dict[str, Window] = {
    "hour": Window("hour", "Last hour", 3600, 60, "per minute"),
    "day": Window("day", "Last day", 86400, 900, "per 15 minutes"),
    "week": Window("week", "Last week", 7 * 86400, 7200, "per 2 hours"),
}
DEPTH_STATUSES = ("pending", "processing", "paused")


def window_of(name: str | None) -> Window:
    return WINDOWS.get(name or "hour", WINDOWS["hour"])


def _filter(state: WebState, user: str, include_hidden: bool) -> JobFilter:
    return JobFilter(user_id=user, exclude_types=() if include_hidden else state.hidden_types())


def _epoch(value: Any) -> float | None:
    t = parse_time(value)
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def overview(
    state: WebState,
    user: str,
    window: Window,
    *,
    include_hidden: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The dashboard's series, one point per ``window.bucket`` seconds (bucket starts as
    epoch seconds): completed and failed per bucket by job type, queue depth by status at
    the end of each bucket, claim latency p50/p95 per bucket, run time p50/p95 per bucket
    and job type."""
    now = now or datetime.now(UTC)
    step = window.bucket
    last = int(now.timestamp()) // step * step
    first = last - (window.seconds // step - 1) * step
    buckets = list(range(first, last + step, step))
    since = datetime.fromtimestamp(first, UTC)
    f = _filter(state, user, include_hidden)
    store = state.store

    completed: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    failed: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    net: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in store.status_transitions(since, step, f):
        b, n = int(r["bucket"]), int(r["n"])
        if r["to_status"] == "completed":
            completed[str(r["job_type"])][b] += n
        elif r["to_status"] == "failed":
            failed[str(r["job_type"])][b] += n
        if r["to_status"]:
            net[b][str(r["to_status"])] += n
        if r["from_status"]:
            net[b][str(r["from_status"])] -= n

    hidden = set(f.exclude_types)
    current = {s: 0 for s in DEPTH_STATUSES}
    for (status, job_type), n in store.count_jobs(user).items():
        if status in current and job_type not in hidden:
            current[status] += n
    depth: dict[str, list[int]] = {s: [0] * len(buckets) for s in DEPTH_STATUSES}
    level = dict(current)
    for i in range(len(buckets) - 1, -1, -1):  # walk back from now
        for s in DEPTH_STATUSES:
            depth[s][i] = max(level[s], 0)
            level[s] -= net[buckets[i]].get(s, 0)

    claims: dict[int, list[float]] = defaultdict(list)
    for r in store.claim_latencies(since, f):
        at = _epoch(r["at"])
        if at is not None:
            claims[int(at) // step * step].append(float(r["seconds"]))
    runs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in store.run_times(since, f):
        at = _epoch(r["at"])
        if at is not None:
            runs[str(r["job_type"])][int(at) // step * step].append(float(r["seconds"]))

    def per_bucket(values: dict[int, int]) -> list[int]:
        return [values.get(b, 0) for b in buckets]

    def pct(values: dict[int, list[float]], q: float) -> list[float | None]:
        return [percentile(values.get(b, []), q) for b in buckets]

    types = sorted(set(completed) | set(failed) | set(runs))
    return {
        "window": window.name,
        "window_label": window.label,
        "bucket_seconds": step,
        "bucket_label": window.bucket_label,
        "buckets": buckets,
        "types": [_type(state, t) for t in types],
        "completed": {t: per_bucket(completed[t]) for t in types if t in completed},
        "failed": {t: per_bucket(failed[t]) for t in types if t in failed},
        "depth": depth,
        "depth_labels": {s: status_text(s) for s in DEPTH_STATUSES},
        "claim_latency": {"p50": pct(claims, 50), "p95": pct(claims, 95)},
        "run_time": {t: {"p50": pct(runs[t], 50), "p95": pct(runs[t], 95)} for t in runs},
        "totals": {
            "completed": sum(sum(v.values()) for v in completed.values()),
            "failed": sum(sum(v.values()) for v in failed.values()),
            "claims": sum(len(v) for v in claims.values()),
            **{f"now_{s}": current[s] for s in DEPTH_STATUSES},
        },
    }


def _type(state: WebState, name: str) -> dict[str, Any]:
    return display.type_display(state.registry, name).to_dict()


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


def stats(
    state: WebState,
    user: str,
    window: Window,
    *,
    include_hidden: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Per job type: completed and failed, run time and claim latency p50/p95; per job
    type and stage: the time jobs spent in it, p50/p95."""
    now = now or datetime.now(UTC)
    since = now - timedelta(seconds=window.seconds)
    f = _filter(state, user, include_hidden)
    store = state.store
    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in store.status_transitions(since, window.seconds, f):
        if r["to_status"] in ("completed", "failed", "cancelled"):
            outcomes[str(r["job_type"])][str(r["to_status"])] += int(r["n"])
    runs: dict[str, list[float]] = defaultdict(list)
    for r in store.run_times(since, f):
        runs[str(r["job_type"])].append(float(r["seconds"]))
    claims: dict[str, list[float]] = defaultdict(list)
    for r in store.claim_latencies(since, f):
        claims[str(r["job_type"])].append(float(r["seconds"]))
    stages: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in store.stage_times(since, f):
        stages[(str(r["job_type"]), str(r["stage"]))].append(float(r["seconds"]))
    types = sorted(set(outcomes) | set(runs) | set(claims) | {t for t, _ in stages})
    rows = []
    for t in types:
        order = _stage_order(state, t)
        stage_rows = sorted(
            ((s, v) for (tt, s), v in stages.items() if tt == t),
            key=lambda item: (order.get(item[0], 999), item[0]),
        )
        rows.append(
            {
                "type": _type(state, t),
                "completed": outcomes[t].get("completed", 0),
                "failed": outcomes[t].get("failed", 0),
                "cancelled": outcomes[t].get("cancelled", 0),
                "run_time": _summary(runs[t]),
                "claim_latency": _summary(claims[t]),
                "stages": [
                    {
                        "stage": s,
                        "label": stage_label(state.registry, t, s),
                        **_summary(values),
                    }
                    for s, values in stage_rows
                ],
            }
        )
    return {"window": window.name, "window_label": window.label, "types": rows}


def _stage_order(state: WebState, job_type: str) -> dict[str, int]:
    if job_type not in state.registry:
        return {}
    stages = state.registry.get(job_type).stages
    if callable(stages):
        return {}
    return {s.name: i for i, s in enumerate(stages)}


def worker_state(w: WorkerInfo, state: WebState, now: datetime) -> str:
    """``stopped`` (it said goodbye), ``dead`` (no heartbeat for longer than a lease and
    three heartbeats) or ``live``."""
    if w.stopped_at is not None:
        return "stopped"
    settings = state.app.settings
    grace = max(float(settings.lease_seconds), 3 * float(settings.heartbeat_seconds)) + 2
    if w.last_seen_at is None or (now - w.last_seen_at).total_seconds() > grace:
        return "dead"
    return "live"


def workers(state: WebState, user: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Every worker process seen in the last day with its state, the jobs it runs now (the
    user's, as links; others counted), its completed and failed jobs of the last hour and,
    for a dead worker, the jobs taken over from it. Also the queue's paused types."""
    now = now or datetime.now(UTC)
    store = state.store
    running, finished = store.worker_activity(now - timedelta(hours=1))
    by_worker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in running:
        by_worker[str(r["worker_id"])].append(r)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for r in finished:
        counts[str(r["worker_id"])][str(r["to_status"])] = int(r["n"])
    out = []
    for w in store.list_workers():
        view = worker_view(w, now)
        status = worker_state(w, state, now)
        mine = [r for r in by_worker.get(w.id, []) if r["user_id"] == user]
        jobs = store.list_jobs(ids=[str(r["id"]) for r in mine], user_id=user) if mine else []
        taken: list[dict[str, Any]] = []
        if status == "dead":
            ids = store.taken_over_jobs(w.id)
            if ids:
                taken = [
                    {
                        "id": j.id,
                        "title": display.job_title(j, None, _type(state, j.job_type)["label"]),
                        "status": j.display_status,
                    }
                    for j in store.list_jobs(ids=ids, user_id=user, limit=100)
                ]
        view.update(
            {
                "state": status,
                "job_types": list(w.job_types),
                "running": [
                    {
                        "id": j.id,
                        "job_type": j.job_type,
                        "type_label": display.type_display(state.registry, j.job_type).label,
                        "title": display.job_title(j, None, _type(state, j.job_type)["label"]),
                        "stage_label": display.stage_label(state.registry, j),
                        "percent": display.percent_of(j),
                    }
                    for j in jobs
                    if j.status is JobStatus.PROCESSING and j.worker_id == w.id
                ],
                "running_other_users": len(by_worker.get(w.id, [])) - len(mine),
                "completed_last_hour": counts[w.id].get("completed", 0),
                "failed_last_hour": counts[w.id].get("failed", 0),
                "taken_over": taken,
            }
        )
        out.append(view)
    order = {"live": 0, "dead": 1, "stopped": 2}
    out.sort(key=lambda v: str(v["started_at"] or ""), reverse=True)  # newest first ...
    out.sort(key=lambda v: order[v["state"]])  # ... within live, dead, stopped
    return {"workers": out, "queue": store.queue_controls()}
