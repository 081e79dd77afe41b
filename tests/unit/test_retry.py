"""Error classification and the retry/backoff policy (DESIGN §7)."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rhizome.errors import (
    InvalidInputError,
    JobError,
    PaywallError,
    PermanentError,
    TransientError,
)
from rhizome.jobs.model import ErrorType
from rhizome.jobs.retry import GUIDANCE, RetryPolicy, classify, user_message

T, P, W, INV = ErrorType.TRANSIENT, ErrorType.PERMANENT, ErrorType.PAYWALL, ErrorType.INVALID


# --- classify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TransientError("x"), T),
        (PermanentError("x"), P),
        (PaywallError("x"), W),
        (InvalidInputError("x"), INV),
        (JobError("x"), P),
        # the type wins over words in the message
        (TransientError("quota exceeded"), T),
        (PermanentError("connection reset, timed out"), P),
        (InvalidInputError("HTTP 503"), INV),
        (PaywallError("malformed"), W),
    ],
    ids=repr,
)
def test_typed_errors(exc: BaseException, expected: ErrorType) -> None:
    assert classify(exc) is expected


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        TimeoutError("read took too long"),
        ConnectionResetError(104, "Connection reset by peer"),
        ConnectionRefusedError(),
        BrokenPipeError(),
        socket.gaierror(-2, "Name or service not known"),
        OSError(110, "timed out"),
    ],
    ids=repr,
)
def test_transient_types(exc: BaseException) -> None:
    assert classify(exc) is T


@pytest.mark.parametrize(
    "message",
    [
        "HTTP 429 Too Many Requests",
        "server said 503 Service Unavailable",
        "HTTP 502 Bad Gateway",
        "upstream 504",
        "connection reset by peer",
        "Connection refused",
        "the request timed out",
        "read timeout",
        "service temporarily unavailable, try again",
        "rate limit reached",
    ],
)
def test_transient_messages(message: str) -> None:
    assert classify(RuntimeError(message)) is T


@pytest.mark.parametrize(
    "message",
    [
        "quota exceeded",
        "insufficient credits",
        "billing account is disabled",
        "HTTP 402 Payment Required",
        "Quota Exceeded for model",
    ],
)
def test_paywall_messages(message: str) -> None:
    assert classify(RuntimeError(message)) is W


def test_paywall_wins_over_transient_words() -> None:
    # "429: quota exceeded" is a paid limit, not a blip: retrying will not help
    assert classify(RuntimeError("HTTP 429: quota exceeded")) is W


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        KeyError("title"),
        FileNotFoundError(2, "No such file or directory", "/tmp/x.pdf"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        RuntimeError("malformed JSON in import"),
        RuntimeError("parse error at line 3"),
        RuntimeError("error while parsing the EPUB"),
        RuntimeError("document not found"),
        RuntimeError("PDF is encrypted"),
        RuntimeError("corrupt archive"),
        RuntimeError("unsupported file type"),
    ],
    ids=repr,
)
def test_invalid(exc: BaseException) -> None:
    assert classify(exc) is INV


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("boom"), Exception("something odd"), ZeroDivisionError("division by zero")],
    ids=repr,
)
def test_permanent_by_default(exc: BaseException) -> None:
    assert classify(exc) is P


@given(st.text(max_size=60))
def test_classify_never_raises(message: str) -> None:
    assert classify(RuntimeError(message)) in set(ErrorType)


# --- user_message ----------------------------------------------------------------------------


@pytest.mark.parametrize("error_type", list(ErrorType))
def test_user_message_has_guidance(error_type: ErrorType) -> None:
    text = user_message(RuntimeError("boom"), error_type)
    assert text.startswith("RuntimeError: boom.")
    assert GUIDANCE[error_type] in text


def test_every_error_type_has_guidance() -> None:
    assert set(GUIDANCE) == set(ErrorType)
    assert all(len(g) > 30 for g in GUIDANCE.values())


@pytest.mark.parametrize("cls", [TransientError, PermanentError, PaywallError, InvalidInputError])
def test_user_message_of_rhizome_errors_uses_their_hint(cls: type[JobError]) -> None:
    exc = cls("The service said no.")
    text = user_message(exc, classify(exc))
    assert text.startswith("The service said no.")
    assert cls.default_hint and cls.default_hint in text
    custom = cls("Bad page.", "Re-upload the file.")
    assert user_message(custom, classify(custom)) == "Bad page. Re-upload the file."


# --- RetryPolicy -----------------------------------------------------------------------------


def no_jitter() -> float:
    return 0.5


def test_delay_doubles_from_one_minute_and_caps_at_thirty() -> None:
    policy = RetryPolicy()
    got = [policy.delay(n, rand=no_jitter) for n in range(1, 10)]
    assert got == [60, 120, 240, 480, 960, 1800, 1800, 1800, 1800]


def test_delay_of_retry_zero_is_the_base() -> None:
    assert RetryPolicy().delay(0, rand=no_jitter) == 60


def test_jitter_bounds() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, rand=lambda: 0.0) == pytest.approx(54.0)
    assert policy.delay(1, rand=lambda: 1.0) == pytest.approx(66.0)
    assert policy.delay(3, rand=lambda: 0.0) == pytest.approx(216.0)
    # at the cap the jitter may only spread the delay, never shrink it below 90 %
    assert 1620.0 <= policy.delay(20, rand=lambda: 0.0) <= 1800.0
    assert 1800.0 <= policy.delay(20, rand=lambda: 1.0) <= 1980.0 + 1e-9
    assert RetryPolicy(jitter=0).delay(2, rand=lambda: 0.0) == 120


def test_custom_policy() -> None:
    policy = RetryPolicy(base_seconds=1, factor=3, cap_seconds=20, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 3, 9, 20]


def test_default_rand_is_random_within_bounds() -> None:
    policy = RetryPolicy()
    seen = {policy.delay(2) for _ in range(50)}
    assert all(108 <= d <= 132 for d in seen)
    assert len(seen) > 1  # there is jitter


@given(
    n=st.integers(min_value=1, max_value=60),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_delay_properties(n: int, r: float) -> None:
    policy = RetryPolicy()
    d = policy.delay(n, rand=lambda: r)
    plain = min(60 * 2 ** (n - 1), 1800)
    assert 0.9 * plain - 1e-9 <= d <= 1.1 * plain + 1e-9
    assert policy.delay(n + 1, rand=lambda: r) >= d  # never shrinks for the same draw


@pytest.mark.parametrize(
    ("error_type", "retry_count", "max_retries", "expected"),
    [
        (T, 0, 3, True),
        (T, 2, 3, True),
        (T, 3, 3, False),
        (T, 4, 3, False),
        (T, 0, 0, False),
        (P, 0, 3, False),
        (W, 0, 3, False),
        (INV, 0, 3, False),
    ],
)
def test_should_retry(
    error_type: ErrorType, retry_count: int, max_retries: int, expected: bool
) -> None:
    assert RetryPolicy().should_retry(error_type, retry_count, max_retries) is expected
