"""One storage contract, two backends: a local folder and a real S3 server (SeaweedFS).

The S3 server is started once per session by ``tests.s3server``; every test gets a fresh
prefix in its bucket. Without the server the S3 cases skip locally and FAIL in CI.
Also covers the checkpoint contract (DESIGN §6) over both backends: a checkpoint that was
overwritten, truncated or deleted is refused with a timeline event.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rhizome.errors import ConfigError, InvalidKeyError, StorageError
from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.context import JobContext, checkpoint_key
from rhizome.jobs.model import NewJob
from rhizome.jobs.registry import registry
from rhizome.jobs.store import SqlJobStore, open_store
from rhizome.storage import LocalStorage, S3Storage, Storage, open_storage

if TYPE_CHECKING:
    from tests.s3server import S3Server


BACKENDS = ["local", "s3"]
BAD_KEYS = ["", "..", "../x", "a/../b", "/etc/passwd", "a//b", "a/", ".", "a/./b", "a\\b"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A storage for each backend, empty at the start of every test."""
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    server: S3Server = request.getfixturevalue("s3_server")
    return server.storage(f"tests/{secrets.token_hex(6)}")


@pytest.fixture
def s3(request: pytest.FixtureRequest) -> S3Server:
    server: S3Server = request.getfixturevalue("s3_server")
    return server


# --- the storage contract ------------------------------------------------------------------


def test_round_trip_binary(backend: Storage) -> None:
    data = bytes(range(256)) * 64 + b"\x00\xff\r\n"
    backend.put("documents/u1/d1/blob.bin", data)
    assert backend.get("documents/u1/d1/blob.bin") == data
    backend.put("empty", b"")
    assert backend.get("empty") == b""
    big = secrets.token_bytes(3 * 1024 * 1024)
    backend.put("big.bin", big)
    assert backend.get("big.bin") == big


def test_overwrite_replaces_whole_object(backend: Storage) -> None:
    backend.put("a/b.json", b"x" * 10_000)
    backend.put("a/b.json", b"short")
    assert backend.get("a/b.json") == b"short"
    assert backend.list() == ["a/b.json"]


def test_missing_key_raises_file_not_found(backend: Storage) -> None:
    with pytest.raises(FileNotFoundError):
        backend.get("no/such/object.json")
    assert backend.exists("no/such/object.json") is False


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_invalid_keys_refused(backend: Storage, key: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: backend.put(key, b"x"),
        lambda: backend.get(key),
        lambda: backend.exists(key),
        lambda: backend.delete(key),
    ]
    if key.rstrip("/") != "a":  # 'a/' is a fine prefix
        operations += [lambda: backend.delete_prefix(key), lambda: backend.list(key or "/")]
    for op in operations:
        with pytest.raises(InvalidKeyError) as info:
            op()
        assert info.value.hint
    assert backend.list() == []


def test_exists_and_delete(backend: Storage) -> None:
    backend.put("jobs/j1/stage-a.json", b"{}")
    assert backend.exists("jobs/j1/stage-a.json")
    assert not backend.exists("jobs/j1")  # a "folder" is not an object
    backend.delete("jobs/j1/stage-a.json")
    assert not backend.exists("jobs/j1/stage-a.json")
    backend.delete("jobs/j1/stage-a.json")  # deleting a missing object is fine
    assert backend.list() == []


def test_delete_prefix_counts_and_respects_segments(backend: Storage) -> None:
    for key in ["jobs/1/a", "jobs/1/b/c", "jobs/1/b/d", "jobs/10/x", "jobs/2/y", "top"]:
        backend.put(key, key.encode())
    assert backend.delete_prefix("jobs/1") == 3
    assert backend.list() == ["jobs/10/x", "jobs/2/y", "top"]  # jobs/10 is not under jobs/1
    assert backend.delete_prefix("jobs/1/") == 0
    assert backend.delete_prefix("top") == 1  # a single object
    assert backend.delete_prefix("nothing/here") == 0
    assert backend.delete_prefix("jobs/") == 2
    assert backend.list() == []


def test_list_sorted_with_prefix(backend: Storage) -> None:
    keys = ["docs/b/2.json", "docs/a/1.json", "docs/a/0.json", "jobs/x", "z", "docs2/q"]
    for key in keys:
        backend.put(key, b"1")
    assert backend.list() == sorted(keys)
    assert backend.list("docs") == ["docs/a/0.json", "docs/a/1.json", "docs/b/2.json"]
    assert backend.list("docs/") == backend.list("docs")
    assert backend.list("docs/a") == ["docs/a/0.json", "docs/a/1.json"]
    assert backend.list("do") == []  # whole segments only
    assert backend.list("missing") == []


def test_check_ok(backend: Storage) -> None:
    backend.check()
    assert backend.list() == []  # the probe leaves nothing behind


# --- S3 specifics: errors a user can act on, configuration from the environment -------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _assert_user_facing(err: StorageError) -> None:
    text = str(err)
    assert "Debug source" not in text and "Traceback" not in text and "<?xml" not in text
    assert len(err.message) < 300
    assert err.hint


def test_s3_wrong_bucket(s3: S3Server) -> None:
    storage = s3.storage("p", bucket="no-such-bucket-here")
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist") as info:
        storage.check()
    _assert_user_facing(info.value)
    assert "bucket" in info.value.hint
    with pytest.raises(StorageError, match="does not exist"):
        storage.list()


