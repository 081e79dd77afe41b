"""Object storage: a local folder by default (S3-compatible stores come with ``s3://`` URLs).

Keys are relative, '/'-separated paths; ``..``, absolute paths and empty segments are
refused. Writes are atomic: a reader sees the old object or the new one, never half.
"""

from __future__ import annotations

from typing import Protocol

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
