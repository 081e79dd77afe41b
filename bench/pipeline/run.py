"""End-to-end pipeline benchmark: `rhizome add FILE --wait` in a fresh process on a fresh
SQLite library, for Moby-Dick and the GeoTopo thesis, with the embedding model on PyTorch
and on ONNX Runtime (int8, fp32) in the same run. Reports wall time, peak memory (RSS of
the process), per-stage durations from the job's timeline, and the load average around
each run (the machine may be shared).

    .venv/bin/python bench/pipeline/run.py                        # torch, int8, fp32; 2 rounds
    .venv/bin/python bench/pipeline/run.py --precisions torch int8 --rounds 3 --files moby

Rounds interleave the precisions (torch, int8, fp32, torch, int8, …) so a change of load
hits them alike; ratios are taken within a round. The ONNX export is made once into a
fresh model cache before the rounds and timed on its own ("first use"): the first
`rhizome add` on a machine pays it once, every later process loads the cached file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[2] / "shared" / "corpus"
FILES = {
    "moby": CORPUS / "epub" / "moby-dick.epub",
    "geotopo": CORPUS / "pdf" / "GeoTopo-komprimiert.pdf",
}


_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run([sys.executable, '-m', 'rhizome.cli', *sys.argv[1:]],"
    " stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(r.ru_utime + r.ru_stime, file=sys.stderr)\n"
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


def add_once(path: Path, precision: str, cache: Path) -> dict[str, object]:
    """One `rhizome add PATH --wait` in a fresh process on a fresh library."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(
            os.environ,
            RHIZOME_DATABASE_URL=f"sqlite:///{tmp}/rhizome.db",
            RHIZOME_STORAGE_URL=f"{tmp}/storage",
            RHIZOME_LOG_LEVEL="WARNING",
            RHIZOME_EMBEDDER="minilm",
            RHIZOME_EMBEDDING_PRECISION=precision,
            RHIZOME_MODEL_CACHE_DIR=str(cache),
        )
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        # a wrapper process per run, so its RUSAGE_CHILDREN figures are this run's alone
        added = subprocess.run(
            [sys.executable, "-c", _MEASURE, "add", str(path), "--wait", "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - started
        lines = added.stderr.strip().splitlines()
        peak_kb, cpu = int(lines[-2]), float(lines[-1])
        info = json.loads(added.stdout)
        shown = json.loads(rhizome(["jobs", "show", info["job_id"], "--json"], env).stdout)
        doc = json.loads(rhizome(["docs", "show", info["document_id"], "--json"], env).stdout)
        stages = stage_times(shown["events"])
        chunks = len(doc["chunks"])
        return {
            "precision": precision,
            "status": info["status"],
            "wall_seconds_end_to_end": round(wall, 1),
            "cpu_seconds": round(cpu, 1),
            "peak_rss_mb": round(peak_kb / 1024),
            "stages_seconds": stages,
            "embed_chunks_per_second": round(chunks / max(stages.get("embed", 0.0), 1e-9), 1),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "words": doc["document"]["word_count"],
            "pages": doc["document"]["page_count"],
            "chunks": chunks,
        }


def export_once(cache: Path) -> dict[str, object]:
    """The first use on a machine: the ONNX export (and its check) into an empty cache."""
    code = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from rhizome.pipeline.minilm_onnx import ensure_exported\n"
        "t = time.monotonic()\n"
        "e = ensure_exported(Path(sys.argv[1]))\n"
        "print(json.dumps({'seconds': round(time.monotonic() - t, 1),"
        " 'checks': {p: e.check(p) for p in ('fp32', 'int8')},"
        " 'sizes_mb': {p: round(e.path(p).stat().st_size / 2**20, 1)"
        " for p in ('fp32', 'int8')}}))\n"
    )
    load = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-c", code, str(cache)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average"] = round(load, 1)
    return result


def summary(runs: list[dict[str, object]], precisions: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in precisions:
        walls = [float(r["wall_seconds_end_to_end"]) for r in runs if r["precision"] == p]  # type: ignore[arg-type]
        embeds = [float(r["stages_seconds"]["embed"]) for r in runs if r["precision"] == p]  # type: ignore[index]
        out[p] = {
            "wall_min_median_max": [min(walls), statistics.median(walls), max(walls)],
            "embed_min_median_max": [min(embeds), statistics.median(embeds), max(embeds)],
        }
    if "torch" in precisions:
        rounds = len([r for r in runs if r["precision"] == "torch"])
        for p in precisions:
            if p == "torch":
                continue
            ratios = []
            for i in range(rounds):
                t = [r for r in runs if r["precision"] == "torch"][i]
                o = [r for r in runs if r["precision"] == p][i]
                ratios.append(
                    round(
                        float(t["wall_seconds_end_to_end"]) / float(o["wall_seconds_end_to_end"]),  # type: ignore[arg-type]
                        2,
                    )
                )
            out[f"torch/{p} end-to-end ratio per round"] = ratios
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", nargs="+", default=["torch", "int8", "fp32"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--files", nargs="+", default=list(FILES), choices=list(FILES))
    parser.add_argument("--cache", help="an existing model cache (skips the first-use export)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache) if args.cache else Path(tmp) / "models"
        if not args.cache and any(p != "torch" for p in args.precisions):
            results["first_use_export"] = export_once(cache)
            print(json.dumps({"first_use_export": results["first_use_export"]}), flush=True)
        for name in args.files:
            runs = []
            for r in range(args.rounds):
                for precision in args.precisions:
                    run = add_once(FILES[name], precision, cache)
                    run["round"] = r + 1
                    runs.append(run)
                    print(json.dumps({FILES[name].name: run}), flush=True)
            results[FILES[name].name] = {
                "runs": runs,
                "summary": summary(runs, args.precisions),
            }
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
