"""What a starting worker imports: the job types (names, labels, stages, inputs) and the
jobs core, but none of the heavy code behind the handlers (numpy, the pipeline, the
embedding runtimes, rich, the web app), which is imported when a job that needs it runs.

Behaviour, not time: each check runs in a fresh interpreter and reads ``sys.modules``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

HEAVY = (
    "numpy",
    "torch",
    "onnxruntime",
    "onnx",
    "sentence_transformers",
    "transformers",
    "tokenizers",
    "rich",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "rapidfuzz",
    "pygments",
    "rhizome.web",
    "rhizome.pipeline.embed",
    "rhizome.pipeline.extract",
    "rhizome.pipeline.connect.index",
    "rhizome.pipeline.connect.concepts",
    "rhizome.library.embedding_index",
    "rhizome.library.portability",
)

REPORT = """
import atexit, json, sys

HEAVY = {heavy!r}


def report() -> None:
    from rhizome.jobs.registry import registry

    loaded = sorted(h for h in HEAVY if h in sys.modules)
    types = {{
        t.name: [t.label, [s.name for s in t.stages] if not callable(t.stages) else "dynamic"]
        for t in registry.all()
    }}
    sys.__stdout__.write("\\nREPORT " + json.dumps({{"heavy": loaded, "types": types}}) + "\\n")
    sys.__stdout__.flush()


atexit.register(report)
sys.argv = ["rhizome", *{args!r}]
from rhizome.cli import main

main()
"""


def _run(args: list[str], tmp_path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RHIZOME_")}
    env.update(
        RHIZOME_DATABASE_URL=f"sqlite:///{tmp_path / 'rhizome.db'}",
        RHIZOME_STORAGE_URL=str(tmp_path / "storage"),
        RHIZOME_LOG_LEVEL="WARNING",
    )
    code = REPORT.format(heavy=HEAVY, args=args)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=100
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("REPORT "))
    result: dict[str, object] = json.loads(line.removeprefix("REPORT "))
    return result


def test_a_worker_runs_noop_jobs_without_the_heavy_modules(tmp_path: Path) -> None:
    """``rhizome worker --burst`` with a noop job due: the job runs (jobs enqueue, then the
    worker), and the worker process never imported numpy, the pipeline or rich."""
    enqueued = _run(["jobs", "enqueue", "noop", "--count", "3", "--json"], tmp_path)
    ran = _run(["worker", "--burst", "--json"], tmp_path)
    assert ran["heavy"] == [], ran["heavy"]
    assert enqueued["heavy"] == [], enqueued["heavy"]
    types = ran["types"]
    assert isinstance(types, dict)
    # every built-in type is registered with its label and stages all the same: as this
    # process, which imported everything, has them
    from rhizome.handlers import load_builtin_handlers

    expected = {
        t.name: [t.label, [s.name for s in t.stages] if not callable(t.stages) else "dynamic"]
        for t in load_builtin_handlers().all()
        if t.handler.__module__.startswith("rhizome.handlers.")  # not other tests' types
    }
    assert {name: types.get(name) for name in expected} == expected
    assert {"noop", "process_document", "detect_connections", "import_document"} <= set(types)


def test_the_worker_completed_the_jobs(tmp_path: Path) -> None:
    """The lazy imports change nothing about what runs: the noop jobs complete."""
    _run(["jobs", "enqueue", "noop", "--count", "2"], tmp_path)
    _run(["worker", "--burst"], tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RHIZOME_")}
    env.update(
        RHIZOME_DATABASE_URL=f"sqlite:///{tmp_path / 'rhizome.db'}",
        RHIZOME_STORAGE_URL=str(tmp_path / "storage"),
    )
    out = subprocess.run(
        [sys.executable, "-m", "rhizome.cli", "jobs", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
        check=True,
    )
    assert [j["status"] for j in json.loads(out.stdout)] == ["completed", "completed"]


def test_a_handler_imports_what_it_needs_when_it_runs() -> None:
    """The heavy code comes in on the first call: the handlers' own imports resolve."""
    code = """
import json, sys
import rhizome.handlers.connections_common as cc
import rhizome.handlers.process_document as pd
from rhizome.pipeline.connect import combine, ConceptIndex, VectorIndex, semantic_engine
import rhizome.pipeline.connect as connect
print(json.dumps({
    "numpy": "numpy" in sys.modules,
    "combine_is_function": callable(connect.combine) and not hasattr(connect.combine, "__path__")
        and connect.combine.__module__ == "rhizome.pipeline.connect.combine",
    "embedder": callable(pd.get_embedder),
}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=100
    )
    result = json.loads(out.stdout)
    assert result == {"numpy": True, "combine_is_function": True, "embedder": True}
