"""Embedding throughput and connection-detection time vs library size.

    .venv/bin/python bench/pipeline/connect_bench.py               # all of it (~3 min on 2 cores)
    .venv/bin/python bench/pipeline/connect_bench.py --sizes 1000 10000 --skip-embed

1. **Embedding** — ~200 real chunks of ~150 words from Moby-Dick (shared/corpus, zipfile +
   a crude tag strip): chunks/s and tokens/s of the real MiniLM model (model load timed
   separately), and of the model-free HashEmbedder.
2. **Connections** — a synthetic library of N chunks (clustered random 384-d unit vectors,
   50 chunks per document; texts drawn from a Zipf vocabulary with topic words and stance
   sentences, ~150 words) and a new document of 200 chunks related to a few library
   documents. Each size runs in its own process (so peak RSS is per size) and measures:
   index build, ``semantic_engine`` alone, the concept index build, and
   ``detect_connections`` end to end — cold (builds both indexes) and warm (indexes kept
   by the worker, as a long-running worker would), plus tracemalloc peak and max RSS.
   ``--semantic-only-sizes`` adds sizes where only the vector search runs (e.g. 1M).

Results print as JSON lines (``--json FILE`` also writes them to a file); the recorded
numbers are in bench/pipeline/README-connect.md.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
MOBY = CORPUS / "epub" / "moby-dick.epub"
DIM = 384
NEW_CHUNKS = 200
CHUNKS_PER_DOC = 50


# --- 1. embedding throughput -------------------------------------------------------------


def moby_chunks(n: int = 200, words: int = 150, skip_words: int = 5000) -> list[str]:
    """~150-word windows of Moby-Dick: spine order from the OPF, tags stripped."""
    with zipfile.ZipFile(MOBY) as zf:
        container = zf.read("META-INF/container.xml").decode()
        opf_path = re.search(r'full-path="([^"]+)"', container).group(1)  # type: ignore[union-attr]
        opf = zf.read(opf_path).decode()
        base = opf_path.rsplit("/", 1)[0] + "/" if "/" in opf_path else ""
        manifest = dict(re.findall(r'<item[^>]*id="([^"]+)"[^>]*href="([^"]+)"', opf))
        manifest.update(
            {i: h for h, i in re.findall(r'<item[^>]*href="([^"]+)"[^>]*id="([^"]+)"', opf)}
        )
        spine = re.findall(r'<itemref[^>]*idref="([^"]+)"', opf)
        text = []
        for idref in spine:
            body = zf.read(base + manifest[idref]).decode("utf-8", "replace")
            body = re.sub(r"(?s)<(script|style|head)\b.*?</\1>", " ", body)
            text.append(html.unescape(re.sub(r"<[^>]+>", " ", body)))
    tokens = " ".join(text).split()[skip_words:]
    return [" ".join(tokens[i : i + words]) for i in range(0, n * words, words)][:n]


def bench_embedding(n: int, repeat: int = 3) -> dict[str, Any]:
    """Best of ``repeat`` runs (the machine may be shared)."""
    from rhizome.pipeline.embed import HashEmbedder, MiniLMEmbedder

    chunks = moby_chunks(n)
    t0 = time.perf_counter()
    model = MiniLMEmbedder()
    model.embed(["warm up"])  # loads torch + the model
    load_s = time.perf_counter() - t0
    tokenizer = model._model.tokenizer
    token_counts = [len(tokenizer(c, verbose=False)["input_ids"]) for c in chunks]
    truncated = sum(1 for t in token_counts if t > model.max_tokens)
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        vectors = model.embed(chunks)
        runs.append(time.perf_counter() - t0)
    minilm_s = min(runs)
    used_tokens = sum(min(t, model.max_tokens) for t in token_counts)
    hash_embedder = HashEmbedder()
    t0 = time.perf_counter()
    hash_embedder.embed(chunks)
    hash_s = time.perf_counter() - t0
    import torch

    return {
        "chunks": len(chunks),
        "words_per_chunk": round(sum(len(c.split()) for c in chunks) / len(chunks), 1),
        "tokens_per_chunk": round(sum(token_counts) / len(chunks), 1),
        "truncated_chunks": truncated,
        "torch_threads": torch.get_num_threads(),
        "model_load_s": round(load_s, 2),
        "minilm_s": round(minilm_s, 2),
        "minilm_runs_s": [round(r, 2) for r in runs],
        "load_average": load_average(),
        "minilm_chunks_per_s": round(len(chunks) / minilm_s, 1),
        "minilm_tokens_per_s": round(used_tokens / minilm_s),
        "hash_chunks_per_s": round(len(chunks) / hash_s),
        "shape": list(vectors.shape),
    }


# --- 2. synthetic library ----------------------------------------------------------------

_SYLLABLES = [a + b for a in "bcdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "or")]
_FILLER = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "by",
    "this",
    "be",
    "are",
    "from",
    "at",
    "an",
]
_STANCE = [
    "{a} {b} increases the {c} of {d}.",
    "{a} {b} does not increase the {c} of {d}.",
    "{a} {b} decreases the {c} of {d}.",
    "The {a} of {b} is safe for {c}.",
    "The {a} of {b} is dangerous for {c}.",
]


class TextMaker:
    """Sentences from a Zipf vocabulary; each document favours its own topic words."""

    def __init__(self, seed: int, vocab_size: int = 30000) -> None:
        self.rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < vocab_size:
            words.add("".join(self.rng.choices(_SYLLABLES, k=self.rng.randint(2, 4))))
        self.vocab = sorted(words)
        ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
        self.cum = np.cumsum(1.0 / ranks) / np.sum(1.0 / ranks)

    def topic(self, k: int = 40) -> list[str]:
        return self.rng.sample(self.vocab[500:], k)

    def _zipf(self, n: int) -> list[str]:
        idx = np.searchsorted(self.cum, [self.rng.random() for _ in range(n)])
        return [self.vocab[min(int(i), len(self.vocab) - 1)] for i in idx]

    def chunk(self, topic: list[str], words: int = 150) -> str:
        out: list[str] = []
        while sum(len(s.split()) for s in out) < words:
            if self.rng.random() < 0.12:
                a, b, c, d = self.rng.sample(topic, 4)
                out.append(self.rng.choice(_STANCE).format(a=a, b=b, c=c, d=d).capitalize())
                continue
            n = self.rng.randint(10, 18)
            content = self._zipf(n // 2) + self.rng.sample(topic, 3)
            mixed = content + self.rng.sample(_FILLER, n - len(content) if n > len(content) else 1)
            self.rng.shuffle(mixed)
            out.append(" ".join(mixed).capitalize() + ".")
        return " ".join(out)


def synthetic(n_library: int, seed: int = 1) -> tuple[Any, Any]:
    """(library ChunkViews, new ChunkViews): the new document is near 5 library docs
    (embeddings) and shares key words with them (texts)."""
    from rhizome.pipeline.connect import ChunkView

    rng = np.random.default_rng(seed)
    maker = TextMaker(seed)
    n_docs = max(1, n_library // CHUNKS_PER_DOC)
    centroids = rng.standard_normal((n_docs + 1, DIM)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    topics = [maker.topic() for _ in range(n_docs + 1)]

    def vectors(centre: np.ndarray, n: int, spread: float) -> np.ndarray:
        noise = rng.standard_normal((n, DIM)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        m = centre[None, :] + spread * noise
        unit: np.ndarray = m / np.linalg.norm(m, axis=1, keepdims=True)
        return unit

    library = []
    for d in range(n_docs):
        size = min(CHUNKS_PER_DOC, n_library - d * CHUNKS_PER_DOC)
        vecs = vectors(centroids[d], size, 0.9)
        for i in range(size):
            library.append(ChunkView(f"d{d}#{i}", f"d{d}", maker.chunk(topics[d]), vecs[i]))
    related = list(range(min(5, n_docs)))
    new = []
    for i in range(NEW_CHUNKS):
        j = related[i % len(related)]
        centre = 0.8 * centroids[j] + 0.6 * centroids[n_docs]
        centre /= np.linalg.norm(centre)
        vec = vectors(centre, 1, 0.7)[0]
        # its topic words: its own plus key words of the 5 related documents, so the
        # thematic engine has bridges to find (a worst case for its run time)
        topic = topics[n_docs][:20] + [w for r in related for w in topics[r][:4]]
        new.append(ChunkView(f"new#{i}", "new", maker.chunk(topic), vec))
    return library, new


def bench_connections(n: int, semantic_only: bool) -> dict[str, Any]:
    from rhizome.pipeline.connect import (
        VectorIndex,
        build_index,
        concept_index_for,
        detect_connections,
        semantic_engine,
    )

    result: dict[str, Any] = {
        "library_chunks": n,
        "new_chunks": NEW_CHUNKS,
        "load_average_at_start": load_average(),
    }
    if semantic_only:
        rng = np.random.default_rng(2)
        t0 = time.perf_counter()
        index = VectorIndex(DIM)
        step = 100_000
        from rhizome.pipeline.connect import ChunkView

        for start in range(0, n, step):
            m = rng.standard_normal((min(step, n - start), DIM)).astype(np.float32)
            index.add(
                [f"c{i}" for i in range(start, start + len(m))],
                [f"d{i // CHUNKS_PER_DOC}" for i in range(start, start + len(m))],
                m,
            )
        result["index_build_s"] = round(time.perf_counter() - t0, 2)
        q = rng.standard_normal((NEW_CHUNKS, DIM)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        new = [ChunkView(f"new#{i}", "new", "", q[i]) for i in range(NEW_CHUNKS)]
        tracemalloc.start()
        t0 = time.perf_counter()
        semantic_engine(new, index, threshold=0.0)
        result["semantic_s"] = round(time.perf_counter() - t0, 3)
        result["search_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
        result["max_rss_mb"] = peak_rss_mb()
        return result

    t0 = time.perf_counter()
    library, new = synthetic(n)
    result["generate_s"] = round(time.perf_counter() - t0, 2)
    pool = library + new

    t0 = time.perf_counter()
    index = build_index(pool)
    result["index_build_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    semantic = semantic_engine(new, index)
    result["semantic_s"] = round(time.perf_counter() - t0, 3)
    result["semantic_pairs"] = len(semantic)

    t0 = time.perf_counter()
    concepts_index = concept_index_for(pool)
    result["concept_index_build_s"] = round(time.perf_counter() - t0, 2)

    timings: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(engine: str, done: int, total: int) -> None:
        if done == total:
            now = time.perf_counter()
            timings[engine] = round(now - last[0], 3)
            last[0] = now

    t0 = last[0] = time.perf_counter()
    warm = detect_connections(
        new, pool, index=index, concepts_index=concepts_index, progress=progress
    )
    result["detect_warm_s"] = round(time.perf_counter() - t0, 3)
    result["engine_s"] = timings
    result["connections"] = len(warm)
    result["by_engine"] = {
        e: sum(1 for c in warm if c.scores[e] > 0)
        for e in ("semantic", "contradiction", "thematic")
    }

    # memory held by the two indexes a worker would keep
    result["vector_index_mb"] = round(index.nbytes / 2**20, 1)
    result["concept_index_mb"] = round(concepts_index.nbytes / 2**20, 1)

    tracemalloc.start()
    detect_connections(new, pool, index=index, concepts_index=concepts_index)
    result["detect_warm_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    tracemalloc.stop()

    t0 = time.perf_counter()
    cold = detect_connections(new, pool)
    result["detect_cold_s"] = round(time.perf_counter() - t0, 2)
    assert [(c.source_chunk_id, c.target_chunk_id) for c in cold] == [
        (c.source_chunk_id, c.target_chunk_id) for c in warm
    ]
    result["max_rss_mb"] = peak_rss_mb()
    return result


# --- driver --------------------------------------------------------------------------------


def peak_rss_mb() -> int:
    """This process's peak resident memory (VmHWM; ru_maxrss survives exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--semantic-only-sizes", type=int, nargs="*", default=[1000000])
    parser.add_argument("--embed-chunks", type=int, default=200)
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one size, in a child
    args = parser.parse_args()

    if args.one:
        kind, size = args.one.split(":")
        print(json.dumps(bench_connections(int(size), semantic_only=kind == "semantic")))
        return

    results: dict[str, Any] = {"machine": machine()}
    print(json.dumps(results["machine"], indent=2))
    runs = [("full", s) for s in args.sizes] + [("semantic", s) for s in args.semantic_only_sizes]
    results["connections"] = []
    for kind, size in runs:
        out = subprocess.run(
            [sys.executable, __file__, "--one", f"{kind}:{size}"],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["kind"] = kind
        results["connections"].append(row)
        print(f"{kind} {size}:", json.dumps(row))
    if not args.skip_embed:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        results["embedding"] = bench_embedding(args.embed_chunks)
        print("embedding:", json.dumps(results["embedding"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
