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
from rhizome.jobs.registry import HOUR, Stage, registry


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
    log_units: bool = False
    """Log a line (``ctx.log.info``) after each unit: it shows in the job's log."""


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
    time_limit_seconds=HOUR,  # tests and benchmarks
)
def noop(ctx: JobContext, data: NoopInput) -> dict[str, Any]:
    """Sleeps through its stages; for tests, benchmarks and health checks."""
    failing = ctx.job.retry_count < data.fail_times
    if failing and not data.fail_after_units:
        raise _failure(
            data, f"noop failing on purpose ({ctx.job.retry_count + 1} of {data.fail_times})"
        )
    executed: list[str] = []

    def run(stage: Stage, digest: str) -> str:
        cursor = ctx.cursor("unit", start={"unit": 0, "digest": digest})
        unit, digest = cursor.value["unit"], cursor.value["digest"]
        while unit < data.units:
            if data.sleep_ms:
                time.sleep(data.sleep_ms / 1000)
            label = f"{stage.name}#{unit + 1}"
            executed.append(label)
            digest = hashlib.sha256((digest + label).encode()).hexdigest()
            unit += 1
            ctx.progress(
                fraction=unit / data.units,
                details=f"Unit {unit} of {data.units}",
                unit=unit,
                units=data.units,
            )
            if data.log_units:
                ctx.log.info("%s: unit %d of %d done", stage.label, unit, data.units)
            cursor.save({"unit": unit, "digest": digest})
            if failing and len(executed) == data.fail_after_units:
                raise _failure(data, f"noop failing on purpose after {len(executed)} unit(s)")
        return digest

    digest = ""
    for stage in ctx.stages:
        digest = ctx.run_stage(stage.name, run, stage, digest)
    point = ctx.resumed_from
    return {
        "units_total": data.stages * data.units,
        "digest": digest,
        "executed": executed,
        "resumed_from": point.stage if point is not None else None,
    }


def _failure(data: NoopInput, message: str) -> Exception:
    return RuntimeError(message) if data.error == "crash" else _ERRORS[data.error](message)
