"""A private PostgreSQL cluster for tests and benchmarks: ``initdb`` + ``pg_ctl``.

Tests that restart or stop PostgreSQL cannot use the shared server at 127.0.0.1:5432, so
they start their own::

    with pg_cluster() as pg:                 # initdb, start on a free port
        url = pg.create_database("rhizome")  # postgresql://postgres@127.0.0.1:PORT/rhizome
        ...
        pg.restart("fast")                   # or "immediate" (crash + recovery)

- Binaries: ``RHIZOME_PG_BIN`` or the newest ``/usr/lib/postgresql/*/bin`` (Debian's layout)
  or ``pg_ctl`` on ``PATH``.
- PostgreSQL refuses to run as root. When this process is root (as here and in CI), every
  ``initdb``/``pg_ctl`` runs as the ``postgres`` system user (``runuser -u postgres --``)
  and the cluster's folder is made that user's. The folder is a fresh ``mkdtemp`` under
  ``/tmp`` (pytest's ``tmp_path`` is private to root, so ``postgres`` could not enter it).
- It listens on TCP on ``listen`` (default ``127.0.0.1``; give a veth or bridge address
  to reach it from a network namespace) and on a Unix socket in its folder. ``trust``
  authentication for ``127.0.0.1/32`` and the networks in ``trust``.
- ``fsync`` is off: a test cluster is thrown away, so durability across an OS crash is not
  needed. ``synchronous_commit`` stays on: a commit has reached the kernel before it is
  acknowledged, so a PostgreSQL crash or ``restart("immediate")`` loses no acknowledged
  transaction (tests that count completions rely on that).
- :func:`pg_cluster` always cleans up: stop (fast, then immediate, then SIGKILL of the
  postmaster) and remove the folder, also when the block raises.

Only the standard library here (psycopg is imported lazily by :meth:`PgCluster.execute`),
so scripts in ``bench/`` may load this file by path.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

StopMode = Literal["smart", "fast", "immediate"]

RUN_AS = "postgres"
"""The system user that runs the cluster when this process is root."""


class PgClusterError(RuntimeError):
    """initdb or pg_ctl failed; the message ends with the tail of the server's log."""


