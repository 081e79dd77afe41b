"""WorkerMetrics: the increments a worker stores at each heartbeat."""

from __future__ import annotations

import random

from rhizome.jobs.metrics import CLAIM_BUCKETS, RUN_BUCKETS, WorkerMetrics, bucket_label


def _expected(values: list[float], bounds: tuple[float, ...], metric: str) -> dict[str, float]:
    """Prometheus' cumulative buckets, counted the slow and obvious way."""
    out: dict[str, float] = {}
    for bound in (*bounds, float("inf")):
        n = sum(1 for v in values if max(v, 0.0) <= bound)
        if n:
            out[f"{metric}_bucket|{bucket_label(bound)}"] = n
    out[f"{metric}_sum|"] = sum(max(v, 0.0) for v in values)
    out[f"{metric}_count|"] = len(values)
    return out


def _taken(metrics: WorkerMetrics, job_type: str) -> dict[str, float]:
    return {f"{m}|{label}": v for m, t, label, v in metrics.take() if t == job_type}


def test_histograms_are_cumulative_and_match_a_plain_count() -> None:
    rng = random.Random(7)
    metrics = WorkerMetrics()
    runs = [rng.choice([0.0, 0.01, 0.5, 7200.0, 9000.0, -1.0]) for _ in range(50)]
    runs += [rng.expovariate(1 / 3) for _ in range(500)]
    waits = [rng.expovariate(20) for _ in range(300)]
    for v in runs:
        metrics.observe("run_seconds", "noop", v)
    for v in waits:
        metrics.observe("claim_latency_seconds", "noop", v)
    metrics.count("runs", "noop", "completed", 3)
    got = _taken(metrics, "noop")
    want = {**_expected(runs, RUN_BUCKETS, "run_seconds")}
    want.update(_expected(waits, CLAIM_BUCKETS, "claim_latency_seconds"))
    want["runs|completed"] = 3
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) < 1e-6 * max(1.0, value), key
    assert metrics.take() == []  # taken: cleared


def test_put_back_adds_to_what_comes_next() -> None:
    metrics = WorkerMetrics()
    metrics.observe("run_seconds", "a", 0.2)
    first = metrics.take()
    metrics.put_back(first)  # storing failed: tried again with the next increments
    metrics.observe("run_seconds", "a", 0.2)
    again = {f"{m}|{label}": v for m, _, label, v in metrics.take()}
    assert "run_seconds_bucket|0.1" not in again  # 0.2 is above it
    assert again["run_seconds_bucket|0.25"] == 2 and again["run_seconds_bucket|+Inf"] == 2
    assert again["run_seconds_count|"] == 2 and abs(again["run_seconds_sum|"] - 0.4) < 1e-9
