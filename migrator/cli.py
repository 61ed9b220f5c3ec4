"""The `migrator` command line: parse flags, build settings, call one library function,
render its result, map errors to exit codes (0 ok, 1 failure, 2 usage, 3 verification)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from . import __version__, report
from .aliases import drop_old as run_drop_old
from .aliases import rollback as run_rollback
from .aliases import swap as run_swap
from .catalog import REGISTRY, models_for
from .comparison import compare as run_compare
from .comparison import datasets
from .comparison import report as compare_report
from .comparison.candidates import gather as gather_candidates
from .demo import demo as run_demo
from .embedding.cache import cache_clear, cache_stats
from .errors import MigratorError, VerificationFailed
from .ingestion import ingest as run_ingest
from .migration import migrate as run_migrate
from .pipeline import Progress
from .planning import plan as run_plan
from .settings import Settings, debugging, load_settings, with_collections
from .state import open_cache
from .status import status as run_status
from .syncing import sync as run_sync
from .texts import TextSource
from .verification import verify as run_verify
from .verification.dimensions import validate as run_validate

__all__ = ["adopt_option", "alias_options", "cache", "cache_clear_command", "cache_stats_command",
    "cli", "collection_options", "compare_command", "config_option", "demo", "drop_old_command",
    "ingest", "main", "migrate", "MigratorGroup", "models", "output_options", "pipeline_options",
    "plan", "provider_options", "rollback", "run_options", "state_option", "status",
    "store_options", "swap_command", "sync", "target_store_options", "validate", "verify"]


class _Exit(click.ClickException):
    """A ClickException whose exit code is the error's own (1, 2 or 3)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


