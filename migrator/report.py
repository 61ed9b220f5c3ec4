"""Results rendered for people: plain-text reports. JSON comes from each result's `to_dict()`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .catalog import ModelSpec
from .errors import ConfigError, MigratorError
from .wording import counted, has, money

__all__ = ["alias_move", "batch_lines", "bill", "cache", "demo", "dims_line", "duration",
    "ingest", "migration", "models", "plan", "save", "sync", "sync_counts",
    "table", "to_json", "validation", "verification", "verify", "verify_file", "verify_markdown",
    "writable", "WRITE_MODES"]

WRITE_MODES = {  # what each way of writing a backfill means, for the report
    "insert-only": "Qdrant's conditional writes: a newer point is never overwritten",
    "upsert": "this Qdrant is older than 1.17: no conditional writes",
    "new vector only": "the points' other vectors and payloads stay as they are; a point "
                       "deleted meanwhile stays deleted",
}


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def writable(path: Path) -> Path:
    """`path`, once it is sure a report can be written there: checked before the work the
    report is of, so a mistyped directory costs nothing.

    Raises:
        ConfigError: the directory does not exist, or it or the file is not writable.
    """
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(f"Cannot write a report to {path}: the directory {directory} does "
                          "not exist. Create it, or give another path.")
    if not os.access(directory, os.W_OK | os.X_OK) or (
            path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"Cannot write a report to {path}: permission denied. Give a path "
                          "you can write to.")
    return path


def save(path: Path, text: str) -> None:
    """Write a report to `path`.

    Raises:
        MigratorError: the file could not be written (a full disk, say).
    """
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise MigratorError(f"Could not write the report to {path}: {exc.strerror or exc}."
                            ) from exc


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain, aligned text table."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cost(value: float | None) -> str:
    """An amount as a sentence says it: `$0.0200`, or `cost unknown` (no known price)."""
    return "cost unknown" if value is None else money(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def models(specs: Sequence[ModelSpec], open_providers: Sequence[str] = ()) -> str:
    """The catalog's table; `open_providers` (serving models it does not list) get a line on
    what a model of theirs is taken to be."""
    rows = [
        (s.provider, s.model, s.dims, s.describe_dims() if s.supports_output_dims else "-",
         s.max_inputs, s.max_tokens_per_input,
         s.max_tokens_per_request or "-",
         "free" if s.price_per_mtok == 0 else money(s.price_per_mtok) if s.price_per_mtok
         else "?")
        for s in specs
    ]
    lines = [table(["provider", "model", "dims", "output dims", "inputs/req", "tokens/input",
                    "tokens/req", "$/1M tok"], rows)] if rows else []
    served = [name for name in open_providers if name != "local"]
    if served:
        lines.append(f"{', '.join(served)}: any model the server has, listed or not. One not "
                     "listed has its size probed with one request, is sent up to 256 texts a "
                     "request (provider.batch_size) of up to 8,192 tokens each, and has no "
                     "price unless given (provider.price_per_mtok).")
    if "local" in open_providers:
        lines.append("local: any sentence-transformers model, listed or not; it runs on this "
                     "machine, free.")
    return "\n".join(lines)


def batch_lines(report: Any) -> list[str]:
    """What batch mode did in a run, and what is left."""
    lines = []
    if report.submitted_jobs:
        sync_cost = report.synchronous_cost
        lines.append(
            f"Submitted {report.submitted_texts:,} texts (~{report.submitted_tokens:,} tokens) "
            f"in {counted(report.submitted_jobs, 'batch job')}: ~{cost(report.submitted_cost)} at "
            f"the batch price ({cost(sync_cost)} synchronously).")
    if report.collected_jobs:
        lines.append(f"Collected {counted(report.collected_jobs, 'job')}: "
                     f"{report.collected_texts:,} texts cached, {report.resent_texts:,} not "
                     "answered and sent again"
                     + (f", {report.refused_jobs:,} refused for now (enqueued-token limit)"
                        if report.refused_jobs else "") + ".")
    if not report.done:
        lines.append(f"{counted(report.pending_jobs, 'job')} with {report.pending_texts:,} "
                     "texts are running at the provider (within 24 hours). Run the same "
                     "command again to collect them and finish the migration, or add --wait.")
    return lines


def migration(result: Any) -> str:
    """The run report of `migrate()`."""
    if result.batch is not None and not result.batch.done:
        return "\n".join([*batch_lines(result.batch), "", bill(result.bill)])
    data = result.to_dict()
    lines = [
        f"Migrated {counted(len(result.collections), 'collection')} with {result.provider} "
        f"{result.model} ({result.dims} dims) in {duration(result.seconds)} "
        + (f"({data['points_per_second']:,.0f} points/s)." if data["points_per_second"]
           else "(no point was left to write)."),
        "",
    ]
    rows = []
    for c in result.collections:
        stats = c.stats
        rows.append((c.source, c.target, stats.read, stats.embedded, stats.cached,
                     stats.written, stats.skipped, c.target_count,
                     f"{c.alias} -> {c.target}" if c.swapped else "-"))
    lines.append(table(["source", "target", "read", "sent", "from cache", "written",
                        "skipped", "target count", "alias"], rows))
    lines.append("(the backfill's counts for the whole migration, earlier runs included)")
    if result.dims_decision is not None:
        lines += ["", dims_line(result.dims_decision)]
    lines += ["", bill(result.bill)]
    if result.batch is not None:
        lines += batch_lines(result.batch)
    for c in result.collections:
        if c.resumed:
            lines.append(f"{c.source!r} resumed: {counted(c.resumed_written, 'point')} "
                         f"{has(c.resumed_written, 'was', 'were')} written by an earlier run.")
        if c.write_mode is not None:
            lines.append(f"Backfill writes of {c.source!r}: {c.write_mode} "
                         f"({WRITE_MODES.get(c.write_mode, 'as recorded')}).")
        if c.sync is not None:
            lines.append(f"Catch-up of {c.source!r}: {sync_counts(c.sync)}.")
        if c.using:
            lines.append(c.using)
        if c.skip_file:
            lines.append(f"Skipped points of {c.source!r} are listed in {c.skip_file}.")
        if c.swapped and c.previous_alias_target == c.target:
            lines.append(f"Alias {c.alias!r} already served {c.target!r}; nothing moved.")
        elif c.swapped and c.previous_alias_target:
            left = ("it was deleted (--drop-old)" if c.dropped else
                    f"it is kept: {c.kept}" if c.kept else "the old collection is kept")
            lines.append(f"Alias {c.alias!r} moved from {c.previous_alias_target!r} to "
                         f"{c.target!r}; {left}.")
        elif c.swapped:
            lines.append(f"Alias {c.alias!r} created, serving {c.target!r}.")
    for c in result.collections:
        if c.verification is not None:
            lines += ["", verification(c.verification)]
        if c.forced:
            lines.append(f"The alias of {c.source!r} was moved with --force although "
                         "verification failed; the move is recorded as forced.")
        elif c.swapped and c.verification is None and c.previous_alias_target != c.target:
            lines.append(f"The alias of {c.source!r} was moved without verification "
                         "(--no-verify).")
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def bill(bill: Any) -> str:
    """What a run asked of the provider, per phase: the figures equal the provider's bill
    (tokens marked `~` are estimates: the provider did not report them)."""
    data = bill.to_dict()
    rows = []
    for phase, usage in [*data["phases"].items(), ("total", data["total"])]:
        tokens = f"{'~' if usage['tokens_estimated'] else ''}{usage['tokens']:,}"
        rows.append((phase, f"{usage['requests']:,}", f"{usage['texts']:,}",
                     f"{usage['from_cache']:,}", tokens, money(usage["cost_usd"])))
    lines = ["This run's bill:",
             table(["phase", "requests", "texts sent", "from cache", "tokens", "cost"], rows)]
    if data["total"]["from_cache"]:
        lines.append(f"The cache saved {data['total']['tokens_saved']:,} tokens "
                     f"({cost(data['total']['cost_saved_usd'])}).")
    if any(u["tokens_estimated"] for u in data["phases"].values()):
        lines.append("~ estimated: the provider did not report the tokens it billed.")
    metrics = data["http"]
    if metrics:
        retries = ", ".join(f"{n} {cause}" for cause, n in metrics["retries"].items())
        lines.append(
            f"HTTP: {metrics['requests']:,} attempts, {metrics['throttled']:,} answered 429, "
            f"retries: {retries or 'none'}, {metrics['limiter_wait_s']:.1f} s paced by the "
            f"limiter, latency p50/p95/p99 {_ms(metrics['latency_p50_ms'])}/"
            f"{_ms(metrics['latency_p95_ms'])}/{_ms(metrics['latency_p99_ms'])} ms"
            + (f", {metrics['concurrency']} allowed in flight at the end (fewest "
               f"{metrics['lowest_concurrency']})" if metrics.get("concurrency") else ""))
    return "\n".join(lines)


def _bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def dims_line(decision: Any) -> str:
    """The dimension decision and what it costs in memory."""
    facts = decision.consequences()
    if not facts["target"]:
        return f"Dimensions: {decision.describe()}."
    return (f"Dimensions: {decision.describe()}; {facts['bytes_per_vector']:,} bytes per "
            f"vector, {facts['bytes_per_million_points'] / 1e9:.2f} GB per million points "
            "(float32, before index overhead).")


def plan(result: Any) -> str:
    """The report of `plan()`."""
    spec = result.spec
    known = f"{spec.dims} dims native" if spec.dims else "not in the catalog"
    lines = [f"Plan: re-embed with {result.provider} {result.model} ({known}).", ""]
    for c in result.collections:
        s = c.schema
        vector = s.vectors[c.vector]
        lines += [
            f"Source {c.source!r}" + (f" (collection {s.name!r})" if s.name != c.source else "")
            + f": {counted(s.points_count, 'point')}",
            f"  vector {c.vector or '(unnamed)'}: {vector.size} dims, {vector.distance}; "
            f"other vectors: {', '.join(n for n in s.vectors if n != c.vector) or 'none'}; "
            f"sparse: {', '.join(s.sparse_vectors) or 'none'}",
            f"  text from {c.text}: sampled {c.sample_size}, {c.missing_in_sample} without text; "
            f"chars min {c.chars['min']:.0f} / mean {c.chars['mean']:.0f} / "
            f"p95 {c.chars['p95']:.0f} / max {c.chars['max']:.0f}",
            f"  estimate: {c.estimated_tokens:,} tokens (~{c.tokens_per_text} per text), "
            f"{cost(c.estimated_cost)}, {counted(c.estimated_requests, 'request')}, "
            f"{duration(c.estimated_seconds)}",
            f"  storage while both exist: in place {_bytes(c.storage['in_place_bytes'])} (the "
            f"new vector), a new collection {_bytes(c.storage['new_collection_bytes'])} "
            f"(vectors and payloads again); recommended: {c.storage['recommended']}"
            + (f" (at {c.storage['dims']} dims, the source's: the probe finds the model's)"
               if c.storage.get("dims_assumed") else ""),
            (f"  target {c.target!r}" if c.new_vector is None
             else f"  target: vector {c.new_vector!r} of {c.target!r} (in place)")
            + f": {c.target_size or 'probed'} dims, {c.target_distance}"
            + (" (exists)" if c.target_exists else " (new)")
            + (f"; alias {c.alias!r} moves to it" if c.alias else ""),
        ]
        if c.recorded is not None:
            lines.append(f"  {_recorded(c.recorded)}")
        lines += [f"  warning: {w}" for w in c.warnings]
        lines.append("")
    lines.append(dims_line(result.dims))
    seconds = sum(c.estimated_seconds or 0.0 for c in result.collections)
    lines.append(f"Total: {result.estimated_tokens:,} tokens (estimated), "
                 f"{cost(result.estimated_cost)}, about {duration(seconds)} synchronously.")
    if result.batch_asked:
        lines.append(
            f"Batch mode: {cost(result.batch_cost)} at the batch price, answered within "
            f"{result.batch.window_hours:g} hours (often much sooner); run migrate again to "
            "collect, or add --wait." if result.batch is not None else
            f"Batch mode: provider {result.provider!r} has no batch API migrator speaks "
            "(openai and gemini have).")
    if result.max_cost is not None:
        priced = " at the batch price" if result.batch is not None else ""
        verdict = {True: f"the estimate{priced} is within it",
                   False: f"the estimate{priced} is over it: migrate would refuse to start",
                   None: "this model's price is not known (give provider.price_per_mtok), "
                         "so migrate would refuse to start with a limit"}
        lines.append(f"--max-cost {money(result.max_cost)}: "
                     f"{verdict[result.within_max_cost]}.")
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def _recorded(record: Any) -> str:
    """Where an earlier run of a planned migration got, and what migrate would do next."""
    written = record.counters.get("written", 0)
    done = f"{written:,} of {record.total:,}" if record.total else f"{written:,}"
    head = (f"recorded: migration {record.id[:12]} is {record.phase}, {done} points written"
            + (f" (error: {record.error})" if record.phase == "failed" and record.error else ""))
    if record.finished:
        return (f"{head}; migrate would catch up only what changed since (the estimate is for "
                "every text; the cache holds the ones already paid for)")
    return (f"{head}; migrate resumes from its checkpoint (the estimate is for every point; "
            "what was written is not sent again)")


def ingest(result: Any) -> str:
    stats = result.stats
    line = (f"Ingested {stats.written:,} of {stats.read:,} records from {result.source} "
            f"({result.format}) into {result.collection!r} with {result.provider} "
            f"{result.model} ({result.dims} dims) in {duration(result.seconds)}.")
    if stats.skipped:
        line += f" {stats.skipped:,} records without text were skipped."
    if stats.cached:
        line += f" {stats.cached:,} texts came from the embedding cache (not paid again)."
    paid = [bill(result.bill)] if result.bill.cost != 0 else []  # none for a free model
    return "\n".join([line, *paid, *(f"warning: {w}" for w in result.warnings)])


def demo(result: Any) -> str:
    lines = [
        f"Demo store: {result.directory}",
        ingest(result.ingested),
        result.new_model_note,
        "",
        migration(result.migration),
        "",
        "Example searches through the alias 'articles' (before -> after the migration):",
    ]
    for search in result.searches:
        lines.append(f"  {search.query!r}")
        lines.append(f"    before: {'; '.join(search.before)}")
        lines.append(f"    after:  {'; '.join(search.after)}")
    return "\n".join(lines)



def validation(result: Any) -> str:
    """The report of `validate()`: one row a check."""
    rows = [(c.status.upper(), c.name, c.collection or "-", c.detail) for c in result.checks]
    verdict = "All checks passed." if result.passed else (
        f"{counted(len(result.failed), 'check')} failed.")
    return table(["status", "check", "collection", "detail"], rows) + "\n\n" + verdict


def sync_counts(stats: Any) -> str:
    counts = (f"{stats.new:,} new, {stats.changed:,} changed, {stats.updated:,} updated "
              f"without re-embedding, {stats.deleted:,} deleted, {stats.unchanged:,} unchanged")
    if stats.since is None:
        return counts
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stats.since))
    return f"{counts} (read: the points written since {since}, and every id)"


def sync(result: Any) -> str:
    lines = []
    for c in result.collections:
        lines.append(f"{c.source!r} -> {c.target!r}: {sync_counts(c.sync)}; target holds "
                     f"{c.target_count:,} of {c.source_count:,} source points "
                     f"({c.skipped:,} without text).")
    return "\n".join([*lines, "", bill(result.bill),
                      *(f"warning: {w}" for w in result.warnings)])


def cache(stats: Any) -> str:
    if not stats.bytes:  # no file: a state directory never used, or a mistyped one
        return f"There is no embedding cache at {stats.path} (check --state-dir)."
    return (f"{counted(stats.entries, 'cached embedding')}, {stats.bytes / 1e6:,.1f} MB in "
            f"{stats.path}")


def verification(report: Any) -> str:
    """One verification report: a row a check."""
    rows = [(c.status.upper(), c.name, "n/a" if c.value is None else f"{c.value:.3f}",
             "-" if c.threshold is None else f">= {c.threshold:.2f}", c.detail)
            for c in report.checks]
    head = (f"Verification of {report.target!r} against {report.source!r} "
            f"(sample {report.sample}, k={report.k}): "
            + ("passed." if report.passed else "FAILED."))
    lines = [head]
    if report.readiness:
        lines.append(f"Readiness: {report.readiness}.")
    return "\n".join([*lines, table(["status", "check", "value", "threshold", "detail"],
                                    rows), *(f"warning: {w}" for w in report.warnings)])


def verify(result: Any) -> str:
    usage = result.to_dict()["usage"]
    paid = (f"Query embeddings: {counted(usage['requests'], 'request')}, "
            f"{counted(usage['texts'], 'text')} sent, {usage['from_cache']:,} from the cache, "
            f"{cost(usage['cost_usd'])}.")
    warned = "\n".join(f"warning: {w}" for w in result.warnings)
    return "\n\n".join([*(verification(r) for r in result.reports), paid,
                        *([warned] if warned else [])])


def verify_file(result: Any, path: Path) -> str:
    """The verification reports for `migrator verify --report FILE`: JSON (as `--json`
    prints) for a .json file, else Markdown."""
    if path.suffix.lower() == ".json":
        return to_json(result.to_dict()) + "\n"
    return verify_markdown(result)


def verify_markdown(result: Any) -> str:
    """The same reports as Markdown, for `migrator verify --report FILE.md`."""
    parts = ["# migrator verification", ""]
    for r in result.reports:
        parts += [f"## {r.source} -> {r.target}", "",
                  f"**{'Passed' if r.passed else 'Failed'}** on a sample of {r.sample} points, "
                  f"k = {r.k}." + (f" Readiness: {r.readiness}." if r.readiness else ""), "",
                  "| status | check | value | threshold | detail |",
                  "| --- | --- | --- | --- | --- |"]
        for c in r.checks:
            value = "n/a" if c.value is None else f"{c.value:.3f}"
            threshold = "-" if c.threshold is None else f">= {c.threshold:.2f}"
            detail = c.detail.replace("|", "\\|")
            parts.append(f"| {c.status} | {c.name} | {value} | {threshold} | {detail} |")
        parts += ["", *(f"**Warning:** {w}\n" for w in r.warnings)]
    parts += [f"**Warning:** {w}\n" for w in result.warnings]
    return "\n".join(parts)


def alias_move(move: Any) -> str:
    if move.previous == move.current:
        return f"Alias {move.alias!r} points to {move.current!r} already; nothing was changed."
    before = f"before: {move.previous!r}" if move.previous else "a new alias"
    forced = "; forced: its migration did not finish or verify" if move.forced else ""
    return f"Alias {move.alias!r} now points to {move.current!r} ({before}{forced})."
