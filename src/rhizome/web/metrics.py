"""Prometheus metrics, read from the database at scrape time, so they cover every worker
on every machine, not just this process.

*Lifetime* counters and histograms (they only grow; :mod:`rhizome.jobs.metrics`): each
worker counts what it does and adds it to ``job_metrics`` at every heartbeat; a scrape
sums every worker's rows (a stopped worker's rows are folded into ``worker_id = '*'``, so
nothing is lost). ``rate()`` and ``histogram_quantile()`` work on them as on any
Prometheus counter:

* ``rhizome_job_runs_total{job_type,outcome}`` — runs that reached their handler, by
  outcome (completed, failed, retry, paused, cancelled, released, lost);
* ``rhizome_job_run_seconds{job_type}`` — histogram of the time one run took;
* ``rhizome_job_claim_latency_seconds{job_type}`` — histogram of due → claimed;
* ``rhizome_job_claims_total``, ``rhizome_job_retries_total`` (automatic retries
  scheduled), ``rhizome_job_takeovers_total`` (jobs taken over after their worker stopped
  heartbeating), all ``{job_type}``.

Gauges of the present: jobs by type and status, jobs waiting for a retry, workers and
their heartbeat ages, the oldest heartbeat of a running job, paused queues, and this
server's live-update clients.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rhizome.jobs.metrics import HISTOGRAMS, bucket_label
from rhizome.jobs.model import JobStatus, parse_time
from rhizome.jobs.store import SqlJobStore
from rhizome.web.sse import Broadcaster

log = logging.getLogger("rhizome.web.metrics")

COUNTERS = {
    "runs": ("rhizome_job_runs", "Job runs that reached their handler, by outcome.", "outcome"),
    "claims": ("rhizome_job_claims", "Jobs claimed by a worker.", None),
    "retries": ("rhizome_job_retries", "Automatic retries scheduled after a failure.", None),
    "takeovers": (
        "rhizome_job_takeovers",
        "Jobs taken over after their worker stopped heartbeating.",
        None,
    ),
}
HISTOGRAM_HELP = {
    "run_seconds": ("rhizome_job_run_seconds", "Time one run of a job took (seconds)."),
    "claim_latency_seconds": (
        "rhizome_job_claim_latency_seconds",
        "From the moment a job was due (enqueued, resumed or retried) to its claim.",
    ),
}


def _seconds(a: Any, b: Any) -> float | None:
    start, end = parse_time(a), parse_time(b)
    if start is None or end is None:
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return max(0.0, (end - start).total_seconds())


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

    def _lifetime(self) -> Iterator[Metric]:
        """The workers' lifetime counters and histograms (sums over every worker)."""
        totals: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
        for r in self.store.metric_totals():
            totals[str(r["metric"])][(str(r["job_type"]), str(r["label"]))] = float(r["value"])
        for key, (name, doc, label) in COUNTERS.items():
            labels = ["job_type", label] if label else ["job_type"]
            family = CounterMetricFamily(name, doc, labels=labels)
            for (job_type, value_label), value in sorted(totals[key].items()):
                family.add_metric([job_type, value_label] if label else [job_type], value)
            yield family
        for key, bounds in HISTOGRAMS.items():
            name, doc = HISTOGRAM_HELP[key]
            histogram = HistogramMetricFamily(name, doc, labels=["job_type"])
            buckets = totals[f"{key}_bucket"]
            sums = totals[f"{key}_sum"]
            for job_type in sorted({t for t, _ in buckets} | {t for t, _ in sums}):
                cumulative = [
                    (bucket_label(b), buckets.get((job_type, bucket_label(b)), 0.0))
                    for b in (*bounds, float("inf"))
                ]
                histogram.add_metric([job_type], cumulative, sums.get((job_type, ""), 0.0))
            yield histogram

    def _from_database(self, now: datetime) -> Iterator[Metric]:
        store = self.store
        jobs = GaugeMetricFamily(
            "rhizome_jobs", "Jobs by type and status (now).", labels=["job_type", "status"]
        )
        counts = store.count_jobs()
        for job_type in sorted({t for _, t in counts}):
            for status in JobStatus:
                jobs.add_metric([job_type, status.value], counts.get((status.value, job_type), 0))
        yield jobs

        yield from self._lifetime()

        retry_rows, heartbeat_rows = store.metric_gauges()
        scheduled = GaugeMetricFamily(
            "rhizome_jobs_retry_scheduled",
            "Failed jobs waiting for an automatic retry (now).",
            labels=["job_type"],
        )
        for r in retry_rows:
            scheduled.add_metric([str(r["job_type"])], float(r["scheduled"] or 0))
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
        for r in heartbeat_rows:
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
