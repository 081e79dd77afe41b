"""Download a URL with httpx: timeouts, redirects, a streamed size limit, typed errors."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

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


def fetch_url(
    url: str,
    *,
    timeout: float = 20.0,
    max_bytes: int = 20 * 1024 * 1024,
    total_timeout: float | None = None,
) -> tuple[bytes, str | None, str]:
    """GET ``url`` and return ``(body, content_type, final_url)``.

    ``timeout`` bounds each network step (connect, each read); ``total_timeout`` (default
    ``5 * timeout``) bounds the whole download, so a server that trickles bytes cannot
    hold a worker forever. Redirects are followed (at most 10).

    Errors: network failures, timeouts, HTTP 429 and 5xx → :class:`TransientError`
    (retried); other 4xx, a non-http(s) scheme, a malformed URL, too many redirects and a
    body over ``max_bytes`` → :class:`InvalidInputError`.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError(
            f"Only http:// and https:// addresses can be fetched, not {url!r}.",
            "Enter a web address starting with https://, or upload the file instead.",
        )
    if not parts.hostname:
        raise InvalidInputError(
            f"The address {url!r} has no host name.", "Enter a complete web address."
        )
    total = total_timeout if total_timeout is not None else 5 * timeout
    deadline = time.monotonic() + total
    headers = {"User-Agent": USER_AGENT, "Accept": _ACCEPT}
    try:
        with (
            httpx.Client(
                follow_redirects=True,
                max_redirects=10,
                timeout=httpx.Timeout(timeout),
                headers=headers,
            ) as client,
            client.stream("GET", url.strip()) as response,
        ):
            final_url = str(response.url)
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
                        f"The download is larger than the {human_size(max_bytes)} limit: "
                        f"{final_url}.",
                        "Download the file yourself and upload it, if it is within the "
                        "upload limit.",
                    )
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise TransientError(
                        f"The download of {final_url} took longer than {total:g} s.",
                        _RETRY_HINT,
                    )
            return b"".join(chunks), content_type, final_url
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
