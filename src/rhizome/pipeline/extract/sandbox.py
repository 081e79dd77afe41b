"""Extraction in a child process with hard limits, so a hostile file can only kill its
child, never the worker.

:func:`extract_isolated` runs :func:`rhizome.pipeline.extract.extract` in a fresh child
interpreter (``python -m rhizome.pipeline.extract.sandbox``; the request goes in on stdin,
progress and the result come back as length-prefixed JSON on stdout) with ``RLIMIT_AS``
(address space) and ``RLIMIT_CPU`` set, relays its progress, and turns every
way it can die into :class:`~rhizome.errors.InvalidInputError` with a message that names
the limit and the setting that raises it: out of memory, out of CPU time, over the wall
time, too deeply nested, or killed by the kernel. The parent's ``progress`` callback may
raise (a cancelled job): the child is then killed at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import IO, Any, BinaryIO

from rhizome.errors import InvalidInputError, RhizomeError

from .base import Extracted, ProgressFn, human_size


@dataclass(frozen=True)
class ExtractLimits:
    """Hard limits of one extraction (the job type's memory limit, settings
    ``RHIZOME_EXTRACT_CPU_SECONDS`` and ``RHIZOME_EXTRACT_TIMEOUT_SECONDS``)."""

    memory_bytes: int = 2048 * 1024 * 1024
    cpu_seconds: int = 300
    wall_seconds: float = 600.0


def extract_isolated(
    data: bytes,
    *,
    limits: ExtractLimits = ExtractLimits(),
    progress: ProgressFn | None = None,
    **kwargs: Any,
) -> Extracted:
    """``extract(data, **kwargs)`` in a child process under ``limits``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rhizome.pipeline.extract.sandbox"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.stdin is not None and proc.stdout is not None
    request = pickle.dumps((data, kwargs, asdict(limits)), protocol=pickle.HIGHEST_PROTOCOL)
    feeder = threading.Thread(target=_feed, args=(proc.stdin, request), daemon=True)
    feeder.start()
    deadline = time.monotonic() + limits.wall_seconds
    frames = _Frames(proc.stdout)
    try:
        while True:
            message = frames.next(timeout=0.2)
            if message is None:
                if frames.closed:
                    break  # the child died; see its exit code below
            elif message[0] == "progress":
                if progress is not None:
                    progress(int(message[1]), int(message[2]))
            elif message[0] == "ok":
                return Extracted(**message[1])
            elif message[0] == "error":
                raise _rebuild(str(message[1]), str(message[2]), str(message[3]), limits)
            if time.monotonic() > deadline:
                raise InvalidInputError(
                    f"Reading this file took longer than {limits.wall_seconds:.0f} seconds; "
                    "it was stopped.",
                    "If the file is genuine, raise RHIZOME_EXTRACT_TIMEOUT_SECONDS; otherwise "
                    "it may be built to exhaust the reader (a decompression bomb).",
                )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        feeder.join(timeout=5)
    raise _death(proc.returncode, limits)


def _feed(pipe: BinaryIO, payload: bytes) -> None:
    with contextlib.suppress(OSError):
        pipe.write(struct.pack("!Q", len(payload)))
        pipe.write(payload)
    with contextlib.suppress(OSError):
        pipe.close()


class _Frames:
    """Length-prefixed JSON messages read from the child's stdout without blocking."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.fd = pipe.fileno()
        self.buffer = bytearray()
        self.closed = False

    def _take(self) -> Any:
        if len(self.buffer) < 8:
            return None
        (size,) = struct.unpack("!Q", self.buffer[:8])
        if len(self.buffer) < 8 + size:
            return None
        body = bytes(self.buffer[8 : 8 + size])
        del self.buffer[: 8 + size]
        return json.loads(body)

    def next(self, timeout: float) -> Any:
        message = self._take()
        if message is not None or self.closed:
            return message
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                self.closed = True
            self.buffer.extend(chunk)
        return self._take()


def _death(code: int | None, limits: ExtractLimits) -> InvalidInputError:
    if code in (3, -signal.SIGXCPU):
        return _cpu_error(limits)
    return InvalidInputError(
        f"Reading this file needs more than {human_size(limits.memory_bytes)} of memory "
        f"(the reader process ended with code {code}).",
        "If the file is genuine, raise the job type's memory limit "
        "(RHIZOME_JOB_MEMORY_LIMITS='{\"process_document\": MB}'); otherwise it may be a "
        "decompression bomb.",
    )


def _cpu_error(limits: ExtractLimits) -> InvalidInputError:
    return InvalidInputError(
        f"Reading this file needs more than {limits.cpu_seconds} seconds of CPU time.",
        "If the file is genuine, raise RHIZOME_EXTRACT_CPU_SECONDS; otherwise it may be "
        "built to exhaust the reader.",
    )


def _rebuild(kind: str, message: str, hint: str, limits: ExtractLimits) -> RhizomeError:
    if kind == "memory":
        return _death(None, limits)
    if kind == "cpu":
        return _cpu_error(limits)
    if kind == "recursion":
        return InvalidInputError(
            "The file is nested too deeply to read (thousands of elements inside each other).",
            "Save it again from its original program; files like this are usually built to "
            "crash readers.",
        )
    if kind == "invalid":
        return InvalidInputError(message, hint or None)
    from rhizome import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, RhizomeError):
        return cls(message, hint or None)
    return InvalidInputError(
        f"The file could not be read: {message}",
        "Check that it opens in its usual program; save or export it again, then add it.",
    )


def _send(out: BinaryIO, message: Any) -> None:
    body = json.dumps(message, default=str).encode()
    out.write(struct.pack("!Q", len(body)) + body)
    out.flush()


def _child_main() -> None:
    """In the child: read the request, set the limits, extract; one message per outcome."""
    out = sys.stdout.buffer
    (size,) = struct.unpack("!Q", sys.stdin.buffer.read(8))
    data, kwargs, raw_limits = pickle.loads(sys.stdin.buffer.read(size))
    limits = ExtractLimits(**raw_limits)
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))

    def on_cpu(signum: int, frame: Any) -> None:
        with contextlib.suppress(Exception):
            _send(out, ["error", "cpu", "", ""])
        os._exit(3)

    signal.signal(signal.SIGXCPU, on_cpu)
    from rhizome.pipeline.extract import extract

    def relay(done: int, total: int) -> None:
        _send(out, ["progress", done, total])

    try:
        result = extract(data, progress=relay, **kwargs)
        del data
        _send(out, ["ok", asdict(result)])
    except MemoryError:
        _send(out, ["error", "memory", "", ""])
    except RecursionError:
        _send(out, ["error", "recursion", "", ""])
    except InvalidInputError as exc:
        _send(out, ["error", "invalid", exc.message, exc.hint])
    except RhizomeError as exc:
        _send(out, ["error", type(exc).__name__, exc.message, exc.hint])
    except Exception as exc:
        _send(out, ["error", "other", f"{type(exc).__name__}: {exc}"[:2000], ""])


if __name__ == "__main__":
    _child_main()
