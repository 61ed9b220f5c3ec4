"""The `compare` report for people: a terminal table, Markdown, and self-contained HTML.

JSON is `CompareResult.to_dict()`. Every number is marked with how it was obtained:
unmarked = measured in this run (or exact arithmetic on what was measured), `~` estimated,
`*` a catalog list price applied to measured tokens.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from ..report import duration, save, table, to_json, writable
from ..wording import money
from .charts import ChartsUnavailable, render_charts
from .results import CandidateResult, CompareResult, Figure

__all__ = ["check_output", "Column", "html_report", "LEGEND", "markdown", "MARKS",
    "QUALITY_LABELS", "rows", "sections", "size", "terminal", "write"]

MARKS = {"measured": "", "computed": "", "estimated": "~", "catalog": "*"}
LEGEND = ("unmarked: measured in this run (storage: exact arithmetic on the measured size); "
          "~ estimated (extrapolated, or tokens counted by characters); "
          "* catalog list price x measured tokens")
QUALITY_LABELS = {"ndcg@10": "nDCG@10", "recall@10": "R@10", "recall@100": "R@100",
                  "mrr@10": "MRR@10", "self_recall@10": "self R@10",
                  "agreement@10": "agree@10"}


# ---- cell formatting ---------------------------------------------------------------------


def _mark(fig: Figure | None, text: str) -> str:
    if fig is None or fig.value is None:
        return "n/a"
    return text + MARKS[fig.method]


def _number(fig: Figure | None, fmt: str = "{:,.1f}") -> str:
    return _mark(fig, fmt.format(fig.value) if fig and fig.value is not None else "")


def _money(fig: Figure | None) -> str:
    return _mark(fig, money(fig.value) if fig and fig.value is not None else "")


def size(nbytes: float | None) -> str:
    if nbytes is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes:.0f} B"


def _size(fig: Figure | None) -> str:
    return _mark(fig, size(fig.value) if fig else "")


def _seconds(fig: Figure | None) -> str:
    return _mark(fig, duration(fig.value) if fig else "")


# ---- the rows every format shares -------------------------------------------------------


Column = tuple[str, Callable[[CandidateResult], str]]


def _quality_cell(key: str) -> Callable[[CandidateResult], str]:
    return lambda c: _number(c.quality.get(key), "{:.3f}")


def sections(result: CompareResult) -> list[tuple[str, list[Column]]]:
    """The summary as three narrow tables: quality, speed and cost, storage."""
    name: Column = ("candidate", lambda c: c.name)
    quality: list[Column] = [name, ("dims", lambda c: str(c.dims or "-"))]
    for key in [*result.quality_keys, *(["agreement@10"] if result.dataset.labelled else [])]:
        quality.append((QUALITY_LABELS[key], _quality_cell(key)))
    speed: list[Column] = [
        name,
        ("p50 ms", lambda c: _number(c.latency_ms.get("p50"))),
        ("p95 ms", lambda c: _number(c.latency_ms.get("p95"))),
        ("p99 ms", lambda c: _number(c.latency_ms.get("p99"))),
        ("texts/s", lambda c: _number(c.throughput.get("texts_per_s"), "{:,.0f}")),
        ("429s", lambda c: _number(c.requests.get("throttled"), "{:,.0f}")),
        ("tokens/s", lambda c: _number(c.throughput.get("tokens_per_s"), "{:,.0f}")),
        ("$ this run", lambda c: _money(c.cost.get("run"))),
        ("$ per 1M docs", lambda c: _money(c.cost.get("per_1m_documents"))),
    ]
    if result.collection_size is not None:
        label = result.collection_label or "collection"
        speed += [(f"$ {label}", lambda c: _money(c.cost.get("collection"))),
                  (f"time {label}", lambda c: _seconds(c.throughput.get("time_for_collection_s")))]
    storage: list[Column] = [
        name,
        ("float32 per 1M", lambda c: _size(c.storage.get("float32"))),
        ("int8 per 1M", lambda c: _size(c.storage.get("int8"))),
        ("binary per 1M", lambda c: _size(c.storage.get("binary"))),
    ]
    return [("Quality", quality), ("Speed and cost", speed), ("Storage", storage)]


def rows(result: CompareResult, cols: list[Column]) -> list[list[str]]:
    out = []
    for candidate in result.candidates:
        if candidate.ok:
            out.append([render(candidate) for _, render in cols])
        else:
            out.append([candidate.name, "failed"] + [""] * (len(cols) - 2))
    return out


def _header_lines(result: CompareResult) -> list[str]:
    d = result.dataset
    env = result.environment
    what = "labelled queries" if d.labelled else "self-retrieval queries"
    lines = [f"dataset: {d.name} ({d.kind}), {len(d.doc_ids):,} documents, "
             f"{len(d.queries):,} {what}; sha256 {d.fingerprint()[:16]}"]
    if d.population is not None and d.population > len(d.doc_ids):
        lines.append(f"sampled from {d.population:,} documents")
    lines += [f"note: {n}" for n in d.notes]
    lines += [f"warning: {w}" for w in d.warnings]
    lines += [f"warning: {c.name}: {w}" for c in result.candidates for w in c.warnings]
    lines.append(f"reference for agreement@10: {result.reference}")
    if result.collection_size is not None:
        lines.append(f"extrapolated to {result.collection_size:,} documents "
                     f"({result.collection_label or 'collection'})")
    lines.append(f"run {env['date']} · migrator {env['migrator']} · python {env['python']} · "
                 f"cache {'on' if env['cache'] else 'off'}")
    return lines


def terminal(result: CompareResult) -> str:
    lines = _header_lines(result)
    for title, cols in sections(result):
        lines += ["", f"{title}:", table([c[0] for c in cols], rows(result, cols))]
    lines += ["", LEGEND]
    for candidate in result.failed:
        lines.append(f"FAILED {candidate.name}: {candidate.error}")
    return "\n".join(lines)


# ---- Markdown ----------------------------------------------------------------------------


def _md_table(headers: list[str], body: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(r) for r in body)])


def _details(candidate: CandidateResult) -> list[tuple[str, str, str, str]]:
    """(group, figure, value, how) for every figure of one candidate."""
    out = []
    groups = [("quality", candidate.quality), ("latency ms", candidate.latency_ms),
              ("throughput", candidate.throughput), ("tokens", candidate.tokens),
              ("cost $", candidate.cost), ("storage per 1M vectors", candidate.storage),
              ("requests", candidate.requests)]
    for group, figures in groups:
        for key, fig in figures.items():
            value = "n/a" if fig.value is None else (
                size(fig.value) if group.startswith("storage") else f"{fig.value:,}")
            out.append((group, key, value, f"{fig.method}: {fig.note}" if fig.note
                        else fig.method))
    return out


def markdown(result: CompareResult) -> str:
    parts = ["# Embedding model comparison", "",
             *(f"- {line}" for line in _header_lines(result)), ""]
    for title, cols in sections(result):
        parts += [f"## {title}", "", _md_table([c[0] for c in cols], rows(result, cols)), ""]
    parts += [f"_{LEGEND}_", ""]
    if result.failed:
        parts += ["## Failed candidates", ""]
        parts += [f"- **{c.name}**: {c.error}" for c in result.failed]
        parts.append("")
    parts += ["## How each figure was obtained", ""]
    for candidate in result.candidates:
        if not candidate.ok:
            continue
        parts += [f"### {candidate.name}", "",
                  _md_table(["group", "figure", "value", "how"],
                            [list(r) for r in _details(candidate)]), ""]
    parts += ["## Environment", "", "```", _environment_text(result), "```", ""]
    return "\n".join(parts)


def _environment_text(result: CompareResult) -> str:
    env = result.environment
    lines = [f"{key}: {env[key]}" for key in ("date", "migrator", "python", "platform",
                                              "cache", "seed")]
    lines += [f"{name}: {version}" for name, version in env["packages"].items()]
    lines.append(f"dataset sha256: {result.dataset.fingerprint()}")
    return "\n".join(lines)


# ---- HTML --------------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:80rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}
td.failed{color:#a00}
.legend,.note{color:#555;font-size:.9em}
figure{margin:1.5rem 0}
figure svg{max-width:100%;height:auto}
"""


