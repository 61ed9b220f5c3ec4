"""The commands of `migrator`: each parses its flags, calls one library function and
prints what it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import report, status_report
from ..catalog import REGISTRY, models_for, open_providers
from ..comparison import datasets
from ..comparison import report as compare_report
from ..comparison import run as run_comparison
from ..comparison.candidates import gather as gather_candidates
from ..databases import CACHE_FILE
from ..demo import demo as run_demo
from ..embedding.cache import cache_clear, cache_stats
from ..errors import MigratorError
from ..ingestion import ingest as run_ingest
from ..migration import migrate as run_migrate
from ..planning import plan as run_plan
from ..status import status as run_status
from ..syncing import sync as run_sync
from ..texts import TextSource
from ..verification import verify as run_verify
from ..verification.dimensions import validate as run_validate
from ..wording import counted
from .shell import (
    Bars,
    Exit,
    adopt_option,
    ask,
    batch_option,
    catch_up_options,
    cli,
    collection_options,
    config_option,
    confirm_restart,
    emit,
    json_option,
    output_options,
    provider_options,
    run_options,
    settings_from,
    state_option,
    store_options,
    target_store_options,
    with_bars,
)

__all__ = ["_sizes", "cache", "cache_clear_command", "cache_stats_command", "compare_command",
           "demo", "ingest", "migrate", "models", "plan", "status", "sync", "validate",
           "verify"]


@cli.command()
@run_options
@click.option("--restart", is_flag=True,
              help="Forget earlier progress and delete the targets it created, after asking.")
@click.option("--force", is_flag=True,
              help="Move aliases even if verification fails (recorded as forced).")
@click.option("--no-verify", is_flag=True, help="Skip verification before the swap.")
@click.option("--drop-old", is_flag=True,
              help="After a verified alias move, delete the collection the alias left.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --restart.")
@adopt_option
@catch_up_options
@batch_option
@click.option("--wait", is_flag=True, default=None,
              help="With --batch: poll until every batch job is collected, then migrate.")
@click.option("--batch-fallback", type=click.Choice(["wait", "sync"]), default=None,
              help="With --batch: jobs still running are waited for (run again, or --wait), "
              "or cancelled and their texts embedded synchronously (sync).")
@click.option("--keep-batch-files", is_flag=True, default=None,
              help="Leave batch input and output files at the provider after collection.")
@output_options
@with_bars
def migrate(bars: Bars, as_json: bool, quiet: bool, restart: bool, yes: bool, force: bool,
            no_verify: bool, drop_old: bool, adopt_target: bool, **options: Any) -> None:
    """Re-embed collections into new ones and move their aliases.

    Resumable: run the same command again after an interruption and it continues from the
    last checkpoint; embeddings already paid for come from the cache.

    \b
    Example (embedded store, offline hashing model):
      migrator migrate --collection articles --alias articles_live \\
          --provider hashing --model hash-ngrams-v1 --dimensions 512
    \b
    Example (OpenAI into a Qdrant server):
      export OPENAI_API_KEY=...
      migrator migrate -c configs/openai-3-small-512.yaml
    \b
    Example (half price through OpenAI's Batch API; run again to collect):
      migrator migrate -c configs/openai-3-small-512.yaml --batch
    """
    settings = settings_from(options)
    if no_verify:
        settings.verify.enabled = False
    result = run_migrate(settings, on_progress=bars, restart=restart, force=force,
                         drop_old=drop_old, adopt_target=adopt_target,
                         confirm=None if yes else confirm_restart)
    bars.close()
    emit(result, as_json, report.migration)


@cli.command()
@run_options
@adopt_option
@catch_up_options
@output_options
@with_bars
def sync(bars: Bars, as_json: bool, quiet: bool, adopt_target: bool, **options: Any) -> None:
    """Catch a target up with its source: embed new and changed points, delete removed ones.

    Same flags as `migrate`; the target is found the way `migrate` names it. `migrate` runs
    this itself before it moves an alias; `sync` verifies nothing and moves no alias
    (`--alias` is taken, so one command line serves both, and left to `migrate`).

    \b
    Example:
      migrator sync --collection docs --provider openai \\
          --model text-embedding-3-small --dimensions 512
    \b
    Example (read only what changed since the last catch-up):
      migrator sync --collection docs --updated-field updated_at -c config.yaml
    """
    result = run_sync(settings_from(options), on_progress=bars, adopt_target=adopt_target)
    bars.close()
    emit(result, as_json, report.sync)


@cli.command()
@config_option
@store_options
@target_store_options
@state_option
@json_option("Print the status as JSON.")
def status(as_json: bool, **options: Any) -> None:
    """Show aliases, and every migration with its phase, progress and checkpoint.

    \b
    Example:
      migrator status --json
    """
    emit(run_status(settings_from(options)), as_json, status_report.status)


@cli.command()
@config_option
@store_options
@target_store_options
@provider_options
@collection_options
@state_option
@click.option("--sample", type=click.IntRange(min=1), help="Points sampled (default 500).")
@click.option("--k", "k", type=click.IntRange(min=1),
              help="k of recall@k and overlap@k (default 10).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report to this file: JSON for a .json name, else "
                   "Markdown.")
@json_option("Print the report as JSON.")
def verify(as_json: bool, sample: int | None, k: int | None, report_file: Path | None,
           **options: Any) -> None:
    """Check a source/target pair: self-retrieval, ANN recall, neighbour overlap, integrity.

    Exit 0 when every check meets its threshold, 3 when one does not.

    \b
    Example:
      migrator verify --collection docs --target docs__text-embedding-3-small-512 \\
          --provider openai --model text-embedding-3-small --dimensions 512 \\
          --report verify.md
    """
    # checked with the settings: a value over a limit is a configuration error (exit 2)
    settings = settings_from({**options, "verify_sample": sample, "verify_k": k})
    if report_file is not None:
        report.writable(report_file)
    result = run_verify(settings)
    if report_file is not None:
        report.save(report_file, report.verify_file(result, report_file))
    emit(result, as_json, report.verify)
    if not result.passed:
        raise Exit("Verification failed: " + "; ".join(
            r.summary() for r in result.reports if not r.passed) + ".", 3)


@cli.group()
def cache() -> None:
    """Inspect or empty the embedding cache.

    \b
    Example:
      migrator cache stats
      migrator cache clear --yes
    """


@cache.command("stats")
@config_option
@state_option
@json_option("Print the numbers as JSON.")
def cache_stats_command(as_json: bool, **options: Any) -> None:
    """How many embeddings the cache holds, and its size on disk.

    \b
    Example:
      migrator cache stats --state-dir .migrator --json
    """
    stats = cache_stats(settings_from(options).migration.state_dir)
    emit(stats, as_json, report.cache)


@cache.command("clear")
@config_option
@state_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@json_option("Print what was removed as JSON.")
def cache_clear_command(yes: bool, as_json: bool, **options: Any) -> None:
    """Delete every cached embedding (the next run pays for its embeddings again).

    \b
    Example:
      migrator cache clear --yes
    """
    state_dir = settings_from(options).migration.state_dir
    path = Path(state_dir) / CACHE_FILE
    if not path.exists():  # a mistyped --state-dir: say so, rather than "removed 0"
        click.echo(report.to_json({"path": str(path), "exists": False, "removed": 0})
                   if as_json else f"There is no embedding cache at {path} (check "
                   "--state-dir); nothing was removed.")
        return
    if not yes and not ask(f"Delete every cached embedding in {path} (what they saved is "
                           "paid for again)?"):
        raise MigratorError("Not confirmed; the embedding cache was not emptied.")
    removed = cache_clear(state_dir)
    click.echo(report.to_json({"path": str(path), "exists": True, "removed": removed})
               if as_json else f"Removed {counted(removed, 'cached embedding')} from {path}.")


@cli.command()
@run_options
@click.option("--sample", type=click.IntRange(min=1), default=200, show_default=True,
              help="Points read per collection for text statistics.")
@json_option("Print the plan as JSON.")
@batch_option
def plan(as_json: bool, sample: int, **options: Any) -> None:
    """Show what a migration would do and cost, without changing anything.

    \b
    Example:
      migrator plan --collection articles --provider openai \\
          --model text-embedding-3-small --dimensions 512
    \b
    Example (the price through the provider's batch API, beside the synchronous one):
      migrator plan -c configs/openai-3-small-512.yaml --batch
    """
    result = run_plan(settings_from(options), sample=sample)
    emit(result, as_json, report.plan)


def _sizes(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        sizes = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of sizes") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: give one or more sizes of 1 or more, e.g. "
                                 "256,512")
    return sizes


@cli.command()
@config_option
@store_options
@provider_options
@collection_options
@click.option("--full", is_flag=True, help="Scan every point, not a sample.")
@click.option("--sample", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Points scanned without --full.")
@click.option("--dims", callback=_sizes, help="Candidate sizes for truncation fidelity, e.g. "
              "256,512,1024 (default: common sizes below the collection's).")
@click.option("--no-probe", is_flag=True, help="Do not send the one probe request.")
@json_option("Print the report as JSON.")
def validate(as_json: bool, full: bool, sample: int, dims: list[int] | None, no_probe: bool,
             **options: Any) -> None:
    """Check sizes and vectors: config, provider output, stored vectors, truncation.

    Exit 0 when every check passes, 3 when any fails, 1 when the checks cannot run.

    \b
    Example:
      migrator validate --collection docs_live --provider openai \\
          --model text-embedding-3-small --dimensions 512
      migrator validate --collection docs --no-probe --dims 128,256,512 --full
    """
    report_ = run_validate(settings_from(options), full=full, sample=sample, dims=dims,
                           probe_provider=not no_probe)
    emit(report_, as_json, report.validation)
    if not report_.passed:
        names = ", ".join(sorted({c.name for c in report_.failed}))
        raise Exit(f"{counted(len(report_.failed), 'check')} failed: {names}.", 3)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))  # missing: the library says so
@click.option("--collection", required=True, help="Name of the new collection.")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv", "beir"]),
              default="auto", show_default=True, help="Input format.")
@click.option("--text-field", help="Field holding the text (default 'text').")
@click.option("--text-template", help="Template over the record, e.g. '{title} {text}' "
              "(the default for BEIR corpora).")
@click.option("--id-field", help="Field holding the point id (default '_id' or 'id').")
@click.option("--vector", default="", help="Name of the vector (default: unnamed).")
@click.option("--distance", type=click.Choice(["Cosine", "Dot", "Euclid", "Manhattan"],
                                             case_sensitive=False),
              default="Cosine", show_default=True, help="Distance of the vector.")
@config_option
@store_options
@provider_options
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the list of skipped records goes (default .migrator).")
@output_options
@with_bars
def ingest(bars: Bars, path: Path, collection: str, fmt: str, text_field: str | None,
           text_template: str | None, id_field: str | None, vector: str, distance: str,
           as_json: bool, quiet: bool, **options: Any) -> None:
    """Load texts from JSONL, CSV or a BEIR corpus into a new collection.

    \b
    Example:
      migrator ingest notes.jsonl --collection notes --text-field body \\
          --provider hashing --model hash-words-v1
    """
    settings = settings_from(options)
    result = run_ingest(path, collection, settings, format=fmt,  # type: ignore[arg-type]
                        text_field=text_field, text_template=text_template, id_field=id_field,
                        vector=vector, distance=distance,  # type: ignore[arg-type]
                        on_progress=bars)
    bars.close()
    emit(result, as_json, report.ingest)


@cli.command("compare")
@click.argument("dataset", required=False, type=click.Path(path_type=Path))
@click.option("--candidates", "candidates_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML list of candidates (provider, model, dimensions, input_types, ...).")
@click.option("--candidate", "candidate_flags", multiple=True, metavar="PROVIDER:MODEL[:DIMS]",
              help="A candidate without a file; repeatable.")
@click.option("--reference", help="Candidate that agreement@10 is measured against "
              "(default: the first).")
@click.option("--collection", help="Compare on a sample of this collection's payload text "
              "instead of DATASET.")
@click.option("--text-field", help="Field (or payload path) holding the text (default 'text').")
@click.option("--text-template", help="Template over each record or payload instead, e.g. "
              "'{title} {body}'.")
@click.option("--id-field", help="Field holding a JSONL/CSV record's id (default 'id'/'_id').")
@click.option("--split", default="test", show_default=True, help="BEIR qrels split.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Your own labelled queries for a file or collection: JSONL of "
              "{\"query\", \"relevant_ids\"}.")
@click.option("--sample", type=click.IntRange(min=1),
              help="Documents drawn from a file or collection (default: the whole file; 2000 "
              "from a collection).")
@click.option("--queries", type=click.IntRange(min=1),
              help="Queries scored (default: every labelled query; 200 self-retrieval queries "
              "without labels).")
@click.option("--seed", type=int, default=13, show_default=True, help="Seed of every sample.")
@click.option("--collection-size", type=click.IntRange(min=1),
              help="Documents to extrapolate cost and time to.")
@click.option("--size-of", help="Extrapolate to the size of this collection (or alias).")
@click.option("--out", "-o", "outputs", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to FILE: .md, .html or .json by its suffix; repeatable.")
@config_option
@store_options
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the embedding cache lives (default .migrator).")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Reuse embeddings already paid for; --no-cache measures every request.")
@output_options
def compare_command(dataset: Path | None, candidates_file: Path | None,
                    candidate_flags: tuple[str, ...], reference: str | None,
                    collection: str | None, text_field: str | None,
                    text_template: str | None, id_field: str | None, split: str,
                    labels_file: Path | None,
                    sample: int | None, queries: int | None, seed: int,
                    collection_size: int | None, size_of: str | None,
                    outputs: tuple[Path, ...], state_dir: Path | None, cache: bool,
                    as_json: bool, quiet: bool, **options: Any) -> None:
    """Compare embedding models on your data: quality, latency, throughput, cost, storage.

    DATASET is a BEIR directory (corpus.jsonl, queries.jsonl, qrels/), scored with nDCG@10,
    recall@10/100 and MRR@10, or a JSONL/CSV file of texts, scored by self-retrieval and
    agreement with a reference candidate. Exit 1 when a candidate failed (the report still
    covers the others).

    \b
    Example:
      migrator compare ./scifact --candidates configs/compare.yaml \\
          --size-of docs -o report.html -o report.md
      migrator compare notes.jsonl --candidate hashing:hash-words-v1 \\
          --candidate local:all-MiniLM-L6-v2
    """
    candidates = gather_candidates(candidates_file, candidate_flags, reference)
    settings = settings_from({**options, "state_dir": state_dir})
    data = datasets.open_dataset(
        dataset, collection=collection, store=settings.source,
        text=TextSource.from_settings(text_field, text_template), labels=labels_file,
        split=split, id_field=id_field, sample=sample, queries=queries, seed=seed)
    bars = Bars(quiet)
    try:
        result = run_comparison(settings, data, candidates, outputs=outputs, size_of=size_of,
                                collection_size=collection_size, cache=cache,
                                on_progress=bars.texts, seed=seed)
    finally:
        bars.close()
    emit(result, as_json, compare_report.terminal)
    if result.failed:
        raise Exit(f"{len(result.failed)} of {len(result.candidates)} candidates failed: "
                    + ", ".join(c.name for c in result.failed) + "; the report covers the rest.",
                    1)


@cli.command()
@click.option("--provider", "providers", multiple=True, type=click.Choice(list(REGISTRY)),
              help="Only this provider (repeatable).")
@json_option("Print the catalog as JSON.")
def models(providers: tuple[str, ...], as_json: bool) -> None:
    """List known models: size, output sizes, request limits and price.

    \b
    Example:
      migrator models --provider openai
    """
    specs = models_for(providers or None)
    if as_json:
        click.echo(report.to_json([s.to_dict() for s in specs]))
    else:
        click.echo(report.models(specs, open_providers(providers or REGISTRY)))


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("migrator-demo"), show_default=True,
              help="Directory for the demo's embedded store (replaced on each run).")
@click.option("--hashing-only", is_flag=True,
              help="Use the hashing model as the new model even when the local one is installed.")
@output_options
@with_bars
def demo(bars: Bars, directory: Path, hashing_only: bool, as_json: bool, quiet: bool) -> None:
    """Run the whole flow offline on the embedded store, with a bundled corpus.

    \b
    Example:
      migrator demo
    """
    result = run_demo(directory, prefer_local=not hashing_only, on_progress=bars)
    bars.close()
    emit(result, as_json, report.demo)
