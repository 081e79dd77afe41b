"""Export and import of a library built from the corpus: MB/s, documents/s and peak
memory at several library sizes (peak memory must stay flat: the ZIP is streamed).

    .venv/bin/python bench/portability/bench.py [--sizes 25,50,100,200] [--repeat 3]

How the library is built: every readable corpus document (PDF, EPUB, HTML; the encrypted
PDF left out) is processed once by ``process_document`` (hash embedder: the embedding
model is not what is measured), then every chunk gets a 384-dimension vector (the size
MiniLM gives, so the embedding bytes are realistic). A library of N documents is made of
copies of those (new document and chunk ids, every file copied), cycling through the
corpus, with a highlight on each document and connections between neighbours.

Each size is exported and imported ``--repeat`` times (default 3); throughput is from the
best run (the least disturbed by other work on the machine), the median is recorded too.
Each export and each import runs in a fresh child process (``run_inline`` of the job,
SQLite + a local folder); the child reports its wall time and its peak RSS
(``VmHWM``) and its RSS just before the job started, so the job's own peak is the
difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
SKIP = {"libreoffice-writer-password.pdf"}
DIM = 384


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MiB. (``ru_maxrss`` would
    not do: Linux keeps the parent's peak across fork and exec.)"""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def build_base(work: Path) -> tuple[str, Path]:
    """Process every corpus document once; returns (database URL, storage root)."""
    os.environ["RHIZOME_EMBEDDER"] = "hash"
    from rhizome.app import BUILTIN_MIGRATIONS
    from rhizome.handlers import load_builtin_handlers
    from rhizome.jobs.store import open_store
    from rhizome.jobs.worker import Worker, WorkerConfig
    from rhizome.library.ingest import add_bytes
    from rhizome.storage import LocalStorage

    load_builtin_handlers()
    db = f"sqlite:///{work / 'base.db'}"
    storage = LocalStorage(work / "base")
    store = open_store(db, migrations=BUILTIN_MIGRATIONS)
    files = sorted(
        p for sub in ("pdf", "epub", "html") for p in (CORPUS / sub).iterdir() if p.name not in SKIP
    )
    for f in files:
        add_bytes(store, storage, f.read_bytes(), filename=f.name, user_id="base")
    config = WorkerConfig(concurrency=2, burst=True, poll_seconds=0.05)
    Worker(store, storage, load_builtin_handlers(), config).run()
    store.close()
    return db, work / "base"


def make_library(base_db: str, base_root: Path, n: int, db: str, root: Path) -> dict[str, Any]:
    """A library of ``n`` documents: copies of the processed corpus documents."""
    import numpy as np

    from rhizome.app import BUILTIN_MIGRATIONS
    from rhizome.jobs.store import open_store
    from rhizome.library import Library
    from rhizome.library.highlights import Highlights
    from rhizome.library.portability import chunks_json
    from rhizome.storage import LocalStorage

    rng = np.random.default_rng(1)
    src_store = open_store(base_db, migrations=BUILTIN_MIGRATIONS)
    src_lib = Library(src_store)
    src_storage = LocalStorage(base_root)
    bases = [d for d in src_lib.list_documents("base", status="ready", limit=1000)]
    bases.sort(key=lambda d: d.title)
    store = open_store(db, migrations=BUILTIN_MIGRATIONS)
    lib = Library(store)
    storage = LocalStorage(root)
    total_bytes = 0
    ids: list[str] = []
    for i in range(n):
        base = bases[i % len(bases)]
        doc = lib.create_document(
            user_id="local",
            title=f"{base.title} ({i})",
            source_type=base.source_type,
            author=base.author,
            document_id=str(uuid.uuid4()),
            metadata=base.metadata,
        )
        chunks = src_lib.list_chunks(base.id, "base")
        stored = lib.replace_chunks(
            doc.id,
            "local",
            [
                {
                    "index": c.index,
                    "text": c.text,
                    "start": c.start,
                    "end": c.end,
                    "token_count": c.token_count,
                    "heading_path": c.heading_path,
                }
                for c in chunks
            ],
        )
        vectors = rng.standard_normal((len(stored), DIM)).astype("float32")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        lib.set_embeddings("local", [c.id for c in stored], vectors)
        for key in src_storage.list(base.storage_folder):
            name = key.rsplit("/", 1)[-1]
            if name.startswith("stage-") or name == "chunks.json":
                continue
            data = src_storage.get(key)
            storage.put(f"{doc.storage_folder}/{name}", data)
            total_bytes += len(data)
        saved = lib.list_chunks(doc.id, "local")
        payload = chunks_json(doc.id, saved)
        storage.put(f"{doc.storage_folder}/chunks.json", payload)
        total_bytes += len(payload)
        lib.update_document(
            doc.id,
            "local",
            status="ready",
            chunk_count=len(saved),
            word_count=base.word_count,
            page_count=base.page_count,
        )
        content = storage.get(f"{doc.storage_folder}/content.md").decode("utf-8")
        c0 = saved[0]
        end = min(c0.start + 40, c0.end)
        Highlights(store).create(
            doc.id,
            "local",
            text=content[c0.start : end],
            start=c0.start,
            end=end,
            content=content,
            note="bench",
        )
        if ids:
            prev = lib.list_chunks(ids[-1], "local")
            lib.replace_connections(
                doc.id,
                "local",
                [
                    {
                        "source_chunk_id": saved[0].id,
                        "target_chunk_id": prev[0].id,
                        "source_document_id": doc.id,
                        "target_document_id": ids[-1],
                        "scores": {"semantic": 0.7},
                        "combined": 0.7,
                    }
                ],
            )
        ids.append(doc.id)
    chunks_total = sum(len(lib.list_chunks(d, "local")) for d in ids)
    store.close()
    src_store.close()
    return {"documents": n, "chunks": chunks_total, "file_bytes": total_bytes}


