"""Time between safe points of ``detect_connections`` on a huge document (issue 17: a
96,200-chunk document held a worker for over 10 minutes with no pause honoured).

    .venv/bin/python bench/pipeline/detect_safepoints.py --new-chunks 10000 96200 \
        [--library 2000] [--json results.json] [--db FILE (one size: keep or reuse its data)]

For each size: a synthetic library of ``--library`` chunks (connect_bench.py's: documents
of 50 chunks, ~150-word texts, clustered 384-d vectors) and one new document of N chunks
close to 5 library documents and sharing their key words (a worst case for the thematic
engine), written through the library API into a fresh SQLite database. Then the whole
``detect_connections`` job runs inline in a *cold* worker (it loads the library and the
new document into its index first, as the worker that processed a hostile file would
after a restart), and every safe point is timed: the checkpoints of the engines' and the
merge's batches and the pages of the load. Reported per stage: safe points, the longest,
median and 95th-percentile gap between two of them, and the save (one transaction, not
pause-safe: honours nothing until it is done).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import connect_bench  # noqa: E402
from detect_bench import write_document  # noqa: E402


def run(new_chunks: int, library_chunks: int, db: str | None = None) -> dict[str, Any]:
    from rhizome.app import BUILTIN_MIGRATIONS
    from rhizome.jobs import context
    from rhizome.jobs.store import open_store
    from rhizome.jobs.testing import run_inline
    from rhizome.library import Library
    from rhizome.library.embedding_index import clear_indexes
    from rhizome.storage import LocalStorage

    out: dict[str, Any] = {
        "new_chunks": new_chunks,
        "library_chunks": library_chunks,
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    tmp = tempfile.mkdtemp(prefix="detect-safepoints-")
    reuse = bool(db and Path(db).exists())
    path = Path(db).resolve() if db else Path(tmp) / "bench.db"
    store = open_store(f"sqlite:///{path}", migrations=BUILTIN_MIGRATIONS)
    storage = LocalStorage(Path(tmp) / "storage")
    library = Library(store)
    if reuse:  # a library and new document written by an earlier run: only detect again
        [doc] = [d.id for d in library.list_documents("local", limit=10**6) if d.title == "new"]
        for job_id in store.job_ids_where(job_types=["detect_connections"]):
            store.delete(job_id)
        out["reused"] = str(path)
    else:
        connect_bench.NEW_CHUNKS = new_chunks
        t0 = time.perf_counter()
        views, new_views = connect_bench.synthetic(library_chunks)
        out["generate_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        step = connect_bench.CHUNKS_PER_DOC
        for start in range(0, len(views), step):
            write_document(library, f"doc {start // step}", views[start : start + step])
        doc = write_document(library, "new", new_views)
        out["write_s"] = round(time.perf_counter() - t0, 1)
        del views, new_views

    marks: list[tuple[float, float, str]] = []
    real = context.JobContext.safe_point

    def timed(self: Any) -> None:
        marks.append((time.perf_counter(), time.process_time(), self.current_stage_name() or "-"))
        real(self)

    context.JobContext.safe_point = timed  # type: ignore[method-assign]
    clear_indexes()  # a cold worker
    started = time.perf_counter()
    cpu = time.process_time()
    try:
        job = run_inline(
            "detect_connections",
            {"document_id": doc},
            store=store,
            storage=storage,
            entity_type="document",
            entity_id=doc,
        )
    finally:
        context.JobContext.safe_point = real  # type: ignore[method-assign]
    ended = time.perf_counter()
    out["job_s"] = round(ended - started, 1)
    out["job_cpu_s"] = round(time.process_time() - cpu, 1)
    out["status"] = str(job.job.status)
    out["found"] = (job.output or {}).get("found")
    gaps: dict[str, list[float]] = {}
    cpu_gaps: dict[str, list[float]] = {}
    previous, previous_cpu = started, cpu
    for at, at_cpu, stage in marks:
        gaps.setdefault(stage, []).append(at - previous)
        cpu_gaps.setdefault(stage, []).append(at_cpu - previous_cpu)
        previous, previous_cpu = at, at_cpu
    out["after_last_safe_point_s"] = round(ended - previous, 2)

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "max": round(max(values), 3),
            "median": round(statistics.median(values), 3),
            "p95": round(sorted(values)[int(0.95 * (len(values) - 1))], 3),
            "total": round(sum(values), 1),
        }

    # wall-clock gaps, and the process's CPU seconds in each (the machine is shared: CPU
    # seconds say what the work costs, wall seconds what a user waits at this load)
    out["stages"] = {
        stage: {
            "safe_points": len(values),
            "wall_s": summary(values),
            "cpu_s": summary(cpu_gaps[stage]),
        }
        for stage, values in gaps.items()
    }
    out["max_gap_s"] = round(max(max(v) for v in gaps.values()), 3)
    out["max_gap_cpu_s"] = round(max(max(v) for v in cpu_gaps.values()), 3)
    out["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-chunks", type=int, nargs="+", default=[10_000, 96_200])
    parser.add_argument("--library", type=int, default=2_000)
    parser.add_argument("--json")
    parser.add_argument("--db", help="a SQLite file of an earlier run to reuse (one size)")
    args = parser.parse_args()
    from rhizome.handlers import load_builtin_handlers

    load_builtin_handlers()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": [],
    }
    for n in args.new_chunks:
        result["runs"].append(run(n, args.library, args.db))
        print(json.dumps(result["runs"][-1]), flush=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
