"""Charts for the HTML `compare` report, drawn by matplotlib (the optional `charts` extra)
and embedded as inline SVG, so the report stays one self-contained file."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

from .results import CompareResult

__all__ = ["ChartsUnavailable", "primary_quality", "render_charts"]


class ChartsUnavailable(Exception):
    """matplotlib is not installed: the report has tables only."""


def _matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ChartsUnavailable(
            "Charts are not included: matplotlib is not installed. Install the charts extra "
            "(pip install 'migrator[charts]') and run compare again for quality/cost, latency "
            "and dimension charts.") from exc
    return matplotlib, Figure


def primary_quality(result: CompareResult) -> str:
    """The figure charts put on the quality axis."""
    return "ndcg@10" if result.dataset.labelled else "agreement@10"


def render_charts(result: CompareResult) -> list[tuple[str, str]]:
    """(caption, inline SVG) for each chart the result has data for."""
    matplotlib, figure_cls = _matplotlib()
    charts = []
    # a fixed hash salt and no date: the same result draws the same bytes
    with matplotlib.rc_context({"svg.hashsalt": "migrator", "svg.fonttype": "none",
                                "font.size": 9}):
        for draw in (_quality_vs_cost, _latency, _quality_vs_dims):
            chart = draw(result, figure_cls)
            if chart is not None:
                caption, fig = chart
                charts.append((caption, _svg(fig)))
    return charts


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline in HTML


def _quality_vs_cost(result: CompareResult, figure_cls: Any) -> tuple[str, Any] | None:
    key = primary_quality(result)
    points = [(c.name, c.cost["per_1m_documents"].value, c.quality[key].value)
              for c in result.candidates
              if c.ok and c.cost.get("per_1m_documents") is not None
              and c.cost["per_1m_documents"].value is not None
              and c.quality.get(key) is not None and c.quality[key].value is not None]
    if not points:
        return None
    fig = figure_cls(figsize=(7, 4.2))
    ax = fig.subplots()
    for name, cost, quality in points:
        ax.scatter([cost], [quality], s=36)
        ax.annotate(name, (cost, quality), textcoords="offset points", xytext=(5, 4))
    highest = max(cost for _, cost, _ in points)
    ax.set_xlim(-0.05 * (highest or 1), 1.2 * highest if highest else 1)  # no negative costs
    ax.set_xlabel("estimated $ per 1M documents (catalog price)")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    return f"{key} against cost per 1M documents (upper left is better)", fig


def _latency(result: CompareResult, figure_cls: Any) -> tuple[str, Any] | None:
    measured = [(c.name, [s * 1000 for s in c.latencies]) for c in result.candidates
                if c.ok and c.latencies]
    if not measured:
        return None
    fig = figure_cls(figsize=(7, 0.6 * len(measured) + 1.4))
    ax = fig.subplots()
    ax.boxplot([m[1] for m in measured], orientation="horizontal", whis=(5, 95), showfliers=True)
    ax.set_yticks(range(1, len(measured) + 1), [m[0] for m in measured])
    ax.invert_yaxis()
    ax.set_xlabel("request latency, ms (box: quartiles, whiskers: p5-p95)")
    ax.grid(alpha=0.3, axis="x")
    return "request latency per candidate", fig


def _quality_vs_dims(result: CompareResult, figure_cls: Any) -> tuple[str, Any] | None:
    key = primary_quality(result)
    sweeps: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for c in result.candidates:
        fig_q = c.quality.get(key)
        if c.ok and c.dims and fig_q is not None and fig_q.value is not None:
            model = f"{c.candidate.provider.name}/{c.candidate.provider.model}"
            sweeps[model].append((c.dims, fig_q.value))
    sweeps = {m: sorted(p) for m, p in sweeps.items() if len({d for d, _ in p}) > 1}
    if not sweeps:
        return None
    fig = figure_cls(figsize=(7, 4.2))
    ax = fig.subplots()
    for model, points in sweeps.items():
        ax.plot([d for d, _ in points], [q for _, q in points], marker="o", label=model)
    sizes = sorted({d for points in sweeps.values() for d, _ in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(d) for d in sizes])
    ax.minorticks_off()
    ax.set_xlabel("dimensions")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
    return f"{key} against dimensions (truncation sweeps)", fig
