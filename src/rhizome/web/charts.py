"""Server-side SVG charts for the dashboard: stacked bars and lines over time buckets.
Plain markup (no script, no CDN), sized by a viewBox so they scale to their container;
every bar and point has a ``<title>`` for its value on hover."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

PALETTE = ("#3b5bdb", "#2f9e44", "#e67700", "#c92a2a", "#7048e8", "#0c8599", "#d6336c", "#5c940d")
STATUS_COLORS = {"pending": "#868e96", "processing": "#3b5bdb", "paused": "#e67700"}

W, H = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 10, 24


@dataclass(frozen=True)
class Series:
    name: str
    label: str
    values: Sequence[float | None]
    color: str
    dashed: bool = False


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = float(10.0 ** math.floor(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        if value >= 3600:
            return f"{value / 3600:.1f} h"
        if value >= 60:
            return f"{value / 60:.1f} min"
        if value >= 1 or value == 0:
            return f"{value:.3g} s"
        return f"{value * 1000:.3g} ms"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _time_label(epoch: int, span: int) -> str:
    t = datetime.fromtimestamp(epoch, UTC)
    return t.strftime("%a %H:%M" if span > 86400 else "%H:%M")


def _frame(buckets: Sequence[int], top: float, unit: str) -> list[str]:
    """Axes, grid lines and labels."""
    parts = []
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    for i in range(5):
        v = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 4}" y="{y + 3:.1f}" class="tick" text-anchor="end">'
            f"{escape(_fmt(v, unit))}</text>"
        )
    n = len(buckets)
    if n:
        span = buckets[-1] - buckets[0] if n > 1 else 0
        for i in sorted({0, n // 4, n // 2, 3 * n // 4, n - 1}):
            x = LEFT + plot_w * (i + 0.5) / n
            parts.append(
                f'<text x="{x:.1f}" y="{H - 6}" class="tick" text-anchor="middle">'
                f"{escape(_time_label(buckets[i], span))}</text>"
            )
    return parts


def _svg(kind: str, label: str, parts: list[str], points: int) -> Markup:
    return Markup(
        f'<svg class="chart chart-{kind}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(label)}" data-points="{points}" '
        f'preserveAspectRatio="none">{"".join(parts)}</svg>'
    )


def bar_chart(label: str, buckets: Sequence[int], series: Sequence[Series]) -> Markup:
    """Stacked bars: one bar per bucket, one segment per series."""
    n = max(len(buckets), 1)
    totals = [sum((s.values[i] or 0) for s in series) for i in range(len(buckets))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = _frame(buckets, top, "")
    bar_w = max(plot_w / n * 0.8, 0.5)
    points = 0
    for i, bucket in enumerate(buckets):
        x = LEFT + plot_w * i / n + (plot_w / n - bar_w) / 2
        base = 0.0
        for s in series:
            v = float(s.values[i] or 0)
            if v <= 0:
                continue
            h = plot_h * v / top
            y = TOP + plot_h - plot_h * (base + v) / top
            when = _time_label(bucket, 0)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{s.color}" data-series="{escape(s.name)}" data-value="{v:g}">'
                f"<title>{escape(s.label)} {escape(when)}: {v:g}</title></rect>"
            )
            base += v
            points += 1
    return _svg("bar", label, parts, points)


def line_chart(
    label: str, buckets: Sequence[int], series: Sequence[Series], unit: str = ""
) -> Markup:
    """Lines (gaps where a value is missing), with a dot per value."""
    n = max(len(buckets), 1)
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = _frame(buckets, top, unit)
    points = 0
    for s in series:
        path: list[str] = []
        pen_up = True
        for i, v in enumerate(s.values):
            if v is None:
                pen_up = True
                continue
            x = LEFT + plot_w * (i + 0.5) / n
            y = TOP + plot_h - plot_h * float(v) / top
            path.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
            pen_up = False
            points += 1
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{s.color}" '
                f'data-series="{escape(s.name)}" data-value="{float(v):g}">'
                f"<title>{escape(s.label)} {escape(_time_label(buckets[i], 0))}: "
                f"{escape(_fmt(float(v), unit))}</title></circle>"
            )
        if path:
            dash = ' stroke-dasharray="4 3"' if s.dashed else ""
            parts.append(
                f'<path d="{" ".join(path)}" fill="none" stroke="{s.color}" '
                f'stroke-width="1.6"{dash} vector-effect="non-scaling-stroke"/>'
            )
    return _svg("line", label, parts, points)


def legend(series: Sequence[Series]) -> Markup:
    items = "".join(
        f'<li><span class="swatch{" dashed" if s.dashed else ""}" '
        f'style="background:{s.color}"></span>{escape(s.label)}</li>'
        for s in series
    )
    return Markup(f'<ul class="legend">{items}</ul>')
