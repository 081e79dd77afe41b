"""Prefetch: jobs a worker claims ahead of its free slots and holds until a slot frees.

A held job is a claimed job in every respect: its lease is renewed by the heartbeat, a
pause or cancel requested while it waits is honoured before it starts, a job taken away
meanwhile is not started, a paused queue and a stopping worker hand it back, and every
job runs exactly once. Both stores.

The tests hold jobs behind a *gate* job that occupies the worker's only slot until the
test opens the gate; heartbeats are driven by hand (``worker.beat()``) where the test
needs to know that one happened.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from rhizome.jobs.context import JobContext
from rhizome.jobs.model import Job, JobStatus, NewJob
from rhizome.jobs.registry import Registry
from rhizome.jobs.retry import RetryPolicy
from rhizome.jobs.store import SqlJobStore
from rhizome.jobs.worker import Worker, WorkerConfig
from rhizome.storage import LocalStorage
from tests.helpers import Background, wait_for, wait_status

PREFETCH = 4


@dataclass
class Lab:
    """A registry with a ``gate`` job (blocks until opened) and a ``quick`` job (records
    that it ran)."""

    gate: threading.Event = field(default_factory=threading.Event)
    runs: list[str] = field(default_factory=list)
    types: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        @self.types.job_type("gate", label="Gate", icon="lock")
        def gate(ctx: JobContext, data: Any) -> dict[str, Any]:
            self.runs.append(ctx.job.id)
            assert self.gate.wait(60), "the test never opened the gate"
            return {}

        @self.types.job_type("quick", label="Quick", icon="zap")
        def quick(ctx: JobContext, data: Any) -> dict[str, Any]:
            self.runs.append(ctx.job.id)
            return {"ran": True}


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    yield lab
    lab.gate.set()  # never leave a job thread blocked


def _worker(store: SqlJobStore, storage: LocalStorage, lab: Lab, **overrides: Any) -> Worker:
    cfg: dict[str, Any] = {
        "concurrency": 1,
        "prefetch": PREFETCH,
        # prefetch whatever the timing of this machine, and never hand back on time
        "prefetch_below_seconds": 3600.0,
        "heartbeat_seconds": 3600.0,  # the tests beat by hand
        "lease_seconds": 30.0,
        "poll_seconds": 0.05,
        "progress_interval": 0.0,
        "shutdown_grace_seconds": 30.0,
        "retry": RetryPolicy(base_seconds=0.05, jitter=0.0),
    }
    cfg.update(overrides)
    return Worker(store, storage, lab.types, WorkerConfig(**cfg))


def _hold_behind_gate(store: SqlJobStore, worker: Worker, lab: Lab) -> tuple[Job, list[Job]]:
    """Run one quick job (the worker learns that jobs are short), then enqueue a gate job
    and PREFETCH quick ones together: the gate takes the only slot, the others are held."""
    [first] = store.enqueue([NewJob("quick", {})])
    wait_status(store, first.id, JobStatus.COMPLETED)
    [gate, *quick] = store.enqueue(
        [NewJob("gate", {}, priority=10)] + [NewJob("quick", {}) for _ in range(PREFETCH)]
    )
    wait_for(lambda: gate.id in lab.runs, what="the gate job to start")
    wait_for(
        lambda: sorted(worker.held_job_ids) == sorted(j.id for j in quick),
        what="the quick jobs to be held",
    )
    return gate, quick


def _to_statuses(store: SqlJobStore, job_id: str) -> list[str]:
    return [e.to_status for e in store.events(job_id) if e.to_status]


def test_held_jobs_are_claimed_and_their_leases_renewed(
    store: SqlJobStore, storage: LocalStorage, lab: Lab
) -> None:
    worker = _worker(store, storage, lab)
    with Background(worker):
        gate, quick = _hold_behind_gate(store, worker, lab)
        held = [store.get(j.id) for j in quick]
        for job in held:
            assert job.status is JobStatus.PROCESSING
            assert job.worker_id == worker.id
            assert job.id not in lab.runs
        assert len(worker.held_job_ids) <= PREFETCH

        # Move the leases back to "about to expire", then one heartbeat renews them all.
        soon = {}
        for job in held:
            _expire_soon(store, job.id)
            soon[job.id] = store.get(job.id).lease_expires_at
        worker.beat()
        for job in held:
            renewed = store.get(job.id)
            before = soon[job.id]
            assert renewed.lease_expires_at is not None and before is not None
            assert (renewed.lease_expires_at - before).total_seconds() > 10  # now + 30 s
            assert renewed.status is JobStatus.PROCESSING and renewed.worker_id == worker.id
        assert store.expire_leases() == []  # the reaper does not take them

        lab.gate.set()
        for job in quick:
            wait_status(store, job.id, JobStatus.COMPLETED)
    assert Counter(lab.runs)[gate.id] == 1
    for job in quick:
        assert Counter(lab.runs)[job.id] == 1
        assert store.get(job.id).attempt == 1
        assert _to_statuses(store, job.id) == ["pending", "processing", "completed"]


def _expire_soon(store: SqlJobStore, job_id: str) -> None:
    """Set the job's lease to expire one second from now (as if the worker had not beaten
    for most of the lease)."""
    with store.transaction() as tx:
        if store.dialect == "postgres":
            tx.script(
                "UPDATE background_jobs SET lease_expires_at = now() + interval '1 second'"
                f" WHERE id = '{job_id}'"
            )
        else:
            tx.script(
                "UPDATE background_jobs SET lease_expires_at ="
                " strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 second')"
                f" WHERE id = '{job_id}'"
            )


def test_pause_and_cancel_of_a_held_job_are_honoured_before_it_starts(
    store: SqlJobStore, storage: LocalStorage, lab: Lab
) -> None:
    worker = _worker(store, storage, lab)
    with Background(worker):
        _gate, quick = _hold_behind_gate(store, worker, lab)
        to_pause, to_cancel, *others = quick
        assert store.request_pause(to_pause.id).pause_requested
        assert store.request_cancel(to_cancel.id).cancel_requested
        worker.beat()  # the worker learns of both requests
        lab.gate.set()
        paused = wait_status(store, to_pause.id, JobStatus.PAUSED)
        cancelled = wait_status(store, to_cancel.id, JobStatus.CANCELLED)
        for job in others:
            wait_status(store, job.id, JobStatus.COMPLETED)
    assert to_pause.id not in lab.runs and to_cancel.id not in lab.runs
    assert paused.pause_requested is False and paused.lease_expires_at is None
    assert any("paused before it started" in (e.message or "") for e in store.events(paused.id))
    assert cancelled.completed_at is not None

    store.resume(to_pause.id)  # a paused held job runs normally once resumed
    _worker(store, storage, lab, burst=True).run()
    assert store.get(to_pause.id).status is JobStatus.COMPLETED
    assert Counter(lab.runs)[to_pause.id] == 1


def test_a_held_job_taken_away_is_not_started(
    store: SqlJobStore, storage: LocalStorage, lab: Lab
) -> None:
    worker = _worker(store, storage, lab)
    with Background(worker):
        _gate, quick = _hold_behind_gate(store, worker, lab)
        gone = quick[0]
        store.force_fail(gone.id, "stopped by the test")
        worker.beat()  # its answer lacks the job: the worker drops it
        lab.gate.set()
        for job in quick[1:]:
            wait_status(store, job.id, JobStatus.COMPLETED)
        wait_for(lambda: not worker.held_job_ids, what="the held jobs to be gone")
    assert gone.id not in lab.runs
    assert store.get(gone.id).status is JobStatus.FAILED


def test_a_paused_queue_hands_held_jobs_back(
    store: SqlJobStore, storage: LocalStorage, lab: Lab
) -> None:
    worker = _worker(store, storage, lab)
    with Background(worker):
        _gate, quick = _hold_behind_gate(store, worker, lab)
        store.set_queue_paused(True, "quick")
        worker.beat()
        assert worker.held_job_ids == []
        for job in quick:
            assert store.get(job.id).status is JobStatus.PENDING
        lab.gate.set()
        store.set_queue_paused(False, "quick")
        for job in quick:
            wait_status(store, job.id, JobStatus.COMPLETED)
    for job in quick:
        assert Counter(lab.runs)[job.id] == 1
        assert _to_statuses(store, job.id) == [
            "pending",
            "processing",
            "pending",
            "processing",
            "completed",
        ]


def test_stop_hands_held_jobs_back_at_once_and_they_run_exactly_once(
    store: SqlJobStore, storage: LocalStorage, lab: Lab
) -> None:
    worker = _worker(store, storage, lab)
    runner = Background(worker)
    runner.__enter__()
    try:
        gate, quick = _hold_behind_gate(store, worker, lab)
        worker.stop()
        # Released while the gate job still runs: they do not wait for the slot.
        for job in quick:
            wait_status(store, job.id, JobStatus.PENDING)
        assert not lab.gate.is_set()
        lab.gate.set()
    finally:
        runner.__exit__(None, None, None)
    assert store.get(gate.id).status is JobStatus.COMPLETED
    for job in quick:
        assert job.id not in lab.runs
        messages = [e.message or "" for e in store.events(job.id)]
        assert any("shutting down before start" in m for m in messages)

    _worker(store, storage, lab, burst=True).run()
    for job in quick:
        done = store.get(job.id)
        assert done.status is JobStatus.COMPLETED
        assert done.attempt == 1  # handed back before it started: no new attempt (issue 16)
        assert Counter(lab.runs)[job.id] == 1


def test_sigterm_hands_held_jobs_back(store: SqlJobStore, storage: LocalStorage, lab: Lab) -> None:
    """The signal handler a worker process installs (``rhizome worker``) releases held
    jobs too. The worker runs in a thread; the signal goes to this process."""
    worker = _worker(store, storage, lab)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    worker.install_signal_handlers()
    runner = Background(worker)
    try:
        runner.__enter__()
        _gate, quick = _hold_behind_gate(store, worker, lab)
        os.kill(os.getpid(), signal.SIGTERM)
        for job in quick:
            wait_status(store, job.id, JobStatus.PENDING)
        lab.gate.set()
        runner.__exit__(None, None, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lab.gate.set()
    _worker(store, storage, lab, burst=True).run()
    for job in quick:
        assert store.get(job.id).status is JobStatus.COMPLETED
        assert Counter(lab.runs)[job.id] == 1


def test_held_jobs_are_handed_back_when_all_slots_stay_busy(
    store: SqlJobStore, storage: LocalStorage, lab: Lab
) -> None:
    """When no slot frees for ``prefetch_below_seconds`` (the slots run long jobs), held
    jobs go back to pending so that other workers can run them."""
    worker = _worker(store, storage, lab, prefetch_below_seconds=0.2, heartbeat_seconds=0.1)
    with Background(worker):
        # Many quick jobs, then a gate job, then more quick jobs (oldest run first): the
        # worker prefetches while the quick ones flow, and is holding some when the gate
        # job takes the only slot.
        store.enqueue([NewJob("quick", {}) for _ in range(40)])
        [gate] = store.enqueue([NewJob("gate", {})])
        after = store.enqueue([NewJob("quick", {}) for _ in range(40)])
        wait_for(lambda: gate.id in lab.runs, what="the gate job to start")
        wait_for(lambda: worker.released_prefetched > 0, what="held jobs to be handed back")
        wait_for(lambda: not worker.held_job_ids, what="no held jobs")
        assert not lab.gate.is_set()
        handed_back = [
            j
            for j in after
            if any("all slots busy" in (e.message or "") for e in store.events(j.id))
        ]
        assert handed_back
        for job in handed_back:
            assert job.id not in lab.runs
        lab.gate.set()
        for job in after:
            wait_status(store, job.id, JobStatus.COMPLETED)
    counts = Counter(lab.runs)
    assert all(n == 1 for n in counts.values()), counts
    assert store.count_jobs() == {("completed", "quick"): 80, ("completed", "gate"): 1}


def test_a_job_released_with_a_pause_still_requested_is_paused_before_it_starts(
    store: SqlJobStore, storage: LocalStorage, lab: Lab
) -> None:
    """A worker shut down before honouring a pause request releases the job with the
    request still set; the next worker pauses it instead of running it."""
    [job] = store.enqueue([NewJob("quick", {})])
    [claimed] = store.claim("gone-worker", 1, 30, None)
    assert claimed.id == job.id
    store.request_pause(job.id)
    store.stop(job.id, "gone-worker", "release", "worker shutting down")
    assert store.get(job.id).pause_requested
    _worker(store, storage, lab, burst=True).run()
    paused = store.get(job.id)
    assert paused.status is JobStatus.PAUSED
    assert job.id not in lab.runs
