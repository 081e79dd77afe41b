"""S3-compatible object storage on :mod:`obstore` (AWS S3, MinIO, SeaweedFS, R2, ...).

Configured with ``RHIZOME_STORAGE_URL=s3://bucket/optional/prefix``. Credentials, region
and endpoint come from the standard AWS environment variables, which obstore reads itself:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``),
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` for servers other than AWS
(path-style requests; plain ``http://`` endpoints are allowed).

Keys are relative to the prefix and checked with :func:`rhizome.storage.validate_key`
before any request. Writes are atomic: an object is written with a single PUT, and S3
makes a PUT visible all at once, so a reader sees the old object or the new one, never a
part of it (there are no temporary objects to clean up).
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store

from rhizome.errors import ConfigError, RhizomeError, StorageError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
_OBSTORE_ERRORS = (ObstoreError, OSError, ValueError)

HINT_GENERAL = (
    "Check AWS_ENDPOINT_URL, the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) "
    "and the bucket name in RHIZOME_STORAGE_URL (s3://bucket/prefix)."
)
HINT_CONNECT = (
    "Check AWS_ENDPOINT_URL (or AWS_REGION for AWS itself) and that the S3 server is "
    "running and reachable from this machine."
)
HINT_CREDENTIALS = (
    "Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: they must be set and valid for this bucket."
)
HINT_BUCKET = (
    "Check the bucket name in RHIZOME_STORAGE_URL (s3://bucket/prefix) and create the bucket "
    "if needed; also check AWS_ENDPOINT_URL."
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``; raises :class:`ConfigError` when the
    URL is not of that form."""
    from rhizome.storage import validate_key

    hint = "Use RHIZOME_STORAGE_URL=s3://bucket or s3://bucket/some/prefix."
    if not url.startswith("s3://") or any(c in url for c in "?#\\ \t\n"):
        raise ConfigError(f"Invalid S3 storage URL {url!r}.", hint)
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"Invalid bucket name {bucket!r} in storage URL {url!r}.", hint)
    prefix = prefix.strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except RhizomeError:
            raise ConfigError(f"Invalid prefix {prefix!r} in storage URL {url!r}.", hint) from None
    return bucket, prefix


def _env_endpoint() -> str | None:
    for name in _ENDPOINT_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return None


