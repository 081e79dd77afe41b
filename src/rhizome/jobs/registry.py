"""Job types: name, display label, icon, stages (percent ranges, pause-safe) and handler.

A job type is declared once, next to its handler::

    class Input(BaseModel):
        path: str

    @registry.job_type(
        "my_job", label="My job", icon="zap", input_model=Input,
        stages=[Stage("load", "Loading", 0, 40),
                Stage("save", "Saving", 40, 100, pause_safe=False)],
    )
    def my_job(ctx: JobContext, data: Input) -> dict[str, Any]:
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from rhizome.errors import InvalidInputError, UnknownJobTypeError

if TYPE_CHECKING:
    from rhizome.jobs.context import JobContext


@dataclass(frozen=True)
class Stage:
    """One stage of a job type. ``start``/``end`` are the job's percent range in it."""

    name: str
    label: str
    start: float
    end: float
    pause_safe: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= 100:
            raise ValueError(f"stage {self.name}: need 0 <= start <= end <= 100")

    def percent(self, fraction: float) -> float:
        """The job's overall percent at ``fraction`` (0..1) of this stage."""
        fraction = min(max(fraction, 0.0), 1.0)
        return round(self.start + (self.end - self.start) * fraction, 2)


Handler = Callable[["JobContext", Any], "dict[str, Any] | None"]
StagesFor = Callable[[Any], Sequence[Stage]]


class _EmptyInput(BaseModel):
    model_config = {"extra": "forbid"}


HOUR = 3600.0
DEFAULT_TIME_LIMIT_SECONDS = 4 * HOUR
"""A run of a job type that declares no time limit of its own stops after four hours."""


@dataclass(frozen=True)
class JobType:
    name: str
    label: str
    icon: str
    handler: Handler
    stages: Sequence[Stage] | StagesFor = ()
    input_model: type[BaseModel] = _EmptyInput
    hidden: bool = False
    """Hidden types (``noop``) are left out of the UI's default views."""
    description: str = ""
    max_retries: int = 3
    extra: dict[str, Any] = field(default_factory=dict)
    public: bool = True
    """Whether users may enqueue it through the HTTP API (``POST /api/jobs``). Types whose
    input names things only the server may choose (a storage key, say) are internal: the
    server enqueues them itself (an upload, an import)."""
    time_limit_seconds: float | None = DEFAULT_TIME_LIMIT_SECONDS
    """The longest one run of this type may take (None: no limit); the setting
    ``job_time_limits`` overrides it per type. Checked at every safe point and progress
    write: past it the job stops there and fails as permanent, and a retry continues from
    its last checkpoint."""
    memory_limit_mb: int | None = None
    """The address-space limit (MB) of the child process in which a run of this type reads
    untrusted input, for types that start one (``process_document``: extraction); None:
    the type starts none, it runs in the worker's threads, bounded by its input caps. The
    setting ``job_memory_limits`` overrides it per type (:attr:`JobContext.memory_limit_mb`
    is the limit in force)."""
    owned: Mapping[str, str] = field(default_factory=dict)
    """Input fields that name something the requesting user must own, and what they name:
    ``{"document_id": "document", "document_ids": "document"}`` (a list: each item). The
    API checks them before it enqueues (kinds: ``document``, ``job``, ``chunk``,
    ``highlight``, ``connection``, ``storage_key``); the handler checks again."""

    def validate_input(self, data: Any) -> BaseModel:
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"Input for {self.name} must be a JSON object, got {type(data).__name__}.",
            )
        try:
            return self.input_model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
                for err in exc.errors()
            )
            raise InvalidInputError(
                f"Invalid input for job type {self.name}: {problems}.",
                "Fix the listed fields and enqueue the job again.",
            ) from None

    def stages_for(self, data: BaseModel) -> tuple[Stage, ...]:
        stages = self.stages(data) if callable(self.stages) else self.stages
        return tuple(stages)

    def limits(
        self, time_limits: Mapping[str, float], memory_limits: Mapping[str, int]
    ) -> tuple[float | None, int | None]:
        """The time and memory limits in force: the settings' overrides for this type
        (``job_time_limits``, ``job_memory_limits``), else the type's own."""
        return (
            time_limits.get(self.name, self.time_limit_seconds),
            memory_limits.get(self.name, self.memory_limit_mb),
        )

    def describe(self) -> dict[str, Any]:
        static = None if callable(self.stages) else [s.__dict__ for s in self.stages]
        return {
            "name": self.name,
            "label": self.label,
            "icon": self.icon,
            "hidden": self.hidden,
            "public": self.public,
            "description": self.description,
            "stages": static,
            "input_schema": self.input_model.model_json_schema(),
            "time_limit_seconds": self.time_limit_seconds,
            "memory_limit_mb": self.memory_limit_mb,
        }


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job_type: JobType) -> JobType:
        existing = self._types.get(job_type.name)
        if existing is not None and existing.handler is not job_type.handler:
            raise ValueError(f"job type {job_type.name!r} is already registered")
        self._types[job_type.name] = job_type
        return job_type

    def job_type(
        self,
        name: str,
        *,
        label: str,
        icon: str,
        stages: Sequence[Stage] | StagesFor = (),
        input_model: type[BaseModel] = _EmptyInput,
        hidden: bool = False,
        description: str = "",
        max_retries: int = 3,
        public: bool = True,
        owned: Mapping[str, str] | None = None,
        time_limit_seconds: float | None = DEFAULT_TIME_LIMIT_SECONDS,
        memory_limit_mb: int | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def wrap(handler: Handler) -> Handler:
            self.register(
                JobType(
                    name=name,
                    label=label,
                    icon=icon,
                    handler=handler,
                    stages=stages,
                    input_model=input_model,
                    hidden=hidden,
                    description=description or (handler.__doc__ or "").strip(),
                    max_retries=max_retries,
                    public=public,
                    owned=dict(owned or {}),
                    time_limit_seconds=time_limit_seconds,
                    memory_limit_mb=memory_limit_mb,
                )
            )
            return handler

        return wrap

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownJobTypeError(
                f"Unknown job type {name!r}. Registered types: {known}.",
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def all(self) -> list[JobType]:
        return [self._types[n] for n in sorted(self._types)]


registry = Registry()
"""The process-wide registry; ``rhizome.handlers`` registers the built-in types in it."""
