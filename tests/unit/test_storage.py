"""Local-folder object storage: key safety, atomic writes, prefixes, pruning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rhizome.errors import ConfigError, InvalidKeyError, StorageError
from rhizome.storage import LocalStorage, open_storage, validate_key

BAD_KEYS = [
    "",
    "..",
    "../x",
    "a/../b",
    "a/..",
    "/etc/passwd",
    "/a",
    "a//b",
    "a/",
    "/",
    ".",
    "a/./b",
    "a\\b",
    "..\\x",
    "a\x00b",
]


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_validate_key_refuses(key: str) -> None:
    with pytest.raises(InvalidKeyError) as info:
        validate_key(key)
    assert info.value.hint
    assert isinstance(info.value, StorageError)


@pytest.mark.parametrize(
    "key", ["a", "a/b.json", "documents/u/d/stage-1.json", "x..y/..z", ".hidden"]
)
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_every_operation_refuses_bad_keys(storage: LocalStorage, key: str) -> None:
    for op in (
        lambda: storage.put(key, b"x"),
        lambda: storage.get(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
    ):
        with pytest.raises(InvalidKeyError):
            op()
    assert not storage.root.exists() or list(storage.root.rglob("*")) == []


def test_put_get_round_trip(storage: LocalStorage) -> None:
    data = bytes(range(256)) * 10
    storage.put("jobs/1/stage-a.json", data)
    assert storage.get("jobs/1/stage-a.json") == data
    assert storage.exists("jobs/1/stage-a.json")
    assert (storage.root / "jobs" / "1" / "stage-a.json").read_bytes() == data
    storage.put("jobs/1/stage-a.json", b"new")  # overwrite
    assert storage.get("jobs/1/stage-a.json") == b"new"
    storage.put("empty", b"")
    assert storage.get("empty") == b""


def test_get_missing(storage: LocalStorage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.get("nope/x.json")
    assert not storage.exists("nope/x.json")


def test_atomic_write_leaves_no_temp_files(storage: LocalStorage) -> None:
    for i in range(20):
        storage.put(f"d/{i % 3}/f.bin", os.urandom(1000))
    assert tmp_files(storage.root) == []
    assert len(storage.list()) == 3


def test_failed_write_keeps_the_old_object_and_no_temp_file(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put("k/v.json", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match="No space left"):
        storage.put("k/v.json", b"new")
    monkeypatch.undo()
    assert storage.get("k/v.json") == b"old"
    assert tmp_files(storage.root) == []


def test_list(storage: LocalStorage) -> None:
    assert storage.list() == []
    keys = ["b/2.json", "a/1.json", "a/sub/3.json", "top.txt"]
    for k in keys:
        storage.put(k, b"x")
    (storage.root / "a" / ".tmp-abc").write_bytes(b"half")  # a write in progress
    assert storage.list() == sorted(keys)
    assert storage.list("a") == ["a/1.json", "a/sub/3.json"]
    assert storage.list("a/") == ["a/1.json", "a/sub/3.json"]
    assert storage.list("a/sub") == ["a/sub/3.json"]
    assert storage.list("missing/") == []
    assert storage.list("top.txt") == []  # a prefix names a folder
    with pytest.raises(InvalidKeyError):
        storage.list("../")


def test_delete_prefix(storage: LocalStorage) -> None:
    for k in ["jobs/1/a.json", "jobs/1/b.json", "jobs/1/deep/c.json", "jobs/10/a.json", "x.json"]:
        storage.put(k, b"x")
    assert storage.delete_prefix("jobs/1/") == 3
    assert storage.list() == ["jobs/10/a.json", "x.json"]  # jobs/10 is not under jobs/1
    assert not (storage.root / "jobs" / "1").exists()
    assert storage.delete_prefix("jobs/1/") == 0
    assert storage.delete_prefix("x.json") == 1
    assert storage.delete_prefix("jobs/10") == 1
    assert storage.list() == []
    assert storage.root.is_dir()  # the root itself stays
    assert list(storage.root.iterdir()) == []  # and nothing is left inside it


@pytest.mark.parametrize("prefix", ["", "/", "..", "../x", "a/../.."])
def test_delete_prefix_refuses_bad_prefixes(storage: LocalStorage, prefix: str) -> None:
    storage.put("keep/me", b"x")
    with pytest.raises(InvalidKeyError):
        storage.delete_prefix(prefix)
    assert storage.get("keep/me") == b"x"


def test_delete_prunes_empty_folders(storage: LocalStorage) -> None:
    storage.put("documents/u/d1/stage-a.json", b"x")
    storage.put("documents/u/d1/content.md", b"x")
    storage.put("documents/u/d2/stage-a.json", b"x")
    storage.delete("documents/u/d1/stage-a.json")
    assert (storage.root / "documents/u/d1").is_dir()  # not empty yet
    storage.delete("documents/u/d1/content.md")
    assert not (storage.root / "documents/u/d1").exists()
    assert (storage.root / "documents/u/d2").is_dir()
    storage.delete("documents/u/d2/stage-a.json")
    assert not (storage.root / "documents").exists()
    assert storage.root.is_dir()
    storage.delete("documents/u/d2/stage-a.json")  # deleting twice is fine


def test_check(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path / "new" / "root")
    s.check()
    assert s.root.is_dir()
    assert list(s.root.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(StorageError, match="not writable"):
        LocalStorage(blocker / "sub").check()


def test_open_storage(tmp_path: Path) -> None:
    s = open_storage(str(tmp_path / "a"))
    assert isinstance(s, LocalStorage)
    assert s.url == str(tmp_path / "a")
    f = open_storage(f"file://{tmp_path / 'b'}")
    assert isinstance(f, LocalStorage)
    assert f.root == tmp_path / "b"
    from rhizome.storage.s3 import S3Storage

    assert isinstance(open_storage("s3://bucket/prefix"), S3Storage)
    with pytest.raises(ConfigError, match="Unsupported storage URL"):
        open_storage("ftp://host/x")
