"""API latency under load: N concurrent clients on the list, show and search endpoints of a
real ``rhizome serve`` (uvicorn, one process) with its embedded worker running, on SQLite
and on PostgreSQL.

    .venv/bin/python bench/web/load.py [--clients 50] [--seconds 20] [--stores sqlite,postgres]

The library is seeded first (``--documents`` documents of 20 chunks, each with a finished
``process_document`` job, and as many more finished jobs as make ``--jobs``: detection,
reprocess and export jobs and a fifth hidden ``noop`` ones). While the clients run, a
feeder keeps the embedded worker busy: it enqueues ``--feed`` short noop jobs per second
(three stages of two 20 ms units, so progress and checkpoints are written all the time).

Each client is a closed loop with no think time: it sends the next request when the last
answer arrived, over its own keep-alive connection, cycling through the mix below. The
clients run in a separate process (a small asyncio HTTP/1.1 client: the load generator
must not be what is measured). Latency = request sent → last byte of the answer. Results:
a table on stdout and ``bench/web/results-load-<time>.json`` (not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("RHIZOME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
WORDS = ["Moby", "Ulysses", "Walden", "Leviathan", "Odyssey", "Origin", "Principia", "Emma"]

NICE = ["nice", "-n", os.environ.get("BENCH_NICE", "-10")] if os.geteuid() == 0 else []
"""On a shared machine (root only): the server and the clients before other processes."""

SECOND = ["--no-worker", "--port"]
NOOP_DONE = "/api/jobs?status=completed&type=noop&include_hidden=1&limit=1"

NULL_MIX = [("queue state", "/api/queue")]
"""``--null``: one tiny endpoint, to see what the HTTP stack itself costs."""

MIX: list[tuple[str, str]] = [
    ("jobs list", "/api/jobs?limit=50"),
    ("jobs filter", "/api/jobs?status=completed&type=process_document&limit=50"),
    ("jobs search", "/api/jobs?q={word}&limit=50"),
    ("job show", "/api/jobs/{job}"),
    ("documents list", "/api/documents?limit=50"),
    ("document show", "/api/documents/{document}"),
]


# --- seeding ------------------------------------------------------------------------------------


def seed(db_url: str, storage_root: Path, documents: int, jobs: int) -> dict[str, list[str]]:
    from rhizome.app import BUILTIN_MIGRATIONS
    from rhizome.jobs.model import NewJob
    from rhizome.jobs.store import open_store
    from rhizome.library import Library
    from rhizome.storage import LocalStorage

    store = open_store(db_url, migrations=BUILTIN_MIGRATIONS)
    storage = LocalStorage(storage_root)
    library = Library(store)
    rng = random.Random(7)
    doc_ids: list[str] = []
    specs: list[NewJob] = []
    for i in range(documents):
        title = f"{WORDS[i % len(WORDS)]} volume {i}"
        doc = library.create_document(user_id="local", title=title, source_type="markdown")
        texts = [
            " ".join(rng.choice(WORDS).lower() for _ in range(60)) + f" passage {k}"
            for k in range(20)
        ]
        chunks = [
            {"index": k, "text": t, "start": 0, "end": len(t), "token_count": 60}
            for k, t in enumerate(texts)
        ]
        library.replace_chunks(doc.id, "local", chunks)
        library.update_document(doc.id, "local", status="ready", chunk_count=len(chunks))
        storage.put(f"{doc.storage_folder}/content.md", "\n\n".join(texts).encode())
        doc_ids.append(doc.id)
        specs.append(
            NewJob(
                "process_document",
                {"document_id": doc.id},
                entity_type="document",
                entity_id=doc.id,
            )
        )
    # the rest of the history: finished jobs of the visible types, a fifth of them noop
    kinds = ["detect_connections", "reprocess_connections", "export_documents"]
    kinds += ["detect_connections", "noop"]
    for k in range(max(0, jobs - documents)):
        kind = kinds[k % len(kinds)]
        doc_id = doc_ids[k % len(doc_ids)] if doc_ids else None
        if kind == "detect_connections" and doc_id:
            specs.append(
                NewJob(kind, {"document_id": doc_id}, entity_type="document", entity_id=doc_id)
            )
        elif kind == "noop":
            specs.append(NewJob("noop", {"units": 1}))
        else:
            specs.append(NewJob(kind, {}))
    created = store.enqueue(specs)
    worker = "bench-seed:1:x"
    done = 0
    while done < len(created):
        claimed = store.claim(worker, 500, 600, None)
        if not claimed:
            break
        store.complete(worker, [(j.id, {"seeded": True}) for j in claimed])
        done += len(claimed)
    job_ids = [j.id for j in created]
    store.close()
    return {"documents": doc_ids, "jobs": job_ids}


# --- the clients (a separate process) ---------------------------------------------------------


async def _client(
    host: str,
    port: int,
    paths: list[tuple[str, str]],
    until: float,
    out: list[tuple[str, float, int]],
    offset: int,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.perf_counter() < until:
            name, path = paths[i % len(paths)]
            i += 1
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n"
            ).encode()
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            out.append((name, time.perf_counter() - start, status))
    finally:
        writer.close()


def run_clients(args: argparse.Namespace) -> None:
    spec = json.loads(Path(args.client_spec).read_text())
    rng = random.Random(11)
    paths: list[tuple[str, str]] = []
    for _ in range(400):
        for name, template in NULL_MIX if spec.get("null") else MIX:
            if spec.get("only") and name != spec["only"]:
                continue
            path = template.format(
                word=rng.choice(WORDS),
                job=rng.choice(spec["jobs"]),
                document=rng.choice(spec["documents"]),
            )
            paths.append((name, path))
    rng.shuffle(paths)

    async def main() -> list[tuple[str, float, int]]:
        out: list[tuple[str, float, int]] = []
        until = time.perf_counter() + spec["seconds"]
        await asyncio.gather(
            *(
                _client(
                    spec["host"], spec["ports"][k % len(spec["ports"])], paths, until, out, k * 37
                )
                for k in range(spec["clients"])
            )
        )
        return out

    results = asyncio.run(main())
    Path(args.client_out).write_text(json.dumps(results))


# --- one store --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def feeder(url: str, per_second: float, stop: threading.Event) -> None:
    import httpx

    body = {"type": "noop", "input": {"stages": 3, "units": 2, "sleep_ms": 20}}
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                c.post("/api/jobs", json=body)
            stop.wait(1 / per_second)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarize(samples: list[tuple[str, float, int]], seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = ["all", *dict.fromkeys(n for n, _, _ in samples)]
    for name in names:
        rows = [s for s in samples if name in ("all", s[0])]
        ms = [s[1] * 1000 for s in rows]
        out[name] = {
            "n": len(rows),
            "rps": round(len(rows) / seconds, 1),
            "p50": round(percentile(ms, 50), 1),
            "p95": round(percentile(ms, 95), 1),
            "p99": round(percentile(ms, 99), 1),
            "max": round(max(ms), 1) if ms else None,
            "mean": round(statistics.fmean(ms), 1) if ms else None,
            "errors": sum(1 for s in rows if s[2] != 200),
        }
    return out


def run_store(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix=f"rhizome-load-{kind}-"))
    dbname = None
    if kind == "sqlite":
        db_url = f"sqlite:///{tmp / 'rhizome.db'}"
    else:
        dbname = f"rhizome_load_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        db_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{dbname}"
    try:
        t0 = time.perf_counter()
        ids = seed(db_url, tmp / "storage", args.documents, args.jobs)
        print(f"[{kind}] seeded in {time.perf_counter() - t0:.1f}s", flush=True)
        port = free_port()
        env = dict(os.environ)
        env.update(
            {
                "RHIZOME_DATABASE_URL": db_url,
                "RHIZOME_STORAGE_URL": str(tmp / "storage"),
                "RHIZOME_EMBEDDER": "hash",
                "RHIZOME_LOG_LEVEL": "WARNING",
            }
        )
        env.pop("RHIZOME_API_TOKEN", None)
        log = open(tmp / "server.log", "wb")  # noqa: SIM115
        server = subprocess.Popen(
            [*NICE, sys.executable, "-m", "rhizome.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
        url = f"http://127.0.0.1:{port}"
        import httpx

        extra: list[subprocess.Popen[bytes]] = []
        ports = [port]
        for _ in range(args.servers - 1):  # more API processes, without a worker
            ports.append(free_port())
            extra.append(
                subprocess.Popen(
                    [*NICE, sys.executable, "-m", "rhizome.cli", "serve", *SECOND, str(ports[-1])],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=tmp,
                )
            )
        for p in ports:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{p}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        stop = threading.Event()
        feed = threading.Thread(target=feeder, args=(url, args.feed, stop), daemon=True)
        feed.start()
        time.sleep(2)  # the worker is busy
        result: dict[str, Any] = {"store": kind}
        with httpx.Client(base_url=url, timeout=30) as c:
            done_before = c.get(NOOP_DONE).json()["total"]
        before = cpu_seconds(server.pid)
        if args.profile:
            subprocess.run(
                [
                    args.profile,
                    "record",
                    "--format",
                    "raw",
                    "--threads",
                    "-o",
                    str(ROOT / "bench" / "web" / f"profile-{kind}-background.txt"),
                    "-d",
                    "5",
                    "-p",
                    str(server.pid),
                ],
                check=False,
            )
        else:
            time.sleep(5)
        result["background_cpu_percent"] = round((cpu_seconds(server.pid) - before) / 5 * 100, 1)
        for clients, seconds in ((1, min(5.0, args.seconds)), (args.clients, args.seconds)):
            spec = tmp / "spec.json"
            spec.write_text(
                json.dumps(
                    {
                        "host": "127.0.0.1",
                        "ports": ports,
                        "clients": clients,
                        "seconds": seconds,
                        "null": args.null,
                        "only": args.only,
                        **ids,
                    }
                )
            )
            outfile = tmp / f"samples-{clients}.json"
            spy = None
            if args.profile and clients > 1:
                spy = subprocess.Popen(
                    [
                        args.profile,
                        "record",
                        "--format",
                        "raw",
                        "--threads",
                        "-o",
                        str(ROOT / "bench" / "web" / f"profile-{kind}.txt"),
                        "-d",
                        str(int(seconds)),
                        "-p",
                        str(server.pid),
                    ]
                )
            cpu_before = sum(cpu_seconds(p.pid) for p in [server, *extra])
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(
                [
                    *NICE,
                    sys.executable,
                    __file__,
                    "--client-spec",
                    str(spec),
                    "--client-out",
                    str(outfile),
                ],
                check=True,
            )
            if spy is not None:
                spy.wait(60)
            cpu = sum(cpu_seconds(p.pid) for p in [server, *extra]) - cpu_before
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            client_cpu = (children.ru_utime + children.ru_stime) - (
                children_before.ru_utime + children_before.ru_stime
            )
            samples = [tuple(s) for s in json.loads(outfile.read_text())]
            summary = summarize(samples, seconds)  # type: ignore[arg-type]
            summary["all"]["server_cpu_ms_per_request"] = round(
                cpu * 1000 / max(1, summary["all"]["n"]), 2
            )
            summary["all"]["client_cpu_ms_per_request"] = round(
                client_cpu * 1000 / max(1, summary["all"]["n"]), 2
            )
            summary["all"]["load_average"] = os.getloadavg()
            result[f"clients_{clients}"] = summary
        stop.set()
        feed.join(5)
        with httpx.Client(base_url=url, timeout=30) as c:
            result["worker_jobs_completed"] = c.get(NOOP_DONE).json()["total"] - done_before
        for proc in [server, *extra]:
            proc.send_signal(signal.SIGTERM)
        for proc in [server, *extra]:
            proc.wait(60)
        tail = (tmp / "server.log").read_text(errors="replace")
        result["server_errors"] = tail.count("ERROR")
        return result
    finally:
        if dbname:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def table(results: list[dict[str, Any]], clients: int) -> str:
    lines = [
        "| store | clients | endpoint | n | req/s | p50 ms | p95 ms | p99 ms | max ms | errors |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        for c in (1, clients):
            for name, s in r[f"clients_{c}"].items():
                lines.append(
                    f"| {r['store']} | {c} | {name} | {s['n']:,} | {s['rps']} | {s['p50']} | "
                    f"{s['p95']} | {s['p99']} | {s['max']} | {s['errors']} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--feed", type=float, default=10.0, help="noop jobs enqueued per second")
    parser.add_argument("--null", action="store_true", help="only GET /api/queue")
    parser.add_argument(
        "--servers", type=int, default=1, help="API processes (the first runs the worker)"
    )
    parser.add_argument("--only", help="only this endpoint of the mix (e.g. 'jobs list')")
    parser.add_argument("--profile", help="py-spy binary: record the server (50 clients)")
    parser.add_argument("--client-spec", help=argparse.SUPPRESS)
    parser.add_argument("--client-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_spec:
        run_clients(args)
        return
    results = [run_store(kind, args) for kind in args.stores.split(",")]
    print(table(results, args.clients))
    for r in results:
        background = r["background_cpu_percent"]
        print(f"{r['store']}: background (worker, feeds, no clients) {background}% CPU")
        for c in (1, args.clients):
            row = r[f"clients_{c}"]["all"]
            print(
                f"{r['store']}, {c} client(s): server CPU {row['server_cpu_ms_per_request']} ms "
                f"per request, clients {row['client_cpu_ms_per_request']} ms; load average "
                f"{' '.join(f'{x:.1f}' for x in row['load_average'])}"
            )
        print(
            f"{r['store']}: worker completed {r['worker_jobs_completed']} jobs meanwhile; "
            f"{r['server_errors']} ERROR lines in the server log"
        )
    out = ROOT / "bench" / "web" / f"results-load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
