"""A minimal Server-Sent Events client for tests and benchmarks (a reader thread fills a
queue with (event, data, received_at))."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Message:
    event: str
    data: Any
    received: float  # time.time()
    id: str | None = None


class SSEClient:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.messages: queue.Queue[Message | None] = queue.Queue()
        self.closed = threading.Event()
        self.status: int | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError(f"could not connect to {url}")

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self.url, headers=self.headers) as response:
                self.status = response.status_code
                self._ready.set()
                event, data, ident = "message", [], None
                for line in response.iter_lines():
                    if self.closed.is_set():
                        break
                    if line == "":
                        if data:
                            text = "\n".join(data)
                            try:
                                payload: Any = json.loads(text)
                            except ValueError:
                                payload = text
                            self.messages.put(Message(event, payload, time.time(), ident))
                        event, data, ident = "message", [], None
                    elif line.startswith(":"):
                        continue
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            event = value
                        elif name == "data":
                            data.append(value)
                        elif name == "id":
                            ident = value
        except (httpx.HTTPError, OSError):
            pass
        finally:
            self._ready.set()
            self.messages.put(None)  # the stream ended

    def next(self, timeout: float = 15.0) -> Message | None:
        """The next message; None when the stream ended (raises on timeout)."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SSE message within {timeout}s") from None

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 15.0) -> Message:
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching SSE message in {timeout}s; saw {seen}")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                raise AssertionError(f"no matching SSE message in {timeout}s; saw {seen}") from None
            if message is None:
                raise AssertionError(f"the stream ended; saw {seen}")
            seen.append(f"{message.event}:{str(message.data)[:300]}")
            if predicate(message):
                return message

    def drain(self, seconds: float) -> list[Message]:
        out: list[Message] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if message is None:
                break
            out.append(message)
        return out

    def close(self) -> None:
        """Stop reading (the reader thread ends with the next line or the server)."""
        self.closed.set()
        self._thread.join(timeout=0.05)

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