def pg_bin_dir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are."""
    given = os.environ.get("RHIZOME_PG_BIN")
    if given:
        return Path(given)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).parent
    raise PgClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql "
        "(Debian: /usr/lib/postgresql/15/bin) or set RHIZOME_PG_BIN"
    )


def available() -> str | None:
    """None when a private cluster can be started here, else why not."""
    try:
        bin_dir = pg_bin_dir()
    except PgClusterError as exc:
        return str(exc)
    if not (bin_dir / "initdb").exists():
        return f"no initdb in {bin_dir}"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and there is no {RUN_AS!r} system user to run PostgreSQL"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(hosts: Sequence[str] = ("127.0.0.1",)) -> int:
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(20_000, 60_000)
        if all(_bindable(h, port) for h in hosts):
            return port
    raise PgClusterError("no free TCP port found")


def pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (the postmaster is a daemon: once
    it exits it waits, a zombie, until init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")


class PgCluster:
    """One cluster in ``base`` (made by :meth:`init`). Not started until :meth:`start`."""

    def __init__(
        self,
        base: Path,
        *,
        listen: Sequence[str] = ("127.0.0.1",),
        port: int | None = None,
        trust: Sequence[str] = (),
        settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.base = base
        self.data = base / "data"
        self.log = base / "postgres.log"
        self.listen = tuple(listen)
        self.port = port or free_port(self.listen)
        self.trust = tuple(trust)
        self.settings = dict(settings or {})
        self.bin_dir = bin_dir or pg_bin_dir()
        self.as_root = os.geteuid() == 0
        self.restarts = 0

    # --- commands -------------------------------------------------------------------------

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", RUN_AS, "--", *cmd] if self.as_root else cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            proc = subprocess.run(
                self._cmd(tool, *args),
                cwd=self.base,  # the postgres user may not enter the caller's folder
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgClusterError(f"{tool} {' '.join(args)} timed out\n{self.log_tail()}") from exc
        if proc.returncode != 0:
            raise PgClusterError(
                f"{tool} {' '.join(args)} exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()}\n{self.log_tail()}"
            )
        return proc.stdout

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- lifecycle ------------------------------------------------------------------------

    def init(self) -> None:
        """``initdb`` (superuser ``postgres``, trust, UTF-8, no sync) and the settings."""
        self.base.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.base, RUN_AS, RUN_AS)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        conf = {
            "listen_addresses": "'" + ",".join(self.listen) + "'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "fsync": "off",
            "max_connections": "300",
            "log_min_messages": "warning",
            "log_connections": "off",
            **self.settings,
        }
        with open(self.data / "postgresql.conf", "a") as f:  # owned by postgres; root may write
            f.write("\n# tests/pgcluster.py\n")
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        with open(self.data / "pg_hba.conf", "a") as f:
            f.writelines(f"host all all {net} trust\n" for net in self.trust)
        if self.as_root:  # the log file is written by the server
            self.log.touch()
            shutil.chown(self.log, RUN_AS, RUN_AS)

    def _pg_ctl(self, action: str, *args: str, timeout: float = 120) -> None:
        self._run(
            "pg_ctl",
            action,
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(timeout)),
            *args,
            timeout=timeout + 10,
        )

    def start(self, timeout: float = 60) -> None:
        self._pg_ctl("start", timeout=timeout)
        self.wait_ready(timeout)

    def stop(self, mode: StopMode = "fast", timeout: float = 60) -> None:
        if self.running():
            self._pg_ctl("stop", "-m", mode, timeout=timeout)

    def restart(self, mode: StopMode = "fast", timeout: float = 60) -> float:
        """Stop (``fast``: disconnect clients, checkpoint; ``immediate``: no checkpoint,
        crash recovery at start) and start again; returns the seconds it took until the
        server accepted connections again."""
        began = time.monotonic()
        self._pg_ctl("restart", "-m", mode, timeout=timeout)
        self.wait_ready(timeout)
        self.restarts += 1
        return time.monotonic() - began

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and pid_alive(pid)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until a TCP connection on the first listen address gets a session."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.execute("SELECT 1", connect_timeout=2)
                return
            except Exception as exc:  # psycopg.OperationalError: still starting up
                last = exc
                time.sleep(0.1)
        raise PgClusterError(f"not accepting connections after {timeout:.0f} s: {last}")

    def destroy(self) -> None:
        """Stop however it takes, then remove the folder."""
        modes: tuple[StopMode, ...] = ("fast", "immediate")
        for mode in modes:
            try:
                self.stop(mode, timeout=20)
                break
            except PgClusterError:
                continue
        pid = self.postmaster_pid()
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(self.base, ignore_errors=True)

    # --- clients --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.listen[0]

    def url(self, dbname: str = "postgres", host: str | None = None) -> str:
        return f"postgresql://postgres@{host or self.host}:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres", connect_timeout: int = 5) -> list[Any]:
        """Run one statement (autocommit) as the superuser; its rows, if any."""
        import psycopg

        with psycopg.connect(
            self.url(dbname), autocommit=True, connect_timeout=connect_timeout
        ) as conn:
            cur = conn.execute(sql.encode())
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        """A new database; its URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __repr__(self) -> str:
        return f"PgCluster({self.base}, {','.join(self.listen)}:{self.port})"


@contextlib.contextmanager
def pg_cluster(
    *,
    listen: Sequence[str] = ("127.0.0.1",),
    trust: Sequence[str] = (),
    settings: dict[str, str] | None = None,
    prefix: str = "rhizome-pg-",
    start_tries: int = 3,
) -> Iterator[PgCluster]:
    """A started cluster on a free port, stopped and removed afterwards (always)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    cluster = PgCluster(base, listen=listen, trust=trust, settings=settings)
    try:
        cluster.init()
        for attempt in range(start_tries):
            try:
                cluster.start()
                break
            except PgClusterError:  # the free port was taken before the server bound it
                if attempt + 1 == start_tries or cluster.running():
                    raise
                cluster.port = free_port(cluster.listen)
                with open(cluster.data / "postgresql.conf", "a") as f:
                    f.write(f"port = {cluster.port}\n")
        yield cluster
    finally:
        cluster.destroy()
