"""Connection detection through the worker's in-memory library index, against a real
database: cold (a fresh worker loads the library) and warm (the worker already holds it;
a new document arrives and only it is loaded).

    .venv/bin/python bench/pipeline/detect_bench.py --library 100000 [--store sqlite|postgres]
        [--documents 3] [--json results.json]

The library is connect_bench.py's synthetic one (N chunks in documents of 50, ~150-word
texts with topic words and stance sentences, clustered 384-d unit vectors) written through
the library API (documents, chunks, vectors with their model name); each new document has
200 chunks close to 5 library documents and sharing key words with them (a worst case
for the thematic engine). For each new document: its chunks and vectors are written
(the triggers move its version stamp), then ``Detection`` runs as ``detect_connections``
does — refresh of the shared index, the three engines in batches of 64, the merge — and,
separately, the whole ``detect_connections`` job inline (checkpoints per batch, the save).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from connect_bench import CHUNKS_PER_DOC, synthetic  # noqa: E402

MODEL = "bench-model"
ENGINE_BATCH = 64


def write_document(library: Any, title: str, views: list[Any]) -> str:
    doc = library.create_document(user_id="local", title=title, source_type="text")
    stored = library.replace_chunks(
        doc.id,
        "local",
        [
            {"index": i, "text": v.text, "start": 0, "end": len(v.text), "token_count": 200}
            for i, v in enumerate(views)
        ],
    )
    library.set_embeddings(
        "local", [c.id for c in stored], np.stack([v.embedding for v in views]), model=MODEL
    )
    library.update_document(doc.id, "local", status="ready")
    return str(doc.id)


def detect(library: Any, document_id: str) -> dict[str, Any]:
    from rhizome.handlers.connections_common import Detection
    from rhizome.pipeline.connect import ENGINES, Weights

    times: dict[str, float] = {}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    detection = Detection(library, document_id, "local", Weights())
    new = detection.new  # the refresh happens here
    times["refresh"] = time.perf_counter() - t0
    found: dict[str, list[list[Any]]] = {}
    for engine in ENGINES:
        t = time.perf_counter()
        rows: list[list[Any]] = []
        for start in range(0, len(new), ENGINE_BATCH):
            rows += detection.run_batch(engine, new[start : start + ENGINE_BATCH])
        found[engine] = rows
        times[engine] = time.perf_counter() - t
    t = time.perf_counter()
    merged = detection.combine(found)
    times["combine"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    times["total_cpu"] = time.process_time() - cpu0
    return {
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "refresh": vars(detection.shared.last),
        "connections": len(merged),
        "by_engine": {e: len(r) for e, r in found.items()},
        "library_chunks": len(detection.shared),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", type=int, default=100_000)
    parser.add_argument("--documents", type=int, default=3, help="new documents, one by one")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json")
    parser.add_argument(
        "--db", help="a SQLite file kept from an earlier run (its library is reused)"
    )
    args = parser.parse_args()

    from rhizome.app import BUILTIN_MIGRATIONS
    from rhizome.handlers import load_builtin_handlers
    from rhizome.jobs.store import open_store
    from rhizome.jobs.testing import run_inline
    from rhizome.library import Library
    from rhizome.library.embedding_index import clear_indexes
    from rhizome.storage import LocalStorage

    load_builtin_handlers()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "store": args.store,
        "library_chunks": args.library,
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    tmp = tempfile.mkdtemp(prefix="detect-bench-")
    admin = os.environ.get("RHIZOME_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    pg_name = f"rhizome_detect_{secrets.token_hex(3)}"
    reuse = bool(args.db and Path(args.db).exists())
    if args.store == "sqlite":
        url = f"sqlite:///{Path(args.db).resolve()}" if args.db else f"sqlite:///{tmp}/bench.db"
    else:
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        url = admin.rsplit("/", 1)[0] + "/" + pg_name
    store = open_store(url, migrations=BUILTIN_MIGRATIONS)
    storage = LocalStorage(Path(tmp) / "storage")
    library = Library(store)
    try:
        t0 = time.perf_counter()
        views, new_views = synthetic(args.library)
        result["generate_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        if reuse:  # the library is there: only the new documents of that run go
            for doc in library.list_documents("local", limit=1_000_000):
                if doc.title.startswith(("new", "job")):
                    library.delete_document(doc.id, "local")
        else:
            for start in range(0, len(views), CHUNKS_PER_DOC):
                write_document(
                    library,
                    f"doc {start // CHUNKS_PER_DOC}",
                    views[start : start + CHUNKS_PER_DOC],
                )
        result["write_library_s"] = round(time.perf_counter() - t0, 1)

        # cold: a fresh worker meets its first detection (loads the whole library)
        clear_indexes()
        previous = write_document(library, "new 0", new_views)
        result["cold"] = detect(library, previous)
        print(json.dumps({"cold": result["cold"]}), flush=True)
        # warm: the worker holds the index; each new document (the same 200 chunks under a
        # new id, the previous copy deleted) is loaded alone
        warm = []
        for i in range(1, args.documents + 1):
            library.delete_document(previous, "local")
            previous = write_document(library, f"new {i}", new_views)
            warm.append(detect(library, previous))
            print(json.dumps({"warm": warm[-1]}), flush=True)
        result["warm"] = warm
        # the whole detect_connections job, warm (checkpoints per batch, the save)
        jobs = []
        for i in range(2):
            library.delete_document(previous, "local")
            doc = previous = write_document(library, f"job {i}", new_views)
            t0 = time.perf_counter()
            run = run_inline(
                "detect_connections",
                {"document_id": doc},
                store=store,
                storage=storage,
                entity_type="document",
                entity_id=doc,
            )
            jobs.append(
                {"seconds": round(time.perf_counter() - t0, 3), "status": str(run.job.status)}
            )
            print(json.dumps({"job": jobs[-1]}), flush=True)
        result["job_warm"] = jobs
        result["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        store.close()
        if args.store == "postgres":
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