class MigratorGroup(click.Group):
    """Turns MigratorError into a clean message and its exit code (MIGRATOR_DEBUG=1: raise)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MigratorError as exc:
            if debugging():
                raise
            code = 3 if isinstance(exc, VerificationFailed) else exc.exit_code
            raise _Exit(str(exc), code) from exc
        except KeyboardInterrupt as exc:  # Ctrl-C outside a run's own signal handling
            if debugging():
                raise
            raise _Exit("Interrupted (Ctrl-C); nothing more was done. Run the same command "
                        "again to resume.", 130) from exc


def _options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(func: Any) -> Any:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


config_option = click.option(
    "--config", "-c", type=click.Path(dir_okay=False, path_type=Path),
    help="YAML or TOML configuration file (flags > MIGRATOR_* env > file).")
store_options = _options(
    click.option("--qdrant-path", type=click.Path(path_type=Path),
                 help="Embedded store directory (default ./qdrant_data)."),
    click.option("--qdrant-url", help="Qdrant server URL, e.g. http://localhost:6333; its "
                 "API key is read from QDRANT_API_KEY."),
    click.option("--grpc/--no-grpc", default=None, help="Talk to the server over gRPC."),
)
target_store_options = _options(
    click.option("--target-qdrant-path", type=click.Path(path_type=Path),
                 help="Write the target to another embedded store."),
    click.option("--target-qdrant-url", help="Write the target to another Qdrant server."),
)
provider_options = _options(
    click.option("--provider", "-p", type=click.Choice(list(REGISTRY)),
                 help="Embedding provider of the new model."),
    click.option("--model", "-m", help="Model name (see `migrator models`)."),
    click.option("--dimensions", "-d", type=int, help="Vector size of the new collection."),
    click.option("--dimension-policy", type=click.Choice(["error", "truncate", "pad"]),
                 help="When the model cannot produce --dimensions itself: refuse (default), "
                 "keep the first values, or zero-pad."),
    click.option("--long-input", type=click.Choice(["fail", "truncate", "chunk-mean"]),
                 help="Texts over the model's token limit: list them and stop (default), "
                 "keep the start, or average the embeddings of the pieces."),
    click.option("--base-url", help="API base URL (OpenAI-compatible servers, Azure)."),
    click.option("--api-key-env", help="Environment variable holding the API key."),
    click.option("--concurrency", type=int, help="Embedding requests in flight (default 4)."),
    click.option("--batch-size", type=int, help="Texts per embedding request."),
)
collection_options = _options(
    click.option("--collection", "collections", multiple=True, metavar="SPEC",
                 help="Source collection or alias; repeat for several. Per-collection settings "
                 "as 'docs,text_field=body,alias=docs_live'."),
    click.option("--text-field", help="Payload path of the text, e.g. metadata.content."),
    click.option("--text-template", help="Template over the payload, e.g. '{title}\\n\\n{text}'."),
    click.option("--vector", help="Named vector to migrate (default: the only dense one)."),
    click.option("--target", help="Target collection name (default: derived)."),
    click.option("--alias", help="Alias to move to the target once it is complete."),
    click.option("--distance", type=click.Choice(["Cosine", "Dot", "Euclid", "Manhattan"]),
                 help="Distance of the new vector (default: the source's)."),
)
state_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Where progress, the embedding cache and skip lists live (default .migrator).")
alias_options = _options(config_option, store_options, target_store_options, state_option)
pipeline_options = _options(
    click.option("--page-size", type=int, help="Points per scroll page (default 256)."),
    click.option("--missing-text", type=click.Choice(["fail", "skip"]),
                 help="Points without text: fail before any swap (default), or skip and list."),
    state_option,
    click.option("--cache/--no-cache", default=None,
                 help="Reuse embeddings already paid for (default on)."),
)
adopt_option = click.option(
    "--adopt-target", is_flag=True,
    help="Write into an existing --target this migration did not create (refused while "
    "another alias serves it).")
run_options = _options(config_option, store_options, target_store_options, provider_options,
                       collection_options, pipeline_options)
output_options = _options(
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
)


def _settings(options: dict[str, Any]) -> Settings:
    """Settings from --config, the environment and the flags in `options`."""
    o = options
    source = {"path": o.get("qdrant_path"), "url": o.get("qdrant_url"),
              "prefer_grpc": o.get("grpc")}
    target = {"path": o.get("target_qdrant_path"), "url": o.get("target_qdrant_url")}
    overrides: dict[str, Any] = {
        "source": source,
        "target": target,
        "provider": {
            "name": o.get("provider"), "model": o.get("model"), "dimensions": o.get("dimensions"),
            "base_url": o.get("base_url"), "api_key_env": o.get("api_key_env"),
            "concurrency": o.get("concurrency"), "batch_size": o.get("batch_size"),
            "dimension_policy": o.get("dimension_policy"), "long_input": o.get("long_input"),
        },
        "migration": {"page_size": o.get("page_size"), "missing_text": o.get("missing_text"),
                      "state_dir": o.get("state_dir"), "cache": o.get("cache")},
    }
    settings = load_settings(o.get("config"), overrides)
    return with_collections(
        settings, o.get("collections") or (),
        **{k: o.get(k) for k in ("text_field", "text_template", "vector", "target", "alias",
                                 "distance")},
    )


class _Bars:
    """tqdm bars on stderr, one per collection, fed by the library's progress events."""

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet
        self._bars: dict[str, tqdm[Any]] = {}

    def bar(self, name: str, total: int | None, unit: str) -> tqdm[Any]:
        """The bar named `name`, drawn on first use."""
        bar = self._bars.get(name)
        if bar is None:
            bar = tqdm(total=total, unit=unit, desc=name, file=sys.stderr,
                       disable=True if self._quiet else None, dynamic_ncols=True)
            self._bars[name] = bar
        return bar

    def __call__(self, event: Progress) -> None:
        bar = self.bar(event.collection, event.total, "pt")
        bar.update(event.written + event.skipped - bar.n)  # done, not merely read
        shown: dict[str, int] = {"skipped": event.skipped, "tokens": event.tokens}
        if event.throttled or event.retries:  # the provider is pushing back: say so
            shown.update({"429s": event.throttled, "retries": event.retries})
        bar.set_postfix(shown, refresh=False)

    def texts(self, name: str, done: int, total: int) -> None:
        """Progress of texts embedded (`compare`'s candidates)."""
        bar = self.bar(name, total, "text")
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def _confirm_restart(collections: list[str]) -> bool:
    return click.confirm(
        f"--restart deletes {', '.join(repr(c) for c in collections)} (created by these "
        "migrations) and forgets their progress. Continue?", abort=True, err=True)


