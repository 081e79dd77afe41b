"""Object storage: a local folder by default (S3-compatible stores come with ``s3://`` URLs).

Keys are relative, '/'-separated paths; ``..``, absolute paths and empty segments are
refused. Writes are atomic: a reader sees the old object or the new one, never half.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from rhizome.errors import ConfigError, InvalidKeyError
from rhizome.storage.local import LocalStorage
from rhizome.storage.s3 import S3Storage


class Storage(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def check(self) -> None: ...

    # streaming, for files too large to hold in memory (exports, imports)
    def put_file(self, key: str, path: str | Path) -> None:
        """Store the local file ``path`` under ``key`` (atomic, streamed)."""
        ...

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A seekable binary file with the object's bytes (FileNotFoundError if absent)."""
        ...

    def signed_url(self, key: str, expires: timedelta) -> str | None:
        """A URL that reads the object without credentials until ``expires`` has passed
        (None where the storage has no such thing, e.g. a local folder)."""
        ...


def validate_key(key: str) -> str:
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKeyError(f"Invalid storage key {key!r}.")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKeyError(f"Invalid storage key {key!r}.")
    return key


def open_storage(url: str) -> Storage:
    """A local folder (a path or ``file://`` URL) or an S3 bucket (``s3://bucket/prefix``;
    credentials, region and endpoint from the standard ``AWS_*`` environment variables)."""
    if url.startswith("s3://"):
        return S3Storage(url)
    if "://" in url and not url.startswith("file://"):
        raise ConfigError(f"Unsupported storage URL {url!r}.")
    return LocalStorage(url.removeprefix("file://"))


__all__ = ["LocalStorage", "S3Storage", "Storage", "open_storage", "validate_key"]