class S3Storage:
    """The :class:`rhizome.storage.Storage` protocol on an S3 bucket (and optional prefix).

    Explicit arguments override the AWS environment variables; leave them out to use the
    environment. Thread-safe: one instance can serve every worker thread.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str | None = None,
        max_retries: int = 5,
        retry_timeout: float = 60.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.endpoint = endpoint or _env_endpoint()
        config: S3Config = {}
        if endpoint:
            config["endpoint"] = endpoint
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        if region:
            config["region"] = region
        client: ClientConfig = {"connect_timeout": timedelta(seconds=connect_timeout)}
        if self.endpoint and self.endpoint.lower().startswith("http://"):
            client["allow_http"] = True

        def make(retries: int, timeout: float) -> S3Store:
            retry: RetryConfig = {
                "max_retries": retries,
                "retry_timeout": timedelta(seconds=timeout),
            }
            try:
                return S3Store(
                    self.bucket,
                    prefix=self.prefix or None,
                    config=config,
                    client_options=client,
                    retry_config=retry,
                )
            except _OBSTORE_ERRORS as exc:
                raise ConfigError(
                    f"Could not configure S3 storage {self.url}: {_first_line(exc)}.",
                    HINT_GENERAL,
                ) from None

        self._store = make(max_retries, retry_timeout)
        # check() fails fast instead of retrying for minutes against a wrong endpoint
        self._probe_store = make(min(max_retries, 1), min(retry_timeout, 10.0))

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r}, endpoint={self.endpoint!r})"

    # --- the Storage protocol ---------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        key = _key(key)
        with self._errors("write", key):
            obstore.put(self._store, key, data)

    def get(self, key: str) -> bytes:
        key = _key(key)
        try:
            with self._errors("read", key):
                return bytes(obstore.get(self._store, key).bytes())
        except _NotFound:
            raise FileNotFoundError(errno.ENOENT, f"No object {key!r} in {self.url}") from None

    def put_file(self, key: str, path: str | Path) -> None:
        """Streamed from the file: a multipart upload above 8 MiB (visible at once when it
        completes, like a single PUT), a few parts in memory at a time."""
        key = _key(key)
        with self._errors("write", key):
            obstore.put(self._store, key, Path(path), chunk_size=8 * 1024 * 1024, max_concurrency=4)

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        """The object streamed into a temporary file (seekable; removed on exit)."""
        key = _key(key)
        with tempfile.TemporaryFile(prefix="rhizome-s3-") as fh:
            try:
                with self._errors("read", key):
                    for part in obstore.get(self._store, key).stream(min_chunk_size=1 << 20):
                        fh.write(memoryview(part))
            except _NotFound:
                raise FileNotFoundError(errno.ENOENT, f"No object {key!r} in {self.url}") from None
            fh.seek(0)
            yield fh

    def signed_url(self, key: str, expires: timedelta) -> str | None:
        key = _key(key)
        with self._errors("sign a URL for", key):
            return str(obstore.sign(self._store, "GET", key, expires))

    def exists(self, key: str) -> bool:
        key = _key(key)
        try:
            with self._errors("look up", key):
                obstore.head(self._store, key)
        except _NotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        key = _key(key)
        with self._errors("delete", key):
            obstore.delete(self._store, key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete the object ``prefix`` and every object under ``prefix/``; returns how many
        objects were deleted."""
        base = _key(prefix.rstrip("/"))
        keys = self._keys(base)
        if self.exists(base):
            keys.append(base)
        if keys:
            with self._errors("delete objects under", base):
                obstore.delete(self._store, keys)
        return len(keys)

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys (relative to the store prefix) of every object under ``prefix/``."""
        base = _key(prefix.rstrip("/")) if prefix else None
        return sorted(self._keys(base))

    def check(self) -> None:
        """Raise :class:`StorageError` unless the bucket can be listed and written."""
        probe = f".probe-{secrets.token_hex(6)}"
        try:
            for _chunk in obstore.list(self._probe_store, None, chunk_size=1):
                break
            obstore.put(self._probe_store, probe, b"ok")
            obstore.delete(self._probe_store, probe)
        except _OBSTORE_ERRORS as exc:
            reason, hint = self._explain(exc)
            raise StorageError(f"S3 storage {self.url} is not usable: {reason}.", hint) from None

    # --- helpers ------------------------------------------------------------------------------

    def _keys(self, base: str | None) -> builtins.list[str]:
        with self._errors("list", base or "(all objects)"):
            return [meta["path"] for chunk in obstore.list(self._store, base) for meta in chunk]

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn obstore's exceptions into :class:`StorageError` (or :class:`_NotFound`)."""
        try:
            yield
        except FileNotFoundError as exc:
            if "<Code>NoSuchBucket</Code>" not in str(exc):
                raise _NotFound from None
            reason, hint = self._explain(exc)
            raise StorageError(f"Could not {action} {key} in {self.url}: {reason}.", hint) from None
        except _OBSTORE_ERRORS as exc:
            reason, hint = self._explain(exc)
            raise StorageError(f"Could not {action} {key} in {self.url}: {reason}.", hint) from None

    def _explain(self, exc: BaseException) -> tuple[str, str]:
        """A short reason and a hint for an obstore error (whose text has a debug dump)."""
        text = str(exc).split("Debug source:", 1)[0]  # the rest is a Rust debug dump
        code = _xml(text, "Code")
        where = self.endpoint or "AWS S3"
        if code == "NoSuchBucket":
            return f"bucket {self.bucket!r} does not exist at {where}", HINT_BUCKET
        if code == "InvalidAccessKeyId":
            return "the access key id is not known to the server", HINT_CREDENTIALS
        if code == "SignatureDoesNotMatch":
            return "the secret access key does not match the access key id", HINT_CREDENTIALS
        if code in ("AccessDenied", "AllAccessDisabled", "InvalidToken", "ExpiredToken"):
            return f"access denied ({code})", HINT_CREDENTIALS
        if code:
            message = _xml(text, "Message")
            return (f"{code}: {message}" if message else code), HINT_GENERAL
        lowered = text.lower()
        if "169.254.169.254" in text or "169.254.170.2" in text or "credential" in lowered:
            # no keys in the environment: object_store fell back to the instance metadata
            return "no AWS credentials were found", HINT_CREDENTIALS
        if "error sending request" in lowered or "connect" in lowered or "dns" in lowered:
            return f"cannot connect to {where}", HINT_CONNECT
        if "timed out" in lowered:
            return f"no answer from {where} in time", HINT_CONNECT
        if "builder error" in lowered:
            return f"the endpoint {where} cannot be used (http:// needs plain HTTP)", HINT_CONNECT
        status = re.search(r"status code: (\d{3})", text)
        if status:
            return f"the server answered HTTP {status.group(1)}", HINT_GENERAL
        return _first_line(exc), HINT_GENERAL


class _NotFound(Exception):
    """Internal: the object does not exist."""


def _key(key: str) -> str:
    from rhizome.storage import validate_key

    return validate_key(key)


def _xml(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
    return match.group(1).strip() if match else None


def _first_line(exc: BaseException) -> str:
    line = str(exc).split("\n", 1)[0].split(": <?xml", 1)[0].strip().rstrip(".")
    if len(line) > 300:
        line = line[:297] + "..."
    return line or type(exc).__name__
