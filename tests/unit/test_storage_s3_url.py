"""S3 storage configuration without a server: URL parsing, endpoint handling, key checks."""

from __future__ import annotations

import pytest

from rhizome.errors import ConfigError, InvalidKeyError
from rhizome.storage import S3Storage, open_storage
from rhizome.storage.s3 import parse_s3_url


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bucket", "bucket", ""),
        ("s3://bucket/", "bucket", ""),
        ("s3://my.bucket-1/a", "my.bucket-1", "a"),
        ("s3://b1/a/b/c/", "b1", "a/b/c"),
    ],
)
def test_parse_s3_url(url: str, bucket: str, prefix: str) -> None:
    assert parse_s3_url(url) == (bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///x",
        "s3://b",  # too short for a bucket name
        "s3://-bucket/x",
        "s3://bu cket/x",
        "s3://bucket/a/../b",
        "s3://bucket/a//b",
        "s3://bucket/./a",
        "s3://bucket/x?versionId=1",
        "s3://bucket/x#frag",
        "http://bucket/x",
    ],
)
def test_parse_s3_url_refuses(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_s3_url(url)
    assert info.value.hint


def test_open_storage_routes_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    storage = open_storage("s3://bucket/some/prefix/")
    assert isinstance(storage, S3Storage)
    assert storage.url == "s3://bucket/some/prefix"
    assert (storage.bucket, storage.prefix) == ("bucket", "some/prefix")
    assert storage.endpoint == "http://127.0.0.1:1"
    with pytest.raises(ConfigError):
        open_storage("s3://bucket/../up")


def test_explicit_endpoint_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    storage = S3Storage("s3://bucket", endpoint="https://s3.example.com")
    assert storage.endpoint == "https://s3.example.com"
    assert "s3.example.com" in repr(storage)


@pytest.mark.parametrize("key", ["", "../x", "/abs", "a//b", "a/./b", "a\\b", "a\x00b"])
def test_keys_are_checked_before_any_request(key: str) -> None:
    # the endpoint refuses connections: a request would fail with StorageError instead
    storage = S3Storage("s3://bucket/p", endpoint="http://127.0.0.1:1", max_retries=0)
    for op in (
        lambda: storage.put(key, b"x"),
        lambda: storage.get(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: storage.delete_prefix(key or "/"),
    ):
        with pytest.raises(InvalidKeyError):
            op()
