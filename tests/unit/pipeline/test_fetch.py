"""fetch_url() against a real local HTTP server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rhizome.errors import InvalidInputError, TransientError
from rhizome.pipeline.extract import fetch_url as _fetch_url
from rhizome.pipeline.extract.fetch import address_problem

PAGE = b"<html><head><title>Hello</title></head><body><p>Hello there.</p></body></html>"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        if path == "/ok":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/to/"):  # /to/<url>: a redirect anywhere
            self.send_response(302)
            self.send_header("Location", path[len("/to/") :])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"nope")
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, PAGE)
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                for _ in range(50):
                    self.wfile.write(b"x" * 10)
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        elif path == "/big-declared":
            self._send(200, b"y" * 5000, "application/pdf")
        elif path == "/big-streamed":  # no Content-Length: the limit applies while reading
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"z" * 1000)
            except OSError:
                pass
        else:
            self._send(404, b"missing")


def fetch_url(url: str, **kwargs: object) -> tuple[bytes, str | None, str]:
    """The loopback test server needs the address check lifted (tested below)."""
    return _fetch_url(url, allow_private=True, **kwargs)  # type: ignore[arg-type]


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on purpose (size limit, timeouts) are expected here


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_ok(server: str) -> None:
    body, content_type, final_url = fetch_url(f"{server}/ok")
    assert body == PAGE
    assert content_type == "text/html; charset=utf-8"
    assert final_url == f"{server}/ok"


def test_redirect_followed(server: str) -> None:
    body, _, final_url = fetch_url(f"{server}/redirect")
    assert body == PAGE and final_url == f"{server}/ok"


@pytest.mark.parametrize("status", [404, 403, 410, 400])
def test_client_errors_are_invalid(server: str, status: int) -> None:
    with pytest.raises(InvalidInputError) as info:
        fetch_url(f"{server}/status/{status}")
    assert f"HTTP {status}" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_transient(server: str, status: int) -> None:
    with pytest.raises(TransientError) as info:
        fetch_url(f"{server}/status/{status}")
    assert f"HTTP {status}" in info.value.message


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError) as info:
        fetch_url(f"http://127.0.0.1:{port}/", timeout=2)
    assert "connect" in info.value.message.lower()


def test_slow_server_times_out(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        fetch_url(f"{server}/slow", timeout=0.3)
    assert time.monotonic() - started < 1.4
    assert "did not answer" in info.value.message


def test_trickling_server_hits_total_deadline(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        fetch_url(f"{server}/trickle", timeout=1, total_timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert "took longer" in info.value.message


def test_declared_body_over_limit(server: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        fetch_url(f"{server}/big-declared", max_bytes=1000)
    assert "too large" in info.value.message


def test_streamed_body_over_limit(server: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        fetch_url(f"{server}/big-streamed", max_bytes=10_000)
    assert "larger than" in info.value.message


def test_redirect_loop_is_invalid(server: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        fetch_url(f"{server}/loop")
    assert "redirect" in info.value.message


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "file:///etc/passwd", "javascript:alert(1)", "example.org"]
)
def test_non_http_schemes_are_invalid(url: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        fetch_url(url)
    assert "http" in info.value.message


def test_missing_host_is_invalid() -> None:
    with pytest.raises(InvalidInputError):
        fetch_url("http:///path")


# --- SSRF: the fetcher cannot be turned inward ---------------------------------------------


def _port(server: str) -> int:
    return int(server.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "localhost", "127.1", "[::]"]
)
def test_loopback_addresses_are_refused_by_default(server: str, host: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        _fetch_url(f"http://{host}:{_port(server)}/ok")
    assert "Refusing to fetch" in info.value.message
    assert "RHIZOME_FETCH_ALLOW_PRIVATE" in info.value.hint


def _only_the_test_server(server: str):  # type: ignore[no-untyped-def]
    port = _port(server)

    def policy(address, p):  # type: ignore[no-untyped-def]
        if str(address) == "127.0.0.1" and p == port:
            return None
        return address_problem(address, p)

    return policy


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{other}/ok",
        "http://[::1]:{port}/ok",
        "http://[::ffff:127.0.0.1]:{port}/ok",
        "http://localhost:{other}/ok",
    ],
)
def test_redirects_to_loopback_are_refused(server: str, target: str) -> None:
    """The first hop (the test server itself) is allowed by the test's policy; where it
    redirects is checked again with the default rules and refused before any connection."""
    port = _port(server)
    policy = _only_the_test_server(server)
    body, _, _ = _fetch_url(f"{server}/ok", policy=policy)  # the allowed hop works
    assert body == PAGE
    location = target.format(port=port, other=port + 1)
    with pytest.raises(InvalidInputError) as info:
        _fetch_url(f"{server}/to/{location}", policy=policy)
    assert "Refusing to fetch" in info.value.message


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "public"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "address"),
        ("240.0.0.1", "address"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ],
)
def test_address_check_refuses_non_public_ranges(address: str, why: str) -> None:
    """Only the check itself: no connection is opened to these ranges."""
    import ipaddress

    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and why in problem


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700::1111"])
def test_address_check_accepts_public_addresses(address: str) -> None:
    import ipaddress

    assert address_problem(ipaddress.ip_address(address)) is None
