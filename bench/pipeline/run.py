"""End-to-end pipeline benchmark: `rhizome add FILE --wait` in a fresh process on a fresh
SQLite library, for Moby-Dick and the GeoTopo thesis. Reports wall time, peak memory
(RSS of the process), and per-stage durations from the job's timeline.

    .venv/bin/python bench/pipeline/run.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
FILES = [CORPUS / "epub" / "moby-dick.epub", CORPUS / "pdf" / "GeoTopo-komprimiert.pdf"]


_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run([sys.executable, '-m', 'rhizome.cli', *sys.argv[1:]],"
    " stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
)


def rhizome(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rhizome.cli", *args], env=env, capture_output=True, text=True
    )


def stage_times(events: list[dict[str, object]]) -> dict[str, float]:
    marks = [
        (str(e["message"]).removeprefix("stage ").removesuffix(" started"), str(e["at"]))
        for e in events
        if str(e.get("message", "")).startswith("stage ")
    ]
    end = next(str(e["at"]) for e in events if e.get("to_status") == "completed")
    out: dict[str, float] = {}
    for (name, start), (_, stop) in zip(marks, [*marks[1:], ("", end)], strict=True):
        out[name] = round(
            (datetime.fromisoformat(stop) - datetime.fromisoformat(start)).total_seconds(), 2
        )
    return out


def main() -> None:
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start",
    }
    for path in FILES:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(
                os.environ,
                RHIZOME_DATABASE_URL=f"sqlite:///{tmp}/rhizome.db",
                RHIZOME_STORAGE_URL=f"{tmp}/storage",
                RHIZOME_LOG_LEVEL="WARNING",
            )
            started = time.monotonic()
            # a wrapper process per run, so its RUSAGE_CHILDREN peak is this run's alone
            added = subprocess.run(
                [sys.executable, "-c", _MEASURE, "add", str(path), "--wait", "--json"],
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.monotonic() - started
            peak_kb = int(added.stderr.strip().splitlines()[-1])
            info = json.loads(added.stdout)
            shown = json.loads(rhizome(["jobs", "show", info["job_id"], "--json"], env).stdout)
            doc = json.loads(rhizome(["docs", "show", info["document_id"], "--json"], env).stdout)
            results[path.name] = {
                "status": info["status"],
                "wall_seconds_end_to_end": round(wall, 1),
                "peak_rss_mb": round(peak_kb / 1024),
                "stages_seconds": stage_times(shown["events"]),
                "words": doc["document"]["word_count"],
                "pages": doc["document"]["page_count"],
                "chunks": len(doc["chunks"]),
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
