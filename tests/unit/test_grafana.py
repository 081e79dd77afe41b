"""The Grafana dashboard in the repository reads only metrics that /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rhizome.jobs.metrics import WorkerMetrics
from rhizome.jobs.store import open_store
from rhizome.web.metrics import JobCollector

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "rhizome-jobs.json"


def _exposed(tmp_path: Path) -> set[str]:
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        metrics = WorkerMetrics()  # one of each series, so every family has samples
        metrics.run("noop", 0.2, "completed")
        metrics.count("claims", "noop")
        metrics.observe("claim_latency_seconds", "noop", 0.01)
        store.add_metrics("w", metrics.take())
        names: set[str] = set()
        for family in JobCollector(store, None).collect():
            names |= {sample.name for sample in family.samples} | {family.name}
        return names
    finally:
        store.close()


def test_every_query_reads_an_exposed_metric(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\brhizome_[a-z_]+", e)}
    assert len(exprs) >= 10 and used
    exposed = _exposed(tmp_path)
    missing = {m for m in used if m not in exposed and m.removesuffix("_total") not in exposed}
    assert not missing, missing
    assert {"rhizome_job_runs_total", "rhizome_job_run_seconds_bucket"} <= used
    assert "rhizome_job_claim_latency_seconds_bucket" in used