def child(mode: str, db: str, root: str, arg: str) -> None:
    """Run one export or import inline and print its measurements as JSON."""
    os.environ["RHIZOME_EMBEDDER"] = "hash"
    from rhizome.app import BUILTIN_MIGRATIONS
    from rhizome.handlers import load_builtin_handlers
    from rhizome.jobs.store import open_store
    from rhizome.jobs.testing import run_inline
    from rhizome.storage import LocalStorage

    load_builtin_handlers()
    store = open_store(db, migrations=BUILTIN_MIGRATIONS)
    storage = LocalStorage(root)
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    if mode == "export":
        run = run_inline("export_documents", {}, store=store, storage=storage)
    else:
        run = run_inline("import_document", {"zip_key": arg}, store=store, storage=storage)
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    assert run.job.status.value == "completed", run.job.error_message
    print(
        json.dumps(
            {"seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak, "output": run.output}
        )
    )


def _run_child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="25,50,100,200")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per size (best and median).")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--child", nargs=4, metavar=("MODE", "DB", "ROOT", "ARG"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="rhizome-bench-port-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": [],
    }
    try:
        t = time.perf_counter()
        base_db, base_root = build_base(work)
        print(f"corpus processed in {time.perf_counter() - t:.1f} s", flush=True)
        from rhizome.app import BUILTIN_MIGRATIONS
        from rhizome.jobs.store import open_store

        for n in sizes:
            db = f"sqlite:///{work / f'lib{n}.db'}"
            root = work / f"lib{n}"
            library = make_library(base_db, base_root, n, db, root)
            exports, imports = [], []
            for r in range(args.repeat):
                exp = _run_child("export", db, str(root), "-")
                exports.append(exp)
                zip_path = root / exp["output"]["path"]
                fresh_db = f"sqlite:///{work / f'fresh{n}-{r}.db'}"
                fresh_root = work / f"fresh{n}-{r}"
                (fresh_root / "imports" / "local").mkdir(parents=True)
                shutil.copy(zip_path, fresh_root / "imports" / "local" / "library.zip")
                open_store(fresh_db, migrations=BUILTIN_MIGRATIONS).close()
                imports.append(
                    _run_child("import", fresh_db, str(fresh_root), "imports/local/library.zip")
                )
                shutil.rmtree(fresh_root, ignore_errors=True)
            exp_s = min(e["seconds"] for e in exports)  # the least disturbed run
            imp_s = min(i["seconds"] for i in imports)
            zip_bytes = exports[-1]["output"]["size"]
            row = {
                **library,
                "zip_bytes": zip_bytes,
                "repeats": args.repeat,
                "load_average_1min": os.getloadavg()[0],
                "export_seconds_best": exp_s,
                "export_seconds_median": statistics.median(e["seconds"] for e in exports),
                "export_seconds_all": [e["seconds"] for e in exports],
                "export_mb_s_files": library["file_bytes"] / 1e6 / exp_s,
                "export_mb_s_zip": zip_bytes / 1e6 / exp_s,
                "export_docs_s": n / exp_s,
                "export_peak_rss_mb": max(e["peak_rss_mb"] for e in exports),
                "export_rss_before_mb": max(e["rss_before_mb"] for e in exports),
                "import_seconds_best": imp_s,
                "import_seconds_median": statistics.median(i["seconds"] for i in imports),
                "import_seconds_all": [i["seconds"] for i in imports],
                "import_mb_s_zip": zip_bytes / 1e6 / imp_s,
                "import_docs_s": n / imp_s,
                "import_peak_rss_mb": max(i["peak_rss_mb"] for i in imports),
                "import_rss_before_mb": max(i["rss_before_mb"] for i in imports),
            }
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