def _emit(result: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(report.to_json(result.to_dict()) if as_json else render(result))


def _with_bars(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bars = _Bars(kwargs.get("quiet", False))
        try:
            return func(*args, bars=bars, **kwargs)
        finally:
            bars.close()
    return wrapper


@click.group(cls=MigratorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="migrator")
def cli() -> None:
    """Move Qdrant collections from one embedding model to another.

    Re-embeds each point's payload text with a new provider and model, writes a new
    collection of the right size, checks it, and moves the alias to it.
    """


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
@output_options
@_with_bars
def migrate(bars: _Bars, as_json: bool, quiet: bool, restart: bool, yes: bool, force: bool,
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
    """
    settings = _settings(options)
    if no_verify:
        settings.verify.enabled = False
    result = run_migrate(settings, on_progress=bars, restart=restart, force=force,
                         drop_old=drop_old, adopt_target=adopt_target,
                         confirm=None if yes else _confirm_restart)
    bars.close()
    _emit(result, as_json, report.migration)


@cli.command()
@run_options
@adopt_option
@output_options
@_with_bars
def sync(bars: _Bars, as_json: bool, quiet: bool, adopt_target: bool, **options: Any) -> None:
    """Catch a target up with its source: embed new and changed points, delete removed ones.

    Same flags as `migrate`; the target is found the way `migrate` names it. `migrate` runs
    this itself before it moves an alias.

    \b
    Example:
      migrator sync --collection docs --provider openai \\
          --model text-embedding-3-small --dimensions 512
    """
    result = run_sync(_settings(options), on_progress=bars, adopt_target=adopt_target)
    bars.close()
    _emit(result, as_json, report.sync)


@cli.command()
@config_option
@store_options
@target_store_options
@state_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool, **options: Any) -> None:
    """Show aliases, and every migration with its phase, progress and checkpoint.

    \b
    Example:
      migrator status --json
    """
    _emit(run_status(_settings(options)), as_json, report.status)


@cli.command()
@config_option
@store_options
@target_store_options
@provider_options
@collection_options
@state_option
@click.option("--sample", type=int, help="Points sampled (default 500).")
@click.option("--k", "k", type=int, help="k of recall@k and overlap@k (default 10).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as Markdown to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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
    settings = _settings(options)
    if sample is not None:
        settings.verify.sample = sample
    if k is not None:
        settings.verify.k = k
    result = run_verify(settings)
    if report_file is not None:
        report_file.write_text(report.verify_markdown(result), encoding="utf-8")
    _emit(result, as_json, report.verify)
    if not result.passed:
        raise _Exit("Verification failed: " + "; ".join(
            r.summary() for r in result.reports if not r.passed) + ".", 3)


@cli.command("swap")
@click.argument("alias")
@click.argument("collection")
@alias_options
@click.option("--json", "as_json", is_flag=True, help="Print the move as JSON.")
def swap_command(alias: str, collection: str, as_json: bool, **options: Any) -> None:
    """Point ALIAS at COLLECTION, atomically, and record the move.

    Refused when ALIAS is a collection's name, COLLECTION does not exist, or COLLECTION
    lacks a vector the alias serves now.

    \b
    Example:
      migrator swap docs_live docs__text-embedding-3-small-512
    """
    _emit(run_swap(_settings(options), alias, collection), as_json, report.alias_move)


@cli.command()
@click.argument("alias")
@alias_options
@click.option("--json", "as_json", is_flag=True, help="Print the move as JSON.")
def rollback(alias: str, as_json: bool, **options: Any) -> None:
    """Point ALIAS back at the collection it pointed to before its last move.

    \b
    Example:
      migrator rollback docs_live
    """
    _emit(run_rollback(_settings(options), alias), as_json, report.alias_move)


@cli.command("drop-old")
@click.argument("alias")
@alias_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
def drop_old_command(alias: str, yes: bool, **options: Any) -> None:
    """Delete the collection ALIAS pointed to before its last move (never automatic).

    \b
    Example:
      migrator drop-old docs_live --yes
    """
    settings = _settings(options)
    if not yes:
        click.confirm(f"Delete the collection {alias!r} pointed to before its last move?",
                      abort=True, err=True)
    click.echo(f"Deleted {run_drop_old(settings, alias)!r}.")


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
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def cache_stats_command(as_json: bool, **options: Any) -> None:
    """How many embeddings the cache holds, and its size on disk.

    \b
    Example:
      migrator cache stats --state-dir .migrator --json
    """
    stats = cache_stats(_settings(options).migration.state_dir)
    _emit(stats, as_json, report.cache)


@cache.command("clear")
@config_option
@state_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
def cache_clear_command(yes: bool, **options: Any) -> None:
    """Delete every cached embedding (the next run pays for its embeddings again).

    \b
    Example:
      migrator cache clear --yes
    """
    state_dir = _settings(options).migration.state_dir
    if not yes:
        click.confirm("Delete every cached embedding?", abort=True, err=True)
    removed = cache_clear(state_dir)
    click.echo(f"Removed {removed:,} cached embeddings.")


@cli.command()
@run_options
@click.option("--sample", type=int, default=200, show_default=True,
              help="Points read per collection for text statistics.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(as_json: bool, sample: int, **options: Any) -> None:
    """Show what a migration would do and cost, without changing anything.

    \b
    Example:
      migrator plan --collection articles --provider openai \\
          --model text-embedding-3-small --dimensions 512
    """
    result = run_plan(_settings(options), sample=sample)
    _emit(result, as_json, report.plan)


def _sizes(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of sizes") from None


@cli.command()
@config_option
@store_options
@provider_options
@collection_options
@click.option("--full", is_flag=True, help="Scan every point, not a sample.")
@click.option("--sample", type=int, default=1000, show_default=True,
              help="Points scanned without --full.")
@click.option("--dims", callback=_sizes, help="Candidate sizes for truncation fidelity, e.g. "
              "256,512,1024 (default: common sizes below the collection's).")
@click.option("--no-probe", is_flag=True, help="Do not send the one probe request.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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
    report_ = run_validate(_settings(options), full=full, sample=sample, dims=dims,
                           probe_provider=not no_probe)
    _emit(report_, as_json, report.validation)
    if not report_.passed:
        names = ", ".join(sorted({c.name for c in report_.failed}))
        raise _Exit(f"{len(report_.failed)} check(s) failed: {names}.", 3)


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--collection", required=True, help="Name of the new collection.")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv", "beir"]),
              default="auto", show_default=True, help="Input format.")
@click.option("--text-field", help="Field holding the text (default 'text').")
@click.option("--text-template", help="Template over the record, e.g. '{title} {text}' "
              "(the default for BEIR corpora).")
@click.option("--id-field", help="Field holding the point id (default '_id' or 'id').")
@click.option("--vector", default="", help="Name of the vector (default: unnamed).")
@click.option("--distance", type=click.Choice(["Cosine", "Dot", "Euclid", "Manhattan"]),
              default="Cosine", show_default=True)
@config_option
@store_options
@provider_options
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the list of skipped records goes (default .migrator).")
@output_options
@_with_bars
def ingest(bars: _Bars, path: Path, collection: str, fmt: str, text_field: str | None,
           text_template: str | None, id_field: str | None, vector: str, distance: str,
           as_json: bool, quiet: bool, **options: Any) -> None:
    """Load texts from JSONL, CSV or a BEIR corpus into a new collection.

    \b
    Example:
      migrator ingest notes.jsonl --collection notes --text-field body \\
          --provider hashing --model hash-words-v1
    """
    settings = _settings(options)
    result = run_ingest(path, collection, settings, format=fmt,  # type: ignore[arg-type]
                        text_field=text_field, text_template=text_template, id_field=id_field,
                        vector=vector, distance=distance,  # type: ignore[arg-type]
                        on_progress=bars)
    bars.close()
    _emit(result, as_json, report.ingest)


@cli.command("compare")
@click.argument("dataset", required=False, type=click.Path(exists=True, path_type=Path))
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
    settings = _settings(options)
    data = datasets.open_dataset(
        dataset, collection=collection, store=settings.source,
        text=TextSource.from_settings(text_field, text_template), labels=labels_file,
        split=split, id_field=id_field, sample=sample, queries=queries, seed=seed)
    label = size_of
    if size_of is not None and collection_size is None:
        collection_size = datasets.collection_size(settings.source, size_of)
    bars = _Bars(quiet)
    try:
        with open_cache(state_dir or settings.migration.state_dir, cache) as store_cache:
            result = run_compare(data, candidates, cache=store_cache,
                                 collection_size=collection_size, collection_label=label,
                                 on_progress=bars.texts, seed=seed)
    finally:
        bars.close()
    for path in outputs:
        compare_report.write(result, path)
    _emit(result, as_json, compare_report.terminal)
    if result.failed:
        raise _Exit(f"{len(result.failed)} of {len(result.candidates)} candidates failed: "
                    + ", ".join(c.name for c in result.failed) + "; the report covers the rest.",
                    1)


@cli.command()
@click.option("--provider", "providers", multiple=True, help="Only this provider (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
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
        click.echo(report.models(specs))


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("migrator-demo"), show_default=True,
              help="Directory for the demo's embedded store (replaced on each run).")
@click.option("--hashing-only", is_flag=True,
              help="Use the hashing model as the new model even when the local one is installed.")
@output_options
@_with_bars
def demo(bars: _Bars, directory: Path, hashing_only: bool, as_json: bool, quiet: bool) -> None:
    """Run the whole flow offline on the embedded store, with a bundled corpus.

    \b
    Example:
      migrator demo
    """
    result = run_demo(directory, prefer_local=not hashing_only, on_progress=bars)
    bars.close()
    _emit(result, as_json, report.demo)


def main() -> None:
    cli(prog_name="migrator")
