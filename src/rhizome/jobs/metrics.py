"""Lifetime metrics of the workers: counters and histograms kept in memory by each worker
and added to the ``job_metrics`` table at every heartbeat (one small transaction, rows
keyed by the worker, so workers never contend). ``/metrics`` sums the rows of every
worker, so the counters cover every process on every machine and only ever grow; a worker
that stops folds its rows into the retired workers' (``worker_id = '*'``).

Series (``metric``, ``job_type``, ``label``):

* ``runs`` — one per run that reached its handler, ``label`` = the outcome: ``completed``,
  ``failed``, ``retry`` (failed, an automatic retry scheduled), ``paused``, ``cancelled``,
  ``released`` (handed back at shutdown) or ``lost`` (its lease was taken over);
* ``retries`` — automatic retries scheduled;
* ``takeovers`` — jobs claimed after their worker stopped heartbeating;
* ``claims`` — jobs claimed;
* ``run_seconds`` and ``claim_latency_seconds`` — histograms, as ``<name>_bucket``
  (``label`` = the upper bound, cumulative, ``+Inf`` last), ``<name>_sum`` and
  ``<name>_count``. Claim latency runs from the moment a job was due (enqueued, resumed
  or retried) to its claim, on the database's clock.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from rhizome.jobs.model import Job

RUN_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200,
)  # fmt: skip
CLAIM_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800,
)  # fmt: skip
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "run_seconds": RUN_BUCKETS,
    "claim_latency_seconds": CLAIM_BUCKETS,
}
OUTCOMES = ("completed", "failed", "retry", "paused", "cancelled", "released", "lost")

Delta = tuple[str, str, str, float]
"""``(metric, job_type, label, increment)``."""


def bucket_label(bound: float) -> str:
    """The ``le`` label of a bucket bound, as Prometheus writes it (``0.5``, ``10.0``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class WorkerMetrics:
    """A worker's increments since they were last stored (thread-safe).

    A histogram observation costs one bisect and three additions (the worker makes one or
    two per job); the cumulative ``_bucket`` series are made when the increments are taken,
    once per heartbeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, str], float] = {}
        # (metric, job_type) -> [count per bucket (not cumulative; +Inf last), sum, count]
        self._hist: dict[tuple[str, str], list[float]] = {}

    def count(self, metric: str, job_type: str, label: str = "", n: float = 1) -> None:
        with self._lock:
            key = (metric, job_type, label)
            self._pending[key] = self._pending.get(key, 0.0) + n

    def observe(self, metric: str, job_type: str, value: float) -> None:
        value = max(0.0, float(value))
        bounds = HISTOGRAMS[metric]
        index = bisect_left(bounds, value)  # the first bound >= value (len: +Inf)
        with self._lock:
            hist = self._hist.get((metric, job_type))
            if hist is None:
                hist = self._hist[(metric, job_type)] = [0.0] * (len(bounds) + 3)
            hist[index] += 1
            hist[-2] += value
            hist[-1] += 1

    # --- what the worker reports ------------------------------------------------------------

    def claimed(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.count("claims", job.job_type)
            if job.claim_reason == "takeover":
                self.count("takeovers", job.job_type)
            # release and takeover keep the old run_at: their latency is not a queue's
            if job.claim_reason in (None, "retry", "resume") and job.run_at and job.heartbeat_at:
                waited = (job.heartbeat_at - job.run_at).total_seconds()
                self.observe("claim_latency_seconds", job.job_type, waited)

    def run(self, job_type: str, seconds: float, outcome: str) -> None:
        self.count("runs", job_type, outcome)
        self.observe("run_seconds", job_type, seconds)

    def retry_scheduled(self, job_type: str) -> None:
        self.count("retries", job_type)

    # --- storing ----------------------------------------------------------------------------

    def take(self) -> list[Delta]:
        """The increments since the last call (cleared)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            hists, self._hist = self._hist, {}
        for (metric, job_type), hist in hists.items():
            bounds = (*HISTOGRAMS[metric], float("inf"))
            cumulative = 0.0
            for bound, n in zip(bounds, hist, strict=False):
                cumulative += n
                key = (f"{metric}_bucket", job_type, bucket_label(bound))
                pending[key] = pending.get(key, 0.0) + cumulative
            for key, add in (
                ((f"{metric}_sum", job_type, ""), hist[-2]),
                ((f"{metric}_count", job_type, ""), hist[-1]),
            ):
                pending[key] = pending.get(key, 0.0) + add
        return [(m, t, lb, v) for (m, t, lb), v in pending.items() if v]

    def put_back(self, deltas: Sequence[Delta]) -> None:
        """Increments that could not be stored (tried again next time)."""
        for metric, job_type, label, value in deltas:
            self.count(metric, job_type, label, value)