def test_s3_wrong_endpoint(s3: S3Server) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    storage = s3.storage("p", endpoint=endpoint, max_retries=1, connect_timeout=1.0)
    with pytest.raises(StorageError, match=f"cannot connect to {endpoint}") as info:
        storage.check()
    _assert_user_facing(info.value)
    assert "AWS_ENDPOINT_URL" in info.value.hint
    for op in (lambda: storage.put("k", b"1"), lambda: storage.get("k")):
        with pytest.raises(StorageError, match="cannot connect"):
            op()


def test_s3_wrong_secret(s3: S3Server) -> None:
    storage = s3.storage("p", secret_access_key="not-the-secret")
    with pytest.raises(StorageError, match="secret access key does not match") as info:
        storage.check()
    _assert_user_facing(info.value)
    assert "AWS_SECRET_ACCESS_KEY" in info.value.hint
    with pytest.raises(StorageError):
        storage.get("k")


@pytest.fixture
def aws_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    yield s3


def test_open_storage_s3_from_env(aws_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"env/{secrets.token_hex(4)}"
    storage = open_storage(aws_env.url(prefix))
    assert isinstance(storage, S3Storage)
    assert storage.url == f"s3://{aws_env.bucket}/{prefix}"
    assert storage.endpoint == aws_env.endpoint
    storage.check()
    storage.put("a/b.json", b'{"ok":true}')
    assert storage.list() == ["a/b.json"]
    # the same object through an explicitly configured store: the prefix is honoured
    assert aws_env.storage(prefix).get("a/b.json") == b'{"ok":true}'
    assert aws_env.storage().list(prefix) == [f"{prefix}/a/b.json"]

    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", aws_env.region)
    assert open_storage(aws_env.url(prefix)).get("a/b.json") == b'{"ok":true}'

    whole_bucket = open_storage(f"s3://{aws_env.bucket}/")
    assert whole_bucket.url == f"s3://{aws_env.bucket}"
    assert f"{prefix}/a/b.json" in whole_bucket.list(prefix.split("/")[0])


def test_open_storage_s3_bad_env_credentials(
    aws_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKNOBODY")
    with pytest.raises(StorageError, match="access key id is not known") as info:
        open_storage(aws_env.url("x")).check()
    _assert_user_facing(info.value)


def test_open_storage_rejects_bad_s3_urls() -> None:
    for url in ("s3://", "s3:///x", "s3://b/../x", "s3://bucket/a//b", "s3://bu cket/x"):
        with pytest.raises(ConfigError):
            open_storage(url)


# --- the checkpoint contract over both backends ------------------------------------------------


def _tamper_overwrite(storage: Storage, key: str) -> None:
    storage.put(key, storage.get(key).replace(b'"cursor":7', b'"cursor":8'))


def _tamper_truncate(storage: Storage, key: str) -> None:
    storage.put(key, storage.get(key)[:-5])


def _tamper_delete(storage: Storage, key: str) -> None:
    storage.delete(key)


@pytest.fixture
def job_store(tmp_path: Path) -> Iterator[SqlJobStore]:
    store = open_store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        yield store
    finally:
        store.close()


def _stop() -> None:
    raise RuntimeError("stop here")


def _context(store: SqlJobStore, storage: Storage, job_id: str) -> JobContext:
    job = store.get(job_id)
    job_type = registry.get(job.job_type)
    stages = job_type.stages_for(job_type.validate_input(job.input_data))
    return JobContext(job, stages, store, storage, "w1")


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (None, None),
        (_tamper_overwrite, "hash does not match"),
        (_tamper_truncate, "hash does not match"),
        (_tamper_delete, "missing"),
    ],
    ids=["intact", "overwritten", "truncated", "deleted"],
)
def test_checkpoint_resume_verifies_hash(
    backend: Storage,
    job_store: SqlJobStore,
    tamper: Callable[[Storage, str], None] | None,
    expected: str | None,
) -> None:
    load_builtin_handlers()
    [job] = job_store.enqueue([NewJob("noop", {"stages": 2})])
    [claimed] = job_store.claim("w1", 1, 30, None)
    assert claimed.id == job.id

    ctx = _context(job_store, backend, job.id)
    data = {"cursor": 7, "done": ["a", "b"], "text": "Grüße, 世界"}

    def step() -> None:
        ctx.cursor("unit", start=None).save(data)

    with pytest.raises(RuntimeError, match="stop here"):
        ctx.run_stage("step-1", lambda: (step(), _stop()))
    saved = ctx.resume_point()
    assert saved is not None
    assert saved.path == checkpoint_key(claimed, "step-1", saved.sha256)
    assert saved.path.startswith(f"jobs/{job.id}/stage-step-1.")
    assert backend.exists(saved.path)
    assert backend.list(f"jobs/{job.id}") == [saved.path]

    row = job_store.get(job.id)
    assert (row.last_checkpoint_path, row.checkpoint_hash) == (saved.path, saved.sha256)
    if tamper is not None:
        tamper(backend, saved.path)

    resumed = _context(job_store, backend, job.id)
    point = resumed.resume_point()
    messages = [e.message or "" for e in job_store.events(job.id)]
    if expected is None:
        assert point is not None
        assert (point.stage, point.sha256) == ("step-1", saved.sha256)
        assert point.data["cursors"] == [["unit", data]]
        seen: list[object] = []
        resumed.run_stage("step-1", lambda: seen.append(resumed.cursor("unit", start=None).value))
        assert seen == [data]
        assert not any("starting fresh" in m for m in messages)
        return
    assert point is None
    assert any(expected in m and saved.path in m for m in messages), messages
    after = job_store.get(job.id)
    assert after.last_checkpoint_path is None and after.checkpoint_hash is None
