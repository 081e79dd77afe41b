"""Prometheus metrics, read from the database at scrape time (so they cover every worker
on every machine, not just this process): jobs by type and status, claim latency and run
durations of recent jobs, retries, worker heartbeats, queue pauses, and this server's
live-update clients."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rhizome.jobs.model import JobStatus, parse_time
from rhizome.jobs.store import SqlJobStore
from rhizome.web.sse import Broadcaster

log = logging.getLogger("rhizome.web.metrics")

CLAIM_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
WINDOW = timedelta(minutes=15)


def _seconds(a: Any, b: Any) -> float | None:
    start, end = parse_time(a), parse_time(b)
    if start is None or end is None:
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return max(0.0, (end - start).total_seconds())


def _histogram(values: list[float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    out = []
    for bound in bounds:
        out.append((str(bound), float(sum(1 for v in values if v <= bound))))
    out.append(("+Inf", float(len(values))))
    return out


class JobCollector(Collector):
    def __init__(self, store: SqlJobStore, broadcaster: Broadcaster | None) -> None:
        self.store = store
        self.broadcaster = broadcaster

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        up = GaugeMetricFamily("rhizome_database_up", "1 when the database answered.")
        try:
            metrics = list(self._from_database(now))
            up.add_metric([], 1)
        except Exception as exc:
            log.warning("metrics: database not available: %s", exc)
            metrics = []
            up.add_metric([], 0)
        yield up
        yield from metrics
        if self.broadcaster is not None:
            clients = GaugeMetricFamily(
                "rhizome_sse_clients", "Browsers connected to /api/events on this server."
            )
            clients.add_metric([], self.broadcaster.client_count)
            yield clients
            sent = CounterMetricFamily(
                "rhizome_sse_messages", "Job change messages sent to clients by this server."
            )
            sent.add_metric([], self.broadcaster.messages_sent)
            yield sent

    def _from_database(self, now: datetime) -> Iterator[Metric]:
        store = self.store
        jobs = GaugeMetricFamily(
            "rhizome_jobs", "Jobs by type and status.", labels=["job_type", "status"]
        )
        counts = store.count_jobs()
        types = sorted({t for _, t in counts})
        for job_type in types:
            for status in JobStatus:
                jobs.add_metric([job_type, status.value], counts.get((status.value, job_type), 0))
        yield jobs

        snapshot = store.metrics_snapshot(now - WINDOW)
        latency: dict[str, list[float]] = {}
        for r in snapshot.started:
            if int(r.get("attempt") or 0) != 1:
                continue  # the first claim only; reclaims and resumes measure other things
            due = max(
                (t for t in (parse_time(r["created_at"]), parse_time(r["run_at"])) if t),
                default=None,
            )
            value = _seconds(due, r["started_at"])
            if value is not None:
                latency.setdefault(str(r["job_type"]), []).append(value)
        claim = GaugeHistogramMetricFamily(
            "rhizome_job_claim_latency_seconds",
            "Time from due to first claim, jobs first claimed in the last 15 minutes.",
            labels=["job_type"],
        )
        for job_type, values in sorted(latency.items()):
            claim.add_metric([job_type], _histogram(values, CLAIM_BUCKETS), sum(values))
        yield claim

        durations: dict[tuple[str, str], list[float]] = {}
        for r in snapshot.finished:
            value = _seconds(r["started_at"], r["completed_at"])
            if value is not None:
                durations.setdefault((str(r["job_type"]), str(r["status"])), []).append(value)
        duration = GaugeHistogramMetricFamily(
            "rhizome_job_duration_seconds",
            "Start to finish (all attempts) of jobs finished in the last 15 minutes.",
            labels=["job_type", "status"],
        )
        for (job_type, outcome), values in sorted(durations.items()):
            duration.add_metric(
                [job_type, outcome], _histogram(values, DURATION_BUCKETS), sum(values)
            )
        yield duration

        retries = GaugeMetricFamily(
            "rhizome_job_retries",
            "Automatic retries recorded on the jobs now in the table.",
            labels=["job_type"],
        )
        scheduled = GaugeMetricFamily(
            "rhizome_jobs_retry_scheduled",
            "Failed jobs waiting for an automatic retry.",
            labels=["job_type"],
        )
        for r in snapshot.retries:
            retries.add_metric([str(r["job_type"])], float(r["retries"] or 0))
            scheduled.add_metric([str(r["job_type"])], float(r["scheduled"] or 0))
        yield retries
        yield scheduled

        beat = GaugeMetricFamily(
            "rhizome_worker_heartbeat_age_seconds",
            "Seconds since each running worker was last seen.",
            labels=["worker_id", "host"],
        )
        alive = GaugeMetricFamily("rhizome_workers", "Registered workers not stopped.")
        n = 0
        for w in store.list_workers():
            if w.stopped_at is not None:
                continue
            n += 1
            age = _seconds(w.last_seen_at, now)
            beat.add_metric([w.id, w.host], age if age is not None else float("nan"))
        alive.add_metric([], n)
        yield beat
        yield alive

        oldest = GaugeMetricFamily(
            "rhizome_job_heartbeat_age_max_seconds",
            "The oldest heartbeat among processing jobs (a stuck job shows here).",
            labels=["job_type"],
        )
        ages: dict[str, float] = {}
        for r in snapshot.heartbeats:
            age = _seconds(r["heartbeat_at"], now)
            if age is not None:
                ages[str(r["job_type"])] = max(ages.get(str(r["job_type"]), 0.0), age)
        for job_type, age in sorted(ages.items()):
            oldest.add_metric([job_type], age)
        yield oldest

        paused = GaugeMetricFamily(
            "rhizome_queue_paused",
            "1 when claiming is paused ('*': the whole queue).",
            labels=["job_type"],
        )
        for key, control in store.queue_controls().items():
            paused.add_metric([key], 1 if control["paused"] else 0)
        yield paused


def make_registry(store: SqlJobStore, broadcaster: Broadcaster | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobCollector(store, broadcaster))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
