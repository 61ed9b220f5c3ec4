"""`migrate()` / `amigrate()`: preflight → create target → backfill → check → swap alias."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import ModelSpec
from .dims import DimsDecision, probe
from .errors import (
    ConfigError,
    DataError,
    MigratorError,
    MissingText,
    ProviderError,
    SchemaMismatch,
    StoreError,
    VerificationFailed,
)
from .pipeline import Backfill, Progress, SkipLog, Stats
from .providers import Embedder, build_embedder
from .settings import CollectionSettings, Settings
from .store import CollectionSchema, Page, QdrantStore, opened
from .texts import TextSource

ProgressCallback = Callable[[Progress], None]


@dataclass
class CollectionResult:
    """What happened to one collection."""

    source: str
    source_collection: str
    target: str
    vector: str
    text: str
    alias: str | None = None
    previous_alias_target: str | None = None
    created: bool = False
    swapped: bool = False
    source_count: int = 0
    target_count: int = 0
    skip_file: str | None = None
    first_skipped: list[Any] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "stats"}
        data["vector"] = self.vector or "(unnamed)"
        data["stats"] = self.stats.to_dict()
        return data


@dataclass
class MigrationResult:
    """The outcome of `migrate()`: per-collection counts plus run totals."""

    provider: str
    model: str
    dims: int
    collections: list[CollectionResult]
    seconds: float
    cost: float | None
    price_known: bool
    dims_decision: DimsDecision | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(c.stats.tokens for c in self.collections)

    @property
    def written(self) -> int:
        return sum(c.stats.written for c in self.collections)

    @property
    def points_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "dims": self.dims,
            "dims_decision": self.dims_decision.consequences() if self.dims_decision else None,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "points_per_second": round(self.points_per_second, 1),
            "tokens": self.tokens,
            "tokens_estimated": any(c.stats.tokens_estimated for c in self.collections),
            "cost_usd": self.cost,
            "requests": sum(c.stats.requests for c in self.collections),
            "retries": sum(c.stats.retries for c in self.collections),
            "collections": [c.to_dict() for c in self.collections],
        }


@dataclass
class _Job:
    config: CollectionSettings
    schema: CollectionSchema
    vector: str
    text: TextSource
    target: str
    target_exists: bool
    distance: str
    keep_vectors: list[str]


class ScrollSource:
    """Pages of a Qdrant collection in id order (a `PageSource`)."""

    def __init__(self, store: QdrantStore, collection: str, *, page_size: int,
                 vectors: list[str]) -> None:
        self._store = store
        self._collection = collection
        self._page_size = page_size
        self._vectors = vectors
        self._offset: Any = None
        self._finished = False

    def next_page(self) -> Page | None:
        if self._finished:
            return None
        page = self._store.scroll(self._collection, limit=self._page_size, offset=self._offset,
                                  vectors=self._vectors)
        self._offset = page.next_offset
        self._finished = page.next_offset is None
        return page


def target_name(source: str, spec: ModelSpec, dims: int) -> str:
    """The default target name, stable so that a re-run finds it.

    For example `docs__text-embedding-3-small-512`.
    """
    slug = re.sub(r"[^a-z0-9._-]+", "-", spec.model.lower().split("/")[-1]).strip("-")
    return f"{source}__{slug}-{dims}"


def migrate(
    settings: Settings,
    *,
    source_store: QdrantStore | None = None,
    target_store: QdrantStore | None = None,
    embedder: Embedder | None = None,
    on_progress: ProgressCallback | None = None,
) -> MigrationResult:
    """Re-embed every configured collection into a new one and move its alias.

    The synchronous face of `amigrate()`; see there for arguments.
    """
    return asyncio.run(amigrate(settings, source_store=source_store, target_store=target_store,
                                embedder=embedder, on_progress=on_progress))


async def amigrate(
    settings: Settings,
    *,
    source_store: QdrantStore | None = None,
    target_store: QdrantStore | None = None,
    embedder: Embedder | None = None,
    on_progress: ProgressCallback | None = None,
) -> MigrationResult:
    """Re-embed every configured collection into a new one and move its alias.

    Every collection is checked before anything is created or embedded. Aliases move only
    after every collection is backfilled and its counts check out.

    Args:
        settings: what to migrate and how (see `load_settings`).
        source_store: an open store to read from (default: opened from `settings.source`).
        target_store: an open store to write to (default: the source store, or one opened
            from `settings.target`).
        embedder: the target model (default: built from `settings.provider`).
        on_progress: called after each written page.

    Raises:
        ConfigError: bad configuration, found before anything was written.
        CollectionNotFound: a source collection or alias does not exist.
        SchemaMismatch: an existing target does not fit.
        MissingText: points without text under the `fail` policy; no alias was moved.
        VerificationFailed: the target's point count does not add up; no alias was moved.
        ProviderError: the provider failed in a way retries could not fix.
    """
    if not settings.collections:
        raise ConfigError(
            "No collection to migrate: give --collection NAME or a `collections:` list in the "
            "configuration file."
        )
    with opened(settings.source, settings.target, source_store=source_store,
                target_store=target_store) as (source, target):
        schemas = [source.describe(c.name) for c in settings.collections]
        first = settings.collections[0]
        distance = first.distance or schemas[0].vector(first.vector).distance
        model = embedder or build_embedder(settings.provider, distance=distance)
        try:
            return await _run(settings, schemas, source, target, model, on_progress)
        finally:
            if embedder is None:
                await model.aclose()


async def _run(settings: Settings, schemas: list[CollectionSchema], source: QdrantStore,
               target: QdrantStore, embedder: Embedder,
               on_progress: ProgressCallback | None) -> MigrationResult:
    started = time.perf_counter()
    for config, schema in zip(settings.collections, schemas, strict=True):
        schema.vector(config.vector)  # the vector to replace exists, before any request
    first = settings.collections[0]
    checked = await probe(embedder, _sample_texts(source, schemas[0], first),
                          distance=first.distance or schemas[0].vector(first.vector).distance)
    dims = checked.target
    jobs = [_plan_job(c, s, embedder.spec, dims, target)
            for c, s in zip(settings.collections, schemas, strict=True)]
    _check_aliases(jobs, target)

    results = []
    for job in jobs:
        results.append(await _backfill(job, settings, source, target, embedder, dims,
                                       on_progress))
    problems = [_problem(job, result, settings)
                for job, result in zip(jobs, results, strict=True)]
    _raise_problems([p for p in problems if p is not None])
    for job, result in zip(jobs, results, strict=True):
        if job.config.alias:
            result.previous_alias_target = target.swap_alias(job.config.alias, job.target)
            result.swapped = True
    total_tokens = sum(r.stats.tokens for r in results)
    return MigrationResult(
        provider=settings.provider.name,
        model=settings.provider.model,
        dims=dims,
        dims_decision=checked.decision,
        warnings=checked.warnings,
        collections=results,
        seconds=time.perf_counter() - started,
        cost=embedder.spec.cost(total_tokens),
        price_known=embedder.spec.price_per_mtok is not None,
    )


def _sample_texts(source: QdrantStore, schema: CollectionSchema, config: CollectionSettings,
                  limit: int = 256) -> list[str]:
    """Real texts from the start of the source, for the preflight probe."""
    text = TextSource.from_settings(config.text_field, config.text_template)
    page = source.scroll(schema.name, limit=limit, vectors=False)
    return [t for p in page.points if (t := text.extract(p.payload)[0])]


def _plan_job(config: CollectionSettings, schema: CollectionSchema, spec: ModelSpec, dims: int,
              target: QdrantStore) -> _Job:
    vector = schema.vector(config.vector)
    if vector.multivector:
        raise ConfigError(
            f"Vector {vector.name or '(unnamed)'!r} of collection {schema.name!r} is a "
            "multivector; migrator re-embeds single dense vectors only."
        )
    name = config.target or target_name(config.name, spec, dims)
    if name == schema.name:
        raise ConfigError(
            f"The target of {config.name!r} is the source collection {schema.name!r} itself; "
            "give a different --target."
        )
    distance = config.distance or vector.distance
    exists = target.exists(name)
    if exists:
        _check_existing_target(target.describe(name), vector.name, dims, distance)
    keep = [n for n in schema.vectors if n != vector.name] + schema.sparse_vectors
    return _Job(config, schema, vector.name, TextSource.from_settings(
        config.text_field, config.text_template), name, exists, distance, keep)


def _check_existing_target(existing: CollectionSchema, vector: str, dims: int,
                           distance: str) -> None:
    label = vector or "(unnamed)"
    have = existing.vectors.get(vector)
    if have is None or have.size != dims or have.distance != distance:
        found = f"size {have.size}, {have.distance}" if have else "no such vector"
        raise SchemaMismatch(
            f"Target collection {existing.name!r} already exists, and its vector {label!r} "
            f"({found}) does not fit this migration (size {dims}, {distance}). Give another "
            "--target, or delete that collection if it is a leftover."
        )


def _check_aliases(jobs: list[_Job], target: QdrantStore) -> None:
    collections = set(target.collection_names())
    seen_targets: set[str] = set()
    seen_aliases: set[str] = set()
    for job in jobs:
        if job.target in seen_targets:
            raise ConfigError(f"Two collections in this run write to the same target "
                              f"{job.target!r}; give each its own target.")
        seen_targets.add(job.target)
        alias = job.config.alias
        if alias is None:
            continue
        if alias in collections or alias == job.target:
            raise ConfigError(
                f"Alias {alias!r} is the name of an existing collection, and Qdrant cannot "
                "give an alias a collection's name. Choose another alias name (nothing was "
                "changed)."
            )
        if alias in seen_aliases:
            raise ConfigError(f"Alias {alias!r} is given to two collections in this run.")
        seen_aliases.add(alias)


async def _backfill(job: _Job, settings: Settings, source: QdrantStore, target: QdrantStore,
                    embedder: Embedder, dims: int,
                    on_progress: ProgressCallback | None) -> CollectionResult:
    result = CollectionResult(source=job.config.name, source_collection=job.schema.name,
                              target=job.target, vector=job.vector, text=job.text.describe(),
                              alias=job.config.alias)
    result.source_count = source.count(job.schema.name)
    if not job.target_exists:
        target.create_like(job.schema, job.target, vector=job.vector, size=dims,
                           distance=job.distance)
        result.created = True
    skip_path = Path(settings.migration.state_dir) / f"{job.target}.skipped.jsonl"
    skip_path.unlink(missing_ok=True)
    skip_log = SkipLog(skip_path, collection=job.schema.name)
    backfill = Backfill(
        source=ScrollSource(source, job.schema.name, page_size=settings.migration.page_size,
                            vectors=job.keep_vectors),
        write=lambda points: target.upsert(job.target, points),
        embedder=embedder,
        text=job.text,
        vector=job.vector,
        dims=dims,
        skip_log=skip_log,
        collection=job.config.name,
        total=result.source_count,
        concurrency=settings.provider.concurrency,
        queue_depth=settings.migration.queue_depth,
        on_progress=on_progress,
    )
    try:
        result.stats = await backfill.run()
    except (ProviderError, StoreError) as exc:
        raise _stopped(exc, result, backfill.stats) from exc
    finally:
        skip_log.close()
    result.target_count = target.count(job.target)
    result.first_skipped = skip_log.first
    result.skip_file = str(skip_path) if skip_log.count else None
    return result


def _stopped(exc: ProviderError | StoreError, result: CollectionResult,
             stats: Stats) -> MigratorError:
    """The same error, saying what the run left behind and how to go on."""
    message = (
        f"{exc} The migration of {result.source!r} into {result.target!r} stopped after "
        f"{stats.written:,} of {result.source_count:,} points were written; no alias was "
        "moved. Fix the cause and run the same command again: it writes into the same "
        "target (writes are idempotent)."
    )
    if isinstance(exc, ProviderError):
        return type(exc)(message, provider=exc.provider, status=exc.status)
    return type(exc)(message)


def _problem(job: _Job, result: CollectionResult, settings: Settings) -> MigratorError | None:
    stats = result.stats
    if stats.skipped and settings.migration.missing_text == "fail":
        shown = ", ".join(repr(i) for i in result.first_skipped)
        more = f" and {stats.skipped - len(result.first_skipped)} more" if stats.skipped > len(
            result.first_skipped) else ""
        return MissingText(
            f"{stats.skipped} point(s) of {job.config.name!r} have no text in "
            f"{job.text.describe()}: {shown}{more}. The full list is in {result.skip_file}. "
            "Fix those payloads, point text_field/text_template at the text, or run again with "
            "--missing-text skip to migrate without them. No alias was moved.",
            point_ids=list(result.first_skipped),
            skip_file=result.skip_file,
        )
    expected = stats.read - stats.skipped
    if result.target_count != expected:
        return VerificationFailed(
            f"Target {job.target!r} holds {result.target_count} points, but {expected} were "
            f"expected ({stats.read} read from {job.schema.name!r}, {stats.skipped} skipped). "
            "The source may have changed during the run, or the target held other points. "
            "No alias was moved."
        )
    return None


def _raise_problems(problems: list[MigratorError]) -> None:
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    kind = VerificationFailed if all(isinstance(p, VerificationFailed) for p in problems) \
        else DataError
    raise kind(" ".join(str(p) for p in problems))
