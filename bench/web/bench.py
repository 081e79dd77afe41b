"""Live-update latency: from a job change committed by *another process* to (a) a raw SSE
client, (b) the browser's EventSource, (c) the browser's DOM (the job page's details
line), through a real `rhizome serve --no-worker`, on SQLite and on PostgreSQL.

    .venv/bin/python bench/web/bench.py [--updates 200] [--interval 0.05] [--stores sqlite,postgres]

A writer subprocess claims a job and writes ``--updates`` progress updates, printing the
time each commit returned; the receivers record when each update (``seq=N`` in its
details) arrived. Same machine, same clock. Results: a table on stdout and
bench/web/results-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
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

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
PG_ADMIN = os.environ.get("RHIZOME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


# --- the writer (a separate process) ---------------------------------------------------------


def writer(db_url: str, updates: int, interval: float) -> None:
    from rhizome.jobs.model import NewJob
    from rhizome.jobs.store import open_store

    store = open_store(db_url)
    [job] = store.enqueue(
        [NewJob("import_document", {"title": "latency bench"}, priority=1_000_000)]
    )
    worker = "bench-writer"
    [claimed] = store.claim(worker, 1, 3600, None)
    assert claimed.id == job.id
    print(f"JOB {job.id}", flush=True)
    sys.stdin.readline()  # "go"
    for seq in range(updates):
        store.update_progress(
            job.id,
            worker,
            {"percent": round(100 * seq / updates, 2), "stage": "apply", "details": f"seq={seq}"},
        )
        print(f"{seq} {time.time():.6f}", flush=True)
        time.sleep(interval)
    print("DONE", flush=True)
    store.close()


# --- the receivers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db_url: str, storage: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "RHIZOME_DATABASE_URL": db_url,
            "RHIZOME_STORAGE_URL": str(storage),
            "RHIZOME_LOG_LEVEL": "WARNING",
        }
    )
    env.pop("RHIZOME_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rhizome.cli", "serve", "--port", str(port), "--no-worker"],
        env=env,
        cwd=storage.parent,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


class RawClient(threading.Thread):
    """SSE over a plain HTTP stream; records arrival times of seq=N updates."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.arrivals: dict[int, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", self.url + "/api/events") as r,
        ):
            event = ""
            for line in r.iter_lines():
                now = time.time()
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    if event == "snapshot":
                        self.ready.set()
                    elif event == "job" and '"details":"seq=' in line:
                        data = json.loads(line[5:])
                        seq = int(data["details"].split("=", 1)[1])
                        self.arrivals.setdefault(seq, now)


BROWSER_PROBE = """() => {
  window.__lat = {};
  const grab = (text) => { const m = /seq=(\\d+)/.exec(text || ""); return m ? m[1] : null; };
  window.RHIZOME_EVENTS.addEventListener("job", (e) => {
    const t = performance.timeOrigin + performance.now();
    const seq = grab(JSON.parse(e.data).details);
    if (seq !== null) { (window.__lat[seq] = window.__lat[seq] || {}).sse = t; }
  });
  new MutationObserver(() => {
    const t = performance.timeOrigin + performance.now();
    const el = document.querySelector("#job-details");
    const seq = el ? grab(el.textContent) : null;
    if (seq !== null) {
      const rec = (window.__lat[seq] = window.__lat[seq] || {});
      if (rec.dom === undefined) rec.dom = t;
    }
  }).observe(document.querySelector("#job"), {subtree: true, childList: true, characterData: true});
  return true;
}"""


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ms = sorted(v * 1000 for v in values)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p / 100 * len(ms)))], 1)

    return {
        "n": len(ms),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(ms[-1], 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def run_store(kind: str, updates: int, interval: float, browser: Any) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"rhizome-bench-web-{kind}-"))
    pg_name = None
    if kind == "sqlite":
        db_url = f"sqlite:///{work / 'rhizome.db'}"
    else:
        import psycopg

        pg_name = f"rhizome_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
    server, url = start_server(db_url, work / "storage")
    try:
        w = subprocess.Popen(
            [sys.executable, __file__, "--writer", db_url, str(updates), str(interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert w.stdout is not None and w.stdin is not None
        job_id = w.stdout.readline().split()[1]
        raw = RawClient(url)
        raw.start()
        assert raw.ready.wait(15), "raw SSE client did not connect"
        page = None
        if browser is not None:
            page = browser.new_page()
            page.goto(f"{url}/jobs/{job_id}")
            page.wait_for_selector('#live[data-state="live"]', timeout=15000)
            page.evaluate(BROWSER_PROBE)
        time.sleep(0.5)
        w.stdin.write("go\n")
        w.stdin.flush()
        commits: dict[int, float] = {}
        for line in w.stdout:
            if line.startswith("DONE"):
                break
            seq, stamp = line.split()
            commits[int(seq)] = float(stamp)
        w.wait(30)
        time.sleep(1.0)
        result: dict[str, Any] = {"store": kind, "updates": updates, "interval_s": interval}
        raw_lat = [raw.arrivals[s] - t for s, t in commits.items() if s in raw.arrivals]
        result["raw_sse"] = stats(raw_lat) | {"missed": updates - len(raw_lat)}
        if page is not None:
            lat = page.evaluate("() => window.__lat")
            sse = [
                lat[str(s)]["sse"] / 1000 - t
                for s, t in commits.items()
                if "sse" in lat.get(str(s), {})
            ]
            dom = [
                lat[str(s)]["dom"] / 1000 - t
                for s, t in commits.items()
                if "dom" in lat.get(str(s), {})
            ]
            result["browser_eventsource"] = stats(sse) | {"missed": updates - len(sse)}
            result["browser_dom"] = stats(dom) | {"missed": updates - len(dom)}
            page.close()
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        if pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        writer(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    results = []
    pw = None
    browser = None
    if not args.no_browser and os.path.exists(CHROMIUM):
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        for kind in args.stores.split(","):
            results.append(run_store(kind.strip(), args.updates, args.interval, browser))
    finally:
        if browser is not None:
            browser.close()
        if pw is not None:
            pw.stop()

    head = ("store", "receiver", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "missed")
    print("\n{:9} {:22} {:>4} {:>7} {:>7} {:>7} {:>7} {:>6}".format(*head))
    for r in results:
        for key in ("raw_sse", "browser_eventsource", "browser_dom"):
            s = r.get(key)
            if s and s.get("n"):
                print(
                    f"{r['store']:9} {key:22} {s['n']:>4} {s['p50_ms']:>7} {s['p95_ms']:>7} "
                    f"{s['p99_ms']:>7} {s['max_ms']:>7} {s['missed']:>6}"
                )
    out = Path(__file__).with_name(f"results-{time.strftime('%Y%m%d-%H%M%S')}.json")
    meta = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "results": results}
    out.write_text(json.dumps(meta, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
