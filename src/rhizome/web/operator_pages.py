"""The operator's pages: the dashboard (charts over a time window), the Stats view
(p50/p95 per job type and stage) and the Workers page. Live: the script re-reads the
page's part (``?partial=1``) when jobs change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from rhizome.web import charts
from rhizome.web.charts import Series
from rhizome.web.rendering import render, show_hidden
from rhizome.web.services import dashboard
from rhizome.web.state import StateDep, UserDep

router = APIRouter(include_in_schema=False)


def _windows(current: str) -> list[dict[str, Any]]:
    return [
        {"name": w.name, "label": w.label, "on": w.name == current}
        for w in dashboard.WINDOWS.values()
    ]


def _charts(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The overview's series drawn as SVG, each with its legend."""
    buckets = data["buckets"]
    labels = {t["name"]: t["label"] for t in data["types"]}
    colors = {t["name"]: charts.color(i) for i, t in enumerate(data["types"])}
    done = [Series(t, labels.get(t, t), v, colors[t]) for t, v in sorted(data["completed"].items())]
    failed = [Series(t, labels.get(t, t), v, colors[t]) for t, v in sorted(data["failed"].items())]
    depth = [
        Series(s, data["depth_labels"][s], v, charts.STATUS_COLORS[s])
        for s, v in data["depth"].items()
    ]
    claim = [
        Series("p50", "p50", data["claim_latency"]["p50"], charts.color(0)),
        Series("p95", "p95", data["claim_latency"]["p95"], charts.color(3), dashed=True),
    ]
    runs: list[Series] = []
    for t, v in sorted(data["run_time"].items()):
        runs.append(Series(f"{t}-p50", f"{labels.get(t, t)} p50", v["p50"], colors[t]))
        runs.append(Series(f"{t}-p95", f"{labels.get(t, t)} p95", v["p95"], colors[t], dashed=True))
    per = data["bucket_label"]
    return [
        {
            "id": "chart-completed",
            "title": f"Completed {per}, by job type",
            "svg": charts.bar_chart("Completed jobs", buckets, done),
            "legend": charts.legend(done),
        },
        {
            "id": "chart-failed",
            "title": f"Failed {per}, by job type",
            "svg": charts.bar_chart("Failed jobs", buckets, failed),
            "legend": charts.legend(failed),
        },
        {
            "id": "chart-depth",
            "title": "Queue depth by status",
            "svg": charts.line_chart("Queue depth", buckets, depth),
            "legend": charts.legend(depth),
        },
        {
            "id": "chart-claim",
            "title": "Claim latency (due → claimed)",
            "svg": charts.line_chart("Claim latency", buckets, claim, unit="s"),
            "legend": charts.legend(claim),
        },
        {
            "id": "chart-runtime",
            "title": "Run time of completed jobs, by job type",
            "svg": charts.line_chart("Run time", buckets, runs, unit="s"),
            "legend": charts.legend(runs),
        },
    ]


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(
    request: Request,
    state: StateDep,
    user: UserDep,
    window: Annotated[str | None, Query(max_length=10)] = None,
    partial: bool = False,
) -> HTMLResponse:
    w = dashboard.window_of(window)
    data = dashboard.overview(state, user, w, include_hidden=show_hidden(request))
    ctx = {
        "page": "dashboard",
        "window": w.name,
        "windows": _windows(w.name),
        "data": data,
        "charts": _charts(data),
        "partial_url": f"/dashboard?window={w.name}",
    }
    return render(request, "_dashboard.html" if partial else "dashboard.html", ctx)


@router.get("/stats", response_class=HTMLResponse)
def stats_page(
    request: Request,
    state: StateDep,
    user: UserDep,
    window: Annotated[str | None, Query(max_length=10)] = None,
    partial: bool = False,
) -> HTMLResponse:
    w = dashboard.window_of(window or "day")
    data = dashboard.stats(state, user, w, include_hidden=show_hidden(request))
    ctx = {
        "page": "stats",
        "window": w.name,
        "windows": _windows(w.name),
        "data": data,
        "partial_url": f"/stats?window={w.name}",
    }
    return render(request, "_stats.html" if partial else "stats.html", ctx)


@router.get("/workers", response_class=HTMLResponse)
def workers_page(
    request: Request, state: StateDep, user: UserDep, partial: bool = False
) -> HTMLResponse:
    data = dashboard.workers(state, user)
    ctx = {"page": "workers", "workers": data["workers"], "partial_url": "/workers"}
    return render(request, "_workers.html" if partial else "workers.html", ctx)
