"""``noop``: a job that does nothing useful, for tests, benchmarks and health checks.

Input: ``stages`` stages of ``units`` units each; every unit sleeps ``sleep_ms`` and is
checkpointed, so pausing or a crash loses at most one unit. The first ``fail_times``
attempts fail with an ``error`` of that class. ``unsafe_stages`` (1-based) are not
pause-safe. The output lists the units this run executed and a digest over all of them, so
an interrupted-and-resumed run can be compared with an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rhizome.errors import InvalidInputError, PaywallError, PermanentError, TransientError
from rhizome.jobs.context import JobContext
from rhizome.jobs.registry import Stage, registry


class NoopInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sleep_ms: int = Field(0, ge=0, le=3_600_000)
    stages: int = Field(0, ge=0, le=100)
    units: int = Field(1, ge=1, le=10_000)
    fail_times: int = Field(0, ge=0)
    fail_after_units: int = Field(0, ge=0)
    """With ``fail_times``: fail after this many units of the run (after their checkpoints)
    instead of at the start, so a retry resumes from a checkpoint."""
    error: Literal["transient", "invalid", "permanent", "paywall", "crash"] = "transient"
    unsafe_stages: list[int] = Field(default_factory=list)


_ERRORS: dict[str, type[Exception]] = {
    "transient": TransientError,
    "invalid": InvalidInputError,
    "permanent": PermanentError,
    "paywall": PaywallError,
}


def noop_stages(data: NoopInput) -> list[Stage]:
    n = data.stages
    return [
        Stage(
            f"step-{i}",
            f"Step {i} of {n}",
            round(100 * (i - 1) / n, 2),
            round(100 * i / n, 2),
            pause_safe=i not in data.unsafe_stages,
        )
        for i in range(1, n + 1)
    ]


@registry.job_type(
    "noop",
    label="No-op",
    icon="circle-dashed",
    stages=noop_stages,
    input_model=NoopInput,
    hidden=True,
)
def noop(ctx: JobContext, data: NoopInput) -> dict[str, Any]:
    """Sleeps through its stages; for tests, benchmarks and health checks."""
    failing = ctx.job.retry_count < data.fail_times
    if failing and not data.fail_after_units:
        message = f"noop failing on purpose ({ctx.job.retry_count + 1} of {data.fail_times})"
        if data.error == "crash":
            raise RuntimeError(message)
        raise _ERRORS[data.error](message)
    state: dict[str, Any] = {"stage": 1, "unit": 0, "digest": ""}
    resumed_from: str | None = None
    point = ctx.resume_point()
    if point is not None:
        state = dict(point.data)
        resumed_from = f"{point.stage}#{state['unit']}"
    executed: list[str] = []
    for stage in ctx.stages[state["stage"] - 1 :]:
        index = int(stage.name.split("-")[1])
        ctx.stage(stage.name)
        start_unit = state["unit"] if index == state["stage"] else 0
        for unit in range(start_unit, data.units):
            if data.sleep_ms:
                time.sleep(data.sleep_ms / 1000)
            label = f"{stage.name}#{unit + 1}"
            executed.append(label)
            state = {
                "stage": index if unit + 1 < data.units else index + 1,
                "unit": unit + 1 if unit + 1 < data.units else 0,
                "digest": hashlib.sha256((state["digest"] + label).encode()).hexdigest(),
            }
            ctx.progress(
                fraction=(unit + 1) / data.units,
                details=f"Unit {unit + 1} of {data.units}",
                unit=unit + 1,
                units=data.units,
            )
            ctx.checkpoint(stage.name, state)
            if failing and len(executed) == data.fail_after_units:
                message = f"noop failing on purpose after {len(executed)} unit(s)"
                raise (
                    RuntimeError(message) if data.error == "crash" else _ERRORS[data.error](message)
                )
    return {
        "units_total": data.stages * data.units,
        "digest": state["digest"],
        "executed": executed,
        "resumed_from": resumed_from,
    }
