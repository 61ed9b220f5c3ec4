"""The shell of the `migrator` command line: the group, the options commands share, how
flags become settings, the progress bars, and how errors become exit codes (0 ok, 1
failure, 2 usage, 3 verification, 130/143 interrupted)."""

from __future__ import annotations

import functools
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from tqdm import tqdm

from .. import __version__, report
from ..catalog import REGISTRY
from ..errors import ConfigError, Interrupted, MigratorError, VerificationFailed
from ..interrupts import interruptible
from ..pipeline import Progress
from ..settings import CollectionSettings, Settings, debugging, load_settings
from ..wording import describe_validation

__all__ = ["adopt_option", "alias_options", "ask", "Bars", "batch_option", "catch_up_options",
           "cli", "collection_options", "combine_options", "config_option", "confirm_restart",
           "emit", "error_document", "Exit", "json_option", "main",
           "MigratorGroup", "output_options", "pipeline_options", "provider_options",
           "run_options", "settings_from", "state_option", "store_options",
           "target_store_options", "with_bars", "with_collections"]


class Exit(click.ClickException):
    """A ClickException whose exit code is the error's own (1, 2 or 3)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


class MigratorGroup(click.Group):
    """Turns MigratorError into a clean message and its exit code (MIGRATOR_DEBUG=1: raise)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (MigratorError, KeyboardInterrupt) as exc:
            if debugging():
                raise
            # Ctrl-C outside a run's own signal handling: a read-only command, or a step
            # too short to stop gracefully; none of them resumes, it is run again
            error = exc if isinstance(exc, MigratorError) else Interrupted(
                "Interrupted (Ctrl-C) before the command finished; run it again.",
                signum=signal.SIGINT)
            code = 3 if isinstance(error, VerificationFailed) else error.exit_code
            if ctx.meta.get(_JSON_ASKED) and not ctx.meta.get(_JSON_PRINTED):
                click.echo(report.to_json(error_document(error, code)))
            raise Exit(str(error), code) from exc


def combine_options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(func: Any) -> Any:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


config_option = click.option(
    "--config", "-c", type=click.Path(dir_okay=False, path_type=Path),
    help="YAML or TOML configuration file (flags > MIGRATOR_* env > file).")
store_options = combine_options(
    click.option("--qdrant-path", type=click.Path(path_type=Path),
                 help="Embedded store directory (default ./qdrant_data)."),
    click.option("--qdrant-url", help="Qdrant server URL, e.g. http://localhost:6333; its "
                 "API key is read from QDRANT_API_KEY."),
    click.option("--grpc/--no-grpc", default=None, help="Talk to the server over gRPC."),
)
target_store_options = combine_options(
    click.option("--target-qdrant-path", type=click.Path(path_type=Path),
                 help="Write the target to another embedded store."),
    click.option("--target-qdrant-url", help="Write the target to another Qdrant server."),
)
provider_options = combine_options(
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
collection_options = combine_options(
    click.option("--collection", "collections", multiple=True, metavar="SPEC",
                 help="Source collection or alias; repeat for several. Per-collection settings "
                 "as 'docs,text_field=body,alias=docs_live'."),
    click.option("--text-field", help="Payload path of the text, e.g. metadata.content."),
    click.option("--text-template", help="Template over the payload, e.g. '{title}\\n\\n{text}'."),
    click.option("--vector", help="Named vector to migrate (default: the only dense one)."),
    click.option("--target", help="Target collection name (default: derived)."),
    click.option("--alias", help="Alias to move to the target once it is complete."),
    click.option("--distance", type=click.Choice(["Cosine", "Dot", "Euclid", "Manhattan"],
                                                 case_sensitive=False),
                 help="Distance of the new vector (default: the source's)."),
    click.option("--strategy", type=click.Choice(["new-collection", "in-place"]),
                 help="new-collection (default): a copy with the new vectors, then an alias "
                 "move; in-place: a named vector added to the same collection (Qdrant >= "
                 "1.18)."),
    click.option("--new-vector", metavar="NAME",
                 help="In-place: the new vector's name (default: the model and size, e.g. "
                 "text-embedding-3-small-512)."),
)
state_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Where progress, the embedding cache and skip lists live (default .migrator).")
alias_options = combine_options(config_option, store_options, target_store_options, state_option)
pipeline_options = combine_options(
    click.option("--page-size", type=int, help="Points per scroll page (default 256)."),
    click.option("--missing-text", type=click.Choice(["fail", "skip"]),
                 help="Points without text: fail before any swap (default), or skip and list."),
    state_option,
    click.option("--cache/--no-cache", default=None,
                 help="Reuse embeddings already paid for (default on)."),
    click.option("--max-cost", type=click.FloatRange(min=0, min_open=True), metavar="USD",
                 help="Refuse to start when the estimate exceeds it; stop (resumable) before "
                 "a run's spend would pass it."),
)
catch_up_options = combine_options(
    click.option(
        "--updated-field", metavar="FIELD",
        help="Payload field the application sets to the time of each write (with a range "
        "index): a catch-up then reads only what changed since the last one."),
    click.option(
        "--max-delete", type=click.FloatRange(0, 1), metavar="SHARE",
        help="The largest share of an alias-served target a catch-up may delete (default "
        "0.5; 1: any)."),
)
batch_option = click.option(
    "--batch/--no-batch", default=None,
    help="Embed through the provider's batch API at its batch price (OpenAI: half), then "
    "migrate; run again to collect (or --wait).")
adopt_option = click.option(
    "--adopt-target", is_flag=True,
    help="Write into an existing --target this migration did not create (refused while "
    "another alias serves it).")
run_options = combine_options(config_option, store_options, target_store_options, provider_options,
                       collection_options, pipeline_options)
_JSON_ASKED, _JSON_PRINTED = "migrator.json_asked", "migrator.json_printed"  # in ctx.meta


def json_option(help: str) -> Callable[[Any], Any]:
    """--json: the result as JSON on stdout; or, when the command fails before it has one,
    the error as JSON (see `error_document`), so a script reading stdout always gets JSON."""
    def noted(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        ctx.meta[_JSON_ASKED] = ctx.meta.get(_JSON_ASKED) or value
        return value
    return click.option("--json", "as_json", is_flag=True, help=help, callback=noted)


def error_document(exc: MigratorError, exit_code: int) -> dict[str, Any]:
    """What `--json` prints for a failed command: the message stderr has, the error's kind,
    the exit code and, for failed verification, the report."""
    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc),
                             "exit_code": exit_code}
    if isinstance(exc, VerificationFailed) and exc.report is not None:
        error["report"] = exc.report
    return {"error": error}


