"""Error classification and the retry/backoff policy.

Handlers raise typed errors (:mod:`rhizome.errors`); anything else is classified by
rules on the exception type and message. Each class has a policy: only ``transient``
errors retry automatically, with exponential backoff and jitter.
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from rhizome.errors import RhizomeError
from rhizome.jobs.model import ErrorType

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,  # includes resets, refused, aborted, broken pipe
    socket.gaierror,
)
_TRANSIENT_TEXT = re.compile(
    r"time(d)?\s?out|connection (reset|refused|aborted)|temporar(il)?y|try again|"
    r"\b(http|status|code|error)[\s:/=]*(429|5\d\d)\b|\b(429|502|503|504)\b|"
    r"\b(429|5\d\d)\s+(too many|internal|service|bad gateway|gateway)|"
    r"too many requests|internal server error|service unavailable|bad gateway|"
    r"gateway time-?out|rate.?limit",
    re.IGNORECASE,
)
_PAYWALL_TEXT = re.compile(r"quota|billing|credits?\b|payment|insufficient.?funds|\b402\b", re.I)
_INVALID_TYPES: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    FileNotFoundError,
    UnicodeDecodeError,
)
_INVALID_TEXT = re.compile(
    r"invalid|malformed|pars(e|ing)|not found|no such file|unsupported|corrupt|"
    r"validation|encrypted|password",
    re.IGNORECASE,
)

GUIDANCE: dict[ErrorType, str] = {
    ErrorType.TRANSIENT: "A temporary problem (network or service); the job retries "
    "automatically. If it keeps failing, check your connection and retry it later.",
    ErrorType.PAYWALL: "A paid service refused the request (quota, billing or credits). "
    "Top up or raise the limit, then retry the job.",
    ErrorType.INVALID: "The input could not be used. Check the file, URL or parameters, "
    "fix them and submit the job again.",
    ErrorType.PERMANENT: "The job failed and will not retry by itself. Look at the technical "
    "error, fix the cause, then retry or delete the job.",
}


def classify(exc: BaseException) -> ErrorType:
    """The error class of any exception."""
    if isinstance(exc, RhizomeError) and exc.error_type is not None:
        return ErrorType(exc.error_type)
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _TRANSIENT_TYPES):
        return ErrorType.TRANSIENT
    if _PAYWALL_TEXT.search(text):
        return ErrorType.PAYWALL
    if _TRANSIENT_TEXT.search(text):
        return ErrorType.TRANSIENT
    if isinstance(exc, _INVALID_TYPES) or _INVALID_TEXT.search(text):
        return ErrorType.INVALID
    return ErrorType.PERMANENT


RETRIES_USED_UP = (
    "The automatic retries are used up: check your connection or the service, then retry "
    "the job (it continues from its last checkpoint)."
)


def user_message(
    exc: BaseException, error_type: ErrorType, *, will_retry: bool | None = None
) -> str:
    """What the user reads: what happened, then what to do. ``will_retry`` False: a
    temporary problem that will not be retried again (its retries are used up) says so,
    instead of promising an automatic retry."""
    if will_retry is False and error_type is ErrorType.TRANSIENT:
        what = exc.message if isinstance(exc, RhizomeError) else f"{type(exc).__name__}: {exc}."
        return f"{what.strip()} {RETRIES_USED_UP}"
    if isinstance(exc, RhizomeError):
        return f"{exc.message} {exc.hint}".strip()
    return f"{type(exc).__name__}: {exc}. {GUIDANCE[error_type]}"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: base, base*factor, ... capped at ``cap`` seconds."""

    base_seconds: float = 60.0
    factor: float = 2.0
    cap_seconds: float = 1800.0
    jitter: float = 0.1
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""

    def delay(self, retry_number: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        exponent = min(max(retry_number - 1, 0), 64)  # no overflow for huge max_retries
        raw = self.base_seconds * self.factor**exponent
        spread = 1.0 + self.jitter * (2.0 * rand() - 1.0)
        return max(0.0, min(raw * spread, self.cap_seconds))

    def should_retry(self, error_type: ErrorType, retry_count: int, max_retries: int) -> bool:
        return error_type is ErrorType.TRANSIENT and retry_count < max_retries