def _html_table(headers: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    lines = []
    for row in body:
        opening = '<td class="failed">' if len(row) > 1 and row[1] == "failed" else "<td>"
        cells = "".join(f"{opening}{html.escape(c)}</td>" for c in row)
        lines.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def html_report(result: CompareResult) -> str:
    """One self-contained HTML file: tables, and charts as inline SVG when matplotlib is
    installed (the `charts` extra); without it, the tables and a line saying why."""
    body = ["<h1>Embedding model comparison</h1>", "<ul>"]
    body += [f"<li>{html.escape(line)}</li>" for line in _header_lines(result)]
    body.append("</ul>")
    for title, cols in sections(result):
        body += [f"<h2>{html.escape(title)}</h2>",
                 _html_table([c[0] for c in cols], rows(result, cols))]
    body.append(f'<p class="legend">{html.escape(LEGEND)}</p>')
    if result.failed:
        body.append("<h2>Failed candidates</h2><ul>")
        body += [f"<li><b>{html.escape(c.name)}</b>: {html.escape(c.error or '')}</li>"
                 for c in result.failed]
        body.append("</ul>")
    body.append("<h2>Charts</h2>")
    try:
        for title, svg in render_charts(result):
            body.append(f"<figure>{svg}<figcaption>{html.escape(title)}</figcaption></figure>")
    except ChartsUnavailable as exc:
        body.append(f'<p class="note">{html.escape(str(exc))}</p>')
    body.append("<h2>How each figure was obtained</h2>")
    for candidate in result.candidates:
        if candidate.ok:
            body += [f"<h3>{html.escape(candidate.name)}</h3>",
                     _html_table(["group", "figure", "value", "how"],
                                 [list(r) for r in _details(candidate)])]
    body += ["<h2>Environment</h2>", f"<pre>{html.escape(_environment_text(result))}</pre>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Embedding model comparison</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def check_output(path: Path | str) -> None:
    """Refuse, before anything is measured, a report `write` could not write.

    Raises:
        ConfigError: an unknown suffix, or a directory that is missing or not writable.
    """
    _renderer(Path(path))
    writable(Path(path))


def write(result: CompareResult, path: Path | str) -> str:
    """Write the report in the format `path`'s suffix names (.md, .html, .json); return it."""
    target = Path(path)
    save(target, _renderer(target)(result))
    return str(target)


def _renderer(path: Path) -> Callable[[CompareResult], str]:
    renderers: dict[str, Callable[[CompareResult], str]] = {
        ".md": markdown, ".markdown": markdown, ".html": html_report, ".htm": html_report,
        ".json": lambda r: to_json(r.to_dict()) + "\n"}
    render = renderers.get(path.suffix.lower())
    if render is None:
        raise ConfigError(f"Cannot tell the report format of {path}; end it in .md, .html "
                          "or .json.")
    return render
