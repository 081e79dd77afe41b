"""Download a URL with httpx: timeouts, redirects, a streamed size limit, typed errors,
and no way to turn it inward (SSRF).

Each hop's host name is resolved once; every address it resolves to must be public (not
loopback, private, link-local, multicast, reserved or unspecified, also in their IPv6 and
IPv4-mapped forms); the connection goes to the address that was checked (the ``Host``
header and TLS server name stay the host name), and redirects are followed by hand so each
new location is checked the same way. ``allow_private=True``
(``RHIZOME_FETCH_ALLOW_PRIVATE=1``) lifts the address check for those who need it.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from rhizome.errors import InvalidInputError, TransientError

from .base import human_size

USER_AGENT = "Mozilla/5.0 (compatible; Rhizome/0.1; +https://github.com/rhizome)"
_ACCEPT = (
    "text/html,application/xhtml+xml,application/pdf,application/epub+zip,"
    "text/markdown,text/plain;q=0.9,*/*;q=0.5"
)
_RETRY_HINT = "This is usually temporary; the job retries automatically."


def _status_error(status: int, reason: str, url: str) -> Exception:
    what = f"HTTP {status}" + (f" {reason}" if reason else "")
    if status == 429 or status >= 500:
        return TransientError(f"The server answered {what} for {url}.", _RETRY_HINT)
    if status in (401, 402, 403, 407, 451):
        return InvalidInputError(
            f"The server refused access ({what}) to {url}; the page may need a login or "
            "block automated downloads.",
            "Open the page in your browser, save it (or print it to PDF) and add that file.",
        )
    if status in (404, 410):
        return InvalidInputError(
            f"The page was not found ({what}): {url}.",
            "Check the address for typos, or look for the page's new location.",
        )
    return InvalidInputError(
        f"The server rejected the request ({what}) for {url}.",
        "Check the address, or save the page in your browser and add the file.",
    )


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress, int], str | None]
"""``policy(address, port)`` → why the address may not be fetched, or None."""
MAX_REDIRECTS = 10


def address_problem(address: IPAddress, port: int = 0) -> str | None:
    """Why ``address`` must not be fetched from (None: it is a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is not None:
            return address_problem(inner, port)
        if address.teredo is not None:
            return "a Teredo tunnel address"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private network address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    for bad, why in checks:
        if bad:
            return why
    return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransientError(
            f"Could not resolve the host name {host} ({exc}).",
            "Check the address and your internet connection; the job retries automatically.",
        ) from None
    out: list[IPAddress] = []
    for info in infos:
        value = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if value not in out:
            out.append(value)
    return out


def _checked_target(url: str, policy: AddressPolicy | None) -> tuple[str, str, str]:
    """``(url to connect to, Host header value, TLS server name)`` for one hop."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError(
            f"Only http:// and https:// addresses can be fetched, not {url!r}.",
            "Enter a web address starting with https://, or upload the file instead.",
        )
    host = parts.hostname
    if not host:
        raise InvalidInputError(
            f"The address {url!r} has no host name.", "Enter a complete web address."
        )
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise InvalidInputError(
            f"The address {url!r} has an invalid port.", "Enter a complete web address."
        ) from None
    host_header = parts.netloc.rsplit("@", 1)[-1]
    if policy is None:
        return url, host_header, host
    addresses = _resolve(host, port)
    if not addresses:
        raise TransientError(f"The host name {host} has no address.", _RETRY_HINT)
    for address in addresses:
        why = policy(address, port)
        if why is not None:
            raise InvalidInputError(
                f"Refusing to fetch {url}: {host} is {why} ({address}).",
                "Only public web addresses can be added. A self-hoster who needs addresses on "
                "their own network can set RHIZOME_FETCH_ALLOW_PRIVATE=1.",
            )
    chosen = addresses[0]
    netloc = f"[{chosen}]:{port}" if chosen.version == 6 else f"{chosen}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header, host


def fetch_url(
    url: str,
    *,
    timeout: float = 20.0,
    max_bytes: int = 20 * 1024 * 1024,
    total_timeout: float | None = None,
    allow_private: bool = False,
    policy: AddressPolicy | None = None,
) -> tuple[bytes, str | None, str]:
    """GET ``url`` and return ``(body, content_type, final_url)``.

    ``timeout`` bounds each network step (connect, each read); ``total_timeout`` (default
    ``5 * timeout``) bounds the whole download, so a server that trickles bytes cannot
    hold a worker forever. Redirects are followed (at most 10).

    Errors: network failures, timeouts, HTTP 429 and 5xx → :class:`TransientError`
    (retried); other 4xx, a non-http(s) scheme, a malformed URL, too many redirects, an
    address that is not public (unless ``allow_private``) and a body over ``max_bytes`` →
    :class:`InvalidInputError`. ``policy`` replaces the address check (tests).
    """
    url = url.strip()
    parts = urlsplit(url)
    if policy is None and not allow_private:
        policy = address_problem
    total = total_timeout if total_timeout is not None else 5 * timeout
    deadline = time.monotonic() + total
    headers = {"User-Agent": USER_AGENT, "Accept": _ACCEPT}
    try:
        with httpx.Client(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            headers=headers,
            trust_env=policy is None,  # a proxy would connect to a name we did not check
        ) as client:
            current = url
            for _hop in range(MAX_REDIRECTS + 1):
                target, host_header, server_name = _checked_target(current, policy)
                request = client.build_request(
                    "GET",
                    target,
                    headers={"Host": host_header},
                    extensions={"sni_hostname": server_name},
                )
                response = client.send(request, stream=True)
                if response.is_redirect and "location" in response.headers:
                    response.close()
                    current = urljoin(current, response.headers["location"])
                    continue
                try:
                    return _read(response, current, max_bytes, deadline, total)
                finally:
                    response.close()
            raise httpx.TooManyRedirects("too many redirects")
    except (InvalidInputError, TransientError):
        raise
    except httpx.TooManyRedirects:
        raise InvalidInputError(
            f"The address {url} redirects too many times (a redirect loop).",
            "Open it in your browser to find the final address, and use that.",
        ) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise InvalidInputError(
            f"The address {url!r} is not a valid web address ({exc}).",
            "Enter a complete web address starting with https://.",
        ) from None
    except httpx.TimeoutException:
        raise TransientError(
            f"The server at {parts.hostname} did not answer within {timeout:g} s.", _RETRY_HINT
        ) from None
    except httpx.ConnectError as exc:
        raise TransientError(
            f"Could not connect to {parts.hostname} ({exc}).",
            "Check the address and your internet connection; the job retries automatically.",
        ) from None
    except httpx.HTTPError as exc:  # protocol errors, resets, decoding trouble
        raise TransientError(
            f"The download of {url} failed ({type(exc).__name__}: {exc}).", _RETRY_HINT
        ) from None


def _read(
    response: httpx.Response, final_url: str, max_bytes: int, deadline: float, total: float
) -> tuple[bytes, str | None, str]:
    """Check the status and read the body of the final response within the limits."""
    if response.status_code >= 400:
        raise _status_error(response.status_code, response.reason_phrase, final_url)
    content_type = response.headers.get("content-type")
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise InvalidInputError(
            f"The download is too large ({human_size(int(declared))}; the limit is "
            f"{human_size(max_bytes)}): {final_url}.",
            "Download the file yourself and upload it, if it is within the upload limit.",
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise InvalidInputError(
                f"The download is larger than the {human_size(max_bytes)} limit: {final_url}.",
                "Download the file yourself and upload it, if it is within the upload limit.",
            )
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise TransientError(
                f"The download of {final_url} took longer than {total:g} s.",
                _RETRY_HINT,
            )
    return b"".join(chunks), content_type, final_url
