"""The job system core. It knows nothing about documents.

Public Python API::

    from rhizome.jobs import JobType, Stage, JobContext, registry
    from rhizome.jobs.store import open_store
    from rhizome.jobs.worker import Worker
"""

from rhizome.errors import (
    IllegalTransitionError,
    InvalidInputError,
    JobNotFoundError,
    PaywallError,
    PermanentError,
    RhizomeError,
    TransientError,
    UnknownJobTypeError,
)
from rhizome.jobs.context import JobContext
from rhizome.jobs.model import ErrorType, Job, JobEvent, JobStatus, NewJob
from rhizome.jobs.registry import JobType, Stage, registry

__all__ = [
    "ErrorType",
    "IllegalTransitionError",
    "InvalidInputError",
    "Job",
    "JobContext",
    "JobEvent",
    "JobNotFoundError",
    "JobStatus",
    "JobType",
    "NewJob",
    "PaywallError",
    "PermanentError",
    "RhizomeError",
    "Stage",
    "TransientError",
    "UnknownJobTypeError",
    "registry",
]