output_options = combine_options(
    json_option("Print the result as JSON."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
)


def settings_from(options: dict[str, Any]) -> Settings:
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
            "batch": o.get("batch"), "batch_wait": o.get("wait"),
            "keep_batch_files": o.get("keep_batch_files"),
            "batch_fallback": o.get("batch_fallback"),
        },
        "migration": {"page_size": o.get("page_size"), "missing_text": o.get("missing_text"),
                      "state_dir": o.get("state_dir"), "cache": o.get("cache"),
                      "max_cost": o.get("max_cost"), "strategy": o.get("strategy")},
        "sync": {"updated_field": o.get("updated_field"), "max_delete": o.get("max_delete")},
        "verify": {"sample": o.get("verify_sample"), "k": o.get("verify_k")},
    }
    settings = load_settings(o.get("config"), overrides)
    return with_collections(
        settings, o.get("collections") or (),
        **{k: o.get(k) for k in ("text_field", "text_template", "vector", "target", "alias",
                                 "distance", "new_vector")},
    )


class Bars:
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


def ask(question: str) -> bool:
    """Ask `question` on stderr and read the answer (yes or no, no by default) from stdin.

    Raises:
        ConfigError: stdin ended before an answer (a script, cron, CI): nothing can be
            asked, and the command's --yes is what says yes there.
    """
    while True:
        click.echo(f"{question} [y/N]: ", nl=False, err=True)
        try:
            with interruptible():
                line = sys.stdin.readline()
        except KeyboardInterrupt:
            click.echo(err=True)  # the error goes below the question, not after it
            raise
        if not sys.stdin.isatty():  # a terminal echoes the answer and its newline
            click.echo(line.rstrip("\n"), err=True)
        if not line:
            raise ConfigError(f'Not confirmed: the input ended before an answer to "{question}" '
                              "(it is not a terminal). Give --yes to go ahead without being "
                              "asked. Nothing was changed.")
        answer = line.strip().lower()
        if answer in ("", "n", "no"):
            return False
        if answer in ("y", "yes"):
            return True
        click.echo("Answer y or n.", err=True)


def confirm_restart(collections: list[str]) -> bool:
    return ask(f"--restart deletes {', '.join(repr(c) for c in collections)} (created by "
               "these migrations) and forgets their progress. Continue?")


def emit(result: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(report.to_json(result.to_dict()) if as_json else render(result))
    if (ctx := click.get_current_context(silent=True)) is not None:
        ctx.meta[_JSON_PRINTED] = as_json


def with_bars(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bars = Bars(kwargs.get("quiet", False))
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
    # qdrant-client's own, printed with a line of its code; plan, migrate and ingest say it
    # in their reports (planning.local_mode_warning)
    warnings.filterwarnings("ignore", message="Local mode is not recommended",
                            category=UserWarning)


def main() -> None:
    cli(prog_name="migrator")


def with_collections(
    settings: Settings, specs: list[str] | tuple[str, ...] = (), **fields: Any
) -> Settings:
    """Apply the CLI's collection flags.

    `specs` (repeated --collection) replace the configured list; each is a name with optional
    `key=value` pairs (see `CollectionSettings.parse`). `fields` (--text-field, --alias, ...)
    fill what a spec leaves unset, or override every configured collection when no spec is
    given. `target` and `alias` name one collection, so they need exactly one.
    """
    given = {k: v for k, v in fields.items() if v is not None}
    collections = [CollectionSettings.parse(s) for s in specs] if specs else list(
        settings.collections)
    if "text_field" in given and "text_template" in given:
        raise ConfigError("Give --text-field or --text-template, not both.")
    single = {k for k in ("target", "alias", "new_vector") if k in given}
    if single and len(collections) > 1:
        flags = " and ".join(f"--{k.replace('_', '-')}" for k in sorted(single))
        raise ConfigError(
            f"{flags} name one collection, but this run has {len(collections)}; set them per "
            "collection: --collection 'docs,alias=docs_live' or in the configuration file."
        )
    merged = []
    for collection in collections:
        explicit = collection.model_fields_set if specs else set()  # a spec's own keys win
        updates = {k: v for k, v in given.items() if k not in explicit}
        # a text source given by flag replaces the other kind from lower down
        for chosen, other in (("text_field", "text_template"), ("text_template", "text_field")):
            if chosen in given and chosen not in explicit and other not in explicit:
                updates[other] = None
        try:
            merged.append(CollectionSettings.model_validate(
                {**collection.model_dump(), **updates}))
        except ValidationError as exc:
            raise ConfigError(describe_validation(exc, prefix="collection flags",
                                                  model=CollectionSettings)) from exc
    settings.collections = merged
    return settings
