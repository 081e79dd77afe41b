"""One exception hierarchy for the whole product.

Every error carries ``message`` (what happened, in words a user understands) and ``hint``
(what to do about it). The CLI and the HTTP API show both and never a traceback.
"""

from __future__ import annotations


class RhizomeError(Exception):
    """Base of every error Rhizome raises on purpose."""

    default_hint = ""
    error_type: str | None = None
    """The job error class (``transient|permanent|paywall|invalid``) when a job fails with
    this error; None: classified by the rules in :mod:`rhizome.jobs.retry`."""
    infrastructure: bool = False
    """The database or the storage failed, not the job: a worker never fails a job for
    it, but records nothing until the database is back, or sets the job aside for a while
    and lets it continue from its last checkpoint (see :mod:`rhizome.jobs.worker`)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


# --- configuration and infrastructure -------------------------------------------------


class ConfigError(RhizomeError):
    default_hint = "Check the RHIZOME_* environment variables (see README, Configuration)."


class DatabaseUnavailableError(RhizomeError):
    """The database cannot be reached, or refused to answer in time (connection lost,
    server restarting, SQLite locked past its busy timeout)."""

    infrastructure = True
    error_type = "transient"
    default_hint = (
        "Check that the database server is running and that RHIZOME_DATABASE_URL points to it."
    )


class StorageError(RhizomeError):
    """The storage could not read or write (unreachable, full, refused)."""

    infrastructure = True
    error_type = "transient"
    default_hint = "Check RHIZOME_STORAGE_URL and that the storage location is writable."


class InvalidKeyError(StorageError):
    infrastructure = False
    error_type = "invalid"
    default_hint = "Storage keys are relative paths without '..' segments."


# --- job records -----------------------------------------------------------------------


class NotFoundError(RhizomeError):
    """An id or key that names nothing the user owns. A job given one fails ``invalid``."""

    error_type = "invalid"


class JobNotFoundError(NotFoundError):
    default_hint = "List jobs with `rhizome jobs list` to find a valid id."


class UnauthorizedError(RhizomeError):
    """The request carries no valid credentials (HTTP 401)."""

    default_hint = "Send the API token, or sign in at /login."


class ForbiddenError(RhizomeError):
    """The requester may not do this: a role it lacks, or a job type or input that only
    the server itself may use (HTTP 403)."""

    default_hint = "Ask an admin."


class IllegalTransitionError(RhizomeError):
    default_hint = "Reload the job: its status changed, or this action does not apply to it."


class UnknownJobTypeError(RhizomeError):
    default_hint = "Run `rhizome jobs types` to see the registered job types."


class JobLostError(RhizomeError):
    """The worker no longer owns the job (its lease expired and another worker took it)."""

    default_hint = "Nothing to do: another worker continues the job from its last checkpoint."


# --- errors raised by handlers, with their retry class ---------------------------------


class JobError(RhizomeError):
    """Base of errors a handler raises to fail a job with a known error class."""

    error_type: str | None = "permanent"


class TransientError(JobError):
    error_type = "transient"
    default_hint = "This is usually temporary; the job retries automatically."


class PermanentError(JobError):
    error_type = "permanent"
    default_hint = "Retry the job after fixing the cause, or delete it."


class PaywallError(JobError):
    error_type = "paywall"
    default_hint = "Check the quota, billing or credits of the service, then retry the job."


class TimeLimitError(JobError):
    """A run took longer than its job type's time limit."""

    error_type = "permanent"


class InvalidInputError(JobError):
    error_type = "invalid"
    default_hint = "Fix the input (file, URL or parameters) and submit it again."
