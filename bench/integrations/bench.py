"""Integrations benchmark: a Readwise import of 1,000 highlights against Moby-Dick
(highlights/s), and the Obsidian sync of a 1,000-note vault with no change and with one
changed note (target: the no-change sync under 2 s).

    .venv/bin/python bench/integrations/bench.py                 # SQLite
    .venv/bin/python bench/integrations/bench.py --pg postgresql://postgres@127.0.0.1:5432/postgres

Each job runs to the end through the handler-author harness (``run_inline``: enqueue,
claim, the handler, checkpoints, completion), in this process, with the hash embedder
(the matching is text-based; the sync's re-embedding of the one changed note is then
negligible). Results are printed and written to ``bench/integrations/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("RHIZOME_EMBEDDER", "hash")
os.environ.setdefault("RHIZOME_LOG_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from rhizome.app import BUILTIN_MIGRATIONS  # noqa: E402
from rhizome.handlers import load_builtin_handlers  # noqa: E402
from rhizome.jobs.store import SqlJobStore, open_store  # noqa: E402
from rhizome.jobs.testing import run_inline  # noqa: E402
from rhizome.library.highlight_match import normalize  # noqa: E402
from rhizome.library.ingest import add_bytes  # noqa: E402
from rhizome.library.integrations import (  # noqa: E402
    request_obsidian_export,
    request_obsidian_sync,
    request_readwise_file,
)
from rhizome.library.repo import Library  # noqa: E402
from rhizome.library.vault import VaultRepo  # noqa: E402
from rhizome.pipeline.chunk import chunk_markdown  # noqa: E402
from rhizome.pipeline.embed import HashEmbedder  # noqa: E402
from rhizome.storage import LocalStorage  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
WORDS = [
    "harbour",
    "tide",
    "quay",
    "lantern",
    "orchard",
    "meadow",
    "granite",
    "river",
    "ledger",
    "compass",
    "anchor",
    "willow",
    "copper",
    "lattice",
    "thistle",
    "beacon",
    "harvest",
    "cellar",
    "parish",
    "estuary",
]


def _open(url: str | None, tmp: Path) -> SqlJobStore:
    if url is None:
        return open_store(f"sqlite:///{tmp / 'bench.db'}", migrations=BUILTIN_MIGRATIONS)
    import psycopg

    name = f"rhizome_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = url.rsplit("/", 1)[0]
    store = open_store(f"{base}/{name}", migrations=BUILTIN_MIGRATIONS)
    store.bench_cleanup = (url, name)  # type: ignore[attr-defined]
    return store


def _close(store: SqlJobStore) -> None:
    cleanup = getattr(store, "bench_cleanup", None)
    store.close()
    if cleanup:
        import psycopg

        with psycopg.connect(cleanup[0], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{cleanup[1]}" WITH (FORCE)')


# --- Readwise ------------------------------------------------------------------------------------


def _highlights(content: str, n: int, seed: int = 7) -> tuple[str, dict[str, int]]:
    """A Readwise CSV of ``n`` highlights of Moby-Dick: most quoted exactly, some with
    straight quotes and ``--`` where the book has curly quotes and em dashes, some with a
    word changed, some not in the book."""
    rng = random.Random(seed)
    start = content.index("# Chapter 1. Loomings.")
    sentences = [
        (m.start(), m.group().strip())
        for m in re.finditer(r"[A-Z][^.!?\n]{40,240}[.!?]", content[start:])
    ]
    picked = rng.sample(sentences, n)
    kinds = {"exact": 0, "typography": 0, "edited": 0, "absent": 0}
    rows = ["Highlight,Book Title,Book Author,Location Type,Location"]
    for i, (at, text) in enumerate(picked):
        r = i % 20
        if r < 14:
            kind = "exact"
        elif r < 17:
            kind = "typography"
            text = (
                text.replace("\u2019", "'")
                .replace("\u201c", '"')
                .replace("\u201d", '"')
                .replace("\u2014", "--")
            )
        elif r < 19:
            kind = "edited"
            words = text.split()
            j = rng.randrange(len(words))
            words[j] = rng.choice(WORDS)
            text = " ".join(words)
        else:
            kind = "absent"
            text = " ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "."
        kinds[kind] += 1
        location = (start + at) // 120
        quoted = '"' + text.replace('"', '""') + '"'
        rows.append(f"{quoted},Moby-Dick,Herman Melville,location,{location}")
    return "\n".join(rows) + "\n", kinds


def bench_readwise(url: str | None, n: int) -> dict[str, Any]:
    normalize.cache_clear()  # each store's run starts cold
    with tempfile.TemporaryDirectory(prefix="rhizome-bench-") as tmp_name:
        tmp = Path(tmp_name)
        store = _open(url, tmp)
        storage = LocalStorage(tmp / "storage")
        try:
            path = CORPUS / "epub" / "moby-dick.epub"
            added = add_bytes(store, storage, path.read_bytes(), filename=path.name)
            run_inline("process_document", job_id=added.job.id, store=store, storage=storage)
            doc = Library(store).get_document(added.document.id, "local")
            content = storage.get(f"{doc.storage_folder}/content.md").decode()
            csv, kinds = _highlights(content, n)
            job = request_readwise_file(store, storage, "local", csv.encode(), "bench.csv")
            t0 = time.perf_counter()
            run = run_inline("readwise_import", job_id=job.id, store=store, storage=storage)
            seconds = time.perf_counter() - t0
            assert run.output is not None, run.job.error_message
            again = request_readwise_file(store, storage, "local", csv.encode(), "bench.csv")
            t1 = time.perf_counter()
            second = run_inline("readwise_import", job_id=again.id, store=store, storage=storage)
            repeat = time.perf_counter() - t1
            assert second.output is not None
            return {
                "highlights": n,
                "generated": kinds,
                "seconds": round(seconds, 3),
                "highlights_per_second": round(n / seconds, 1),
                "outcome": run.output["counts"],
                "reimport_seconds": round(repeat, 3),
                "reimport_outcome": second.output["counts"],
                "book_chars": len(content),
            }
        finally:
            _close(store)


# --- Obsidian ------------------------------------------------------------------------------------


def _ready(store: SqlJobStore, storage: LocalStorage, i: int, embedder: HashEmbedder) -> str:
    rng = random.Random(i)
    library = Library(store)
    title = f"Note {i:04d} " + " ".join(rng.choice(WORDS) for _ in range(2))
    paragraphs = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 90))).capitalize() + "."
        for _ in range(4)
    ]
    content = f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n"
    doc = library.create_document(user_id="local", title=title, source_type="markdown")
    storage.put(f"{doc.storage_folder}/content.md", content.encode())
    pieces = chunk_markdown(content)
    chunks = library.replace_chunks(
        doc.id,
        "local",
        [
            {
                "index": p.index,
                "text": p.text,
                "start": p.start,
                "end": p.end,
                "token_count": p.token_count,
                "heading_path": p.heading_path,
            }
            for p in pieces
        ],
    )
    library.set_embeddings(
        "local", [c.id for c in chunks], embedder.embed([c.text for c in chunks])
    )
    manifest = {"document_id": doc.id, "embedding_model": embedder.name, "files": []}
    storage.put(f"{doc.storage_folder}/manifest.json", json.dumps(manifest).encode())
    library.update_document(doc.id, "local", status="ready", chunk_count=len(chunks))
    return doc.id


def _timed(
    store: SqlJobStore, storage: LocalStorage, job_type: str, job_id: str
) -> tuple[float, Any]:
    t0 = time.perf_counter()
    run = run_inline(job_type, job_id=job_id, store=store, storage=storage)
    seconds = time.perf_counter() - t0
    assert run.output is not None, run.job.error_message
    return seconds, run.output


def bench_vault(url: str | None, n: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rhizome-bench-") as tmp_name:
        tmp = Path(tmp_name)
        store = _open(url, tmp)
        storage = LocalStorage(tmp / "storage")
        try:
            embedder = HashEmbedder()
            t0 = time.perf_counter()
            ids = [_ready(store, storage, i, embedder) for i in range(n)]
            setup = time.perf_counter() - t0
            vault = tmp / "vault"
            (vault / ".obsidian").mkdir(parents=True)
            VaultRepo(store).save_settings("local", vault_path=str(vault))
            export_s, export_out = _timed(
                store, storage, "obsidian_export", request_obsidian_export(store, "local").id
            )
            no_change = []
            for _ in range(repeats):
                seconds, out = _timed(
                    store, storage, "obsidian_sync", request_obsidian_sync(store, "local").id
                )
                assert out["counts"] == {"unchanged": n}, out["counts"]
                no_change.append(seconds)
            reexport_s, reexport_out = _timed(
                store, storage, "obsidian_export", request_obsidian_export(store, "local").id
            )
            notes = sorted((vault / "Rhizome" / "Documents").iterdir())
            note = notes[n // 2] / f"{notes[n // 2].name}.md"
            note.write_text(note.read_text().replace(".\n\n", ". An edit in Obsidian.\n\n", 1))
            one_s, one_out = _timed(
                store, storage, "obsidian_sync", request_obsidian_sync(store, "local").id
            )
            assert one_out["counts"] == {"changed": 1, "unchanged": n - 1}, one_out["counts"]
            return {
                "notes": n,
                "library_setup_seconds": round(setup, 2),
                "export_seconds": round(export_s, 3),
                "export_counts": export_out["counts"],
                "reexport_unchanged_seconds": round(reexport_s, 3),
                "reexport_counts": reexport_out["counts"],
                "sync_no_change_seconds": [round(s, 3) for s in no_change],
                "sync_no_change_median": round(statistics.median(no_change), 3),
                "sync_one_changed_seconds": round(one_s, 3),
                "documents": len(ids),
            }
        finally:
            _close(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", help="also on PostgreSQL (an admin URL; a database is made)")
    parser.add_argument("--highlights", type=int, default=1000)
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()
    load_builtin_handlers()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": {},
    }
    stores: list[tuple[str, str | None]] = [("sqlite", None)]
    if args.pg:
        stores.append(("postgres", args.pg))
    for name, url in stores:
        print(f"== {name}", flush=True)
        readwise = bench_readwise(url, args.highlights)
        print("readwise:", json.dumps(readwise), flush=True)
        vault = bench_vault(url, args.notes, args.repeats)
        print("vault:", json.dumps(vault), flush=True)
        results["runs"][name] = {"readwise": readwise, "vault": vault}
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
