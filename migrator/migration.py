"""`migrate()` / `amigrate()`: preflight → create target → backfill → catch-up → check →
swap alias. Resumable: progress is checkpointed in the state directory, and the same call
continues where an interrupted one stopped."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import CachedEmbedder
from .catalog import ModelSpec
from .catchup import MergeJoinSource, SyncStats
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
from .labelled import labelled_check, load_queries
from .pipeline import Backfill, Checkpoint, Progress, Stats
from .providers import Embedder, build_embedder
from .settings import CollectionSettings, Settings
from .state import EmbeddingCache, MigrationRecord, State, migration_id
from .store import CollectionSchema, Page, PointId, QdrantStore, opened
from .texts import TextSource
from .verify import Check, Pair, Reservoir, VerificationReport, draw_sample, run_checks

ProgressCallback = Callable[[Progress], None]


@dataclass
class CollectionResult:
    """What happened to one collection."""

    source: str
    source_collection: str
    target: str
    vector: str
    text: str
    migration_id: str = ""
    alias: str | None = None
    previous_alias_target: str | None = None
    created: bool = False
    resumed: bool = False
    resumed_written: int = 0
    swapped: bool = False
    write_mode: str = "upsert"
    source_count: int = 0
    target_count: int = 0
    skipped: int = 0
    skip_file: str | None = None
    first_skipped: list[Any] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    sync: SyncStats | None = None
    verification: VerificationReport | None = None
    forced: bool = False
    dropped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__
                if k not in ("stats", "sync", "verification")}
        data["vector"] = self.vector or "(unnamed)"
        data["stats"] = self.stats.to_dict()
        data["sync"] = self.sync.to_dict() if self.sync else None
        data["verification"] = self.verification.to_dict() if self.verification else None
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
    cost_saved: float | None = None
    probe_tokens: int = 0

    @property
    def tokens(self) -> int:
        """Tokens paid for in this run: the probe's and every collection's."""
        return self.probe_tokens + sum(c.stats.tokens for c in self.collections)

    @property
    def written(self) -> int:
        return sum(c.stats.written for c in self.collections)

    @property
    def points_per_second(self) -> float:
        done = sum(c.stats.written - c.resumed_written for c in self.collections)
        return done / self.seconds if self.seconds > 0 else 0.0

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
            "probe_tokens": self.probe_tokens,
            "tokens_estimated": any(c.stats.tokens_estimated for c in self.collections),
            "cost_usd": self.cost,
            "cache_hits": sum(c.stats.cached for c in self.collections),
            "tokens_saved": sum(c.stats.tokens_saved for c in self.collections),
            "cost_saved_usd": self.cost_saved,
            "requests": sum(c.stats.requests for c in self.collections),
            "retries": sum(c.stats.retries for c in self.collections),
            "collections": [c.to_dict() for c in self.collections],
        }


@dataclass
class _Job:
    config: CollectionSettings
    schema: CollectionSchema  # the source collection
    vector: str
    text: TextSource
    target: str
    target_exists: bool
    distance: str
    keep_vectors: list[str]
    record: MigrationRecord
    sample: Reservoir | None = None


class ScrollSource:
    """Pages of a Qdrant collection in id order, from `start` (a `PageSource`)."""

    def __init__(self, store: QdrantStore, collection: str, *, page_size: int,
                 vectors: list[str], start: Any = None) -> None:
        self._store = store
        self._collection = collection
        self._page_size = page_size
        self._vectors = vectors
        self._offset: Any = start
        self._finished = False

    def next_page(self) -> Page | None:
        if self._finished:
            return None
        page = self._store.scroll(self._collection, limit=self._page_size, offset=self._offset,
                                  vectors=self._vectors)
        self._offset = page.next_offset
        self._finished = page.next_offset is None
        return page


class StateSkipLog:
    """Points without text, kept in the state database (a resume does not list them twice).
    """

    def __init__(self, state: State, migration: str) -> None:
        self._state = state
        self._migration = migration
        self._pending: list[tuple[PointId, str]] = []

    def add(self, point_id: PointId, reason: str) -> None:
        self._pending.append((str(point_id) if not isinstance(point_id, int) else point_id,
                              reason))
        if len(self._pending) >= 256:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._state.add_skipped(self._migration, self._pending)
            self._pending = []


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
    restart: bool = False,
    force: bool = False,
    drop_old: bool = False,
) -> MigrationResult:
    """Re-embed every configured collection into a new one and move its alias.

    The synchronous face of `amigrate()`; see there for arguments.
    """
    return asyncio.run(amigrate(settings, source_store=source_store, target_store=target_store,
                                embedder=embedder, on_progress=on_progress, restart=restart,
                                force=force, drop_old=drop_old))


async def amigrate(
    settings: Settings,
    *,
    source_store: QdrantStore | None = None,
    target_store: QdrantStore | None = None,
    embedder: Embedder | None = None,
    on_progress: ProgressCallback | None = None,
    restart: bool = False,
    force: bool = False,
    drop_old: bool = False,
) -> MigrationResult:
    """Re-embed every configured collection into a new one and move its alias.

    Every collection is checked, and one probe request sent, before anything is created.
    Progress is checkpointed after each page: running the same migration again resumes it,
    and embeddings already paid for come from the cache. After the backfill a catch-up
    brings in what changed in the source meanwhile. Aliases move only after every collection
    is complete and its counts check out.

    Args:
        settings: what to migrate and how (see `load_settings`).
        source_store: an open store to read from (default: opened from `settings.source`).
        target_store: an open store to write to (default: the source store, or one opened
            from `settings.target`).
        embedder: the target model (default: built from `settings.provider`).
        on_progress: called after each written page.
        restart: forget earlier progress and delete targets this migration created.
        force: move aliases even when verification fails (recorded as forced).
        drop_old: after a verified (not forced) alias move, delete the collection the alias
            pointed to before, unless another alias still serves it.

    Raises:
        ConfigError: bad configuration, found before anything was written.
        CollectionNotFound: a source collection or alias does not exist.
        SchemaMismatch: an existing target does not fit.
        MissingText: points without text under the `fail` policy; no alias was moved.
        VerificationFailed: counts do not add up, or a verification check is below its
            threshold (the report is attached); no alias was moved.
        ProviderError: the provider failed in a way retries could not fix.
        StateError: the state database is unreadable.
    """
    if not settings.collections:
        raise ConfigError(
            "No collection to migrate: give --collection NAME or a `collections:` list in the "
            "configuration file."
        )
    state_dir = Path(settings.migration.state_dir)
    state = State(state_dir)
    cache = EmbeddingCache(state_dir) if settings.migration.cache else None
    try:
        with opened(settings.source, settings.target, source_store=source_store,
                    target_store=target_store) as (source, target):
            schemas = [source.describe(c.name) for c in settings.collections]
            first = settings.collections[0]
            distance = first.distance or schemas[0].vector(first.vector).distance
            model = embedder or build_embedder(settings.provider, distance=distance)
            run = _Run(settings, state, cache, source, target, model, on_progress)
            try:
                run.drop_old = drop_old
                return await run.go(schemas, restart=restart, force=force)
            finally:
                await run.release()
                if embedder is None:
                    await model.aclose()
    finally:
        state.close()
        if cache is not None:
            cache.close()


class _Run:
    """One call of `amigrate`: the steps, in order, sharing what they need."""

    def __init__(self, settings: Settings, state: State, cache: EmbeddingCache | None,
                 source: QdrantStore, target: QdrantStore, model: Embedder,
                 on_progress: ProgressCallback | None) -> None:
        self.settings, self.state, self.cache = settings, state, cache
        self.source, self.target, self.model = source, target, model
        self.on_progress = on_progress
        self.drop_old = False
        self.embedder: Embedder = CachedEmbedder(model, cache) if cache is not None else model

    async def release(self) -> None:
        if isinstance(self.embedder, CachedEmbedder):
            await self.embedder.release()

    async def go(self, schemas: list[CollectionSchema], *, restart: bool,
                 force: bool = False) -> MigrationResult:
        started = time.perf_counter()
        collections = self.settings.collections
        for config, schema in zip(collections, schemas, strict=True):
            schema.vector(config.vector)  # the vector to replace exists, before any request
        first = collections[0]
        checked = await probe(self.model, _sample_texts(self.source, schemas[0], first),
                              distance=first.distance or schemas[0].vector(first.vector).distance,
                              cache=self.cache)
        dims = checked.target
        jobs = [self._job(c, s, dims, restart=restart)
                for c, s in zip(collections, schemas, strict=True)]
        _check_aliases(jobs, self.target)

        results = [await self._migrate_one(job, dims) for job in jobs]
        problems = [_problem(job, result, self.settings)
                    for job, result in zip(jobs, results, strict=True)]
        for job, problem in zip(jobs, problems, strict=True):
            if problem is not None:
                self.state.update(job.record.id, phase="failed", error=str(problem))
        _raise_problems([p for p in problems if p is not None])
        if self.settings.verify.enabled:
            for job, result in zip(jobs, results, strict=True):
                await self._verify(job, result)
            self._gate(jobs, results, force=force)
        for job, result in zip(jobs, results, strict=True):
            self._finish(job, result, forced=force and result.verification is not None
                         and not result.verification.passed)
        spec = self.model.spec
        return MigrationResult(
            provider=self.settings.provider.name,
            model=self.settings.provider.model,
            dims=dims,
            dims_decision=checked.decision,
            warnings=checked.warnings,
            collections=results,
            seconds=time.perf_counter() - started,
            probe_tokens=checked.tokens,
            cost=spec.cost(checked.tokens + sum(r.stats.tokens for r in results)),
            price_known=spec.price_per_mtok is not None,
            cost_saved=spec.cost(sum(r.stats.tokens_saved for r in results)),
        )

    async def sync_only(self, schemas: list[CollectionSchema]) -> list[CollectionResult]:
        """Catch-up for collections whose target exists: no backfill, no alias move."""
        collections = self.settings.collections
        first = collections[0]
        checked = await probe(self.model, _sample_texts(self.source, schemas[0], first),
                              distance=first.distance or schemas[0].vector(first.vector).distance,
                              cache=self.cache)
        results = []
        for config, schema in zip(collections, schemas, strict=True):
            job = self._job(config, schema, checked.target, restart=False)
            if not job.target_exists:
                raise StoreError(
                    f"Target {job.target!r} of {config.name!r} does not exist in "
                    f"{self.target.location}; run `migrator migrate` first (or give --target).")
            if self.state.get(job.record.id) is None:
                self.state.create(job.record)
            result = CollectionResult(
                source=config.name, source_collection=job.schema.name, target=job.target,
                vector=job.vector, text=job.text.describe(), migration_id=job.record.id)
            await self._catch_up(job, result, checked.target)
            self._count_check_inputs(job, result)
            self.state.update(job.record.id, phase=job.record.phase if job.record.phase in (
                "swapped", "complete") else "catching_up")
            results.append(result)
        return results

    def _job(self, config: CollectionSettings, schema: CollectionSchema, dims: int, *,
             restart: bool) -> _Job:
        spec = self.model.spec
        name = config.target or target_name(config.name, spec, dims)
        text = TextSource.from_settings(config.text_field, config.text_template)
        vector = schema.vector(config.vector)
        identity = migration_id(config.name, name, vector.name, spec.provider, spec.model, dims,
                                text.describe())
        record = self.state.get(identity)
        if record is not None and restart:
            if record.created_target and self.target.exists(name):
                self.target.delete_collection(name)
            self.state.delete(identity)
            record = None
        if record is not None and record.source_collection != schema.name:
            # e.g. the alias that was migrated now points at the target: keep the original
            schema = self.source.describe(record.source_collection)
            vector = schema.vector(config.vector)
        if name == schema.name:
            raise ConfigError(
                f"The target of {config.name!r} is the source collection {schema.name!r} "
                "itself; give a different --target.")
        if vector.multivector:
            raise ConfigError(
                f"Vector {vector.name or '(unnamed)'!r} of collection {schema.name!r} is a "
                "multivector; migrator re-embeds single dense vectors only.")
        distance = config.distance or vector.distance
        exists = self.target.exists(name)
        if exists:
            _check_existing_target(self.target.describe(name), vector.name, dims, distance)
        if record is None:
            record = MigrationRecord(
                id=identity, source=config.name, source_collection=schema.name, target=name,
                vector=vector.name, provider=spec.provider, model=spec.model, dims=dims,
                text=text.describe(), alias=config.alias, phase="planned")
        keep = [n for n in schema.vectors if n != vector.name] + schema.sparse_vectors
        verify = self.settings.verify
        return _Job(config, schema, vector.name, text, name, exists, distance, keep, record,
                    Reservoir(verify.sample, verify.seed))

    async def _migrate_one(self, job: _Job, dims: int) -> CollectionResult:
        record = job.record
        result = CollectionResult(
            source=job.config.name, source_collection=job.schema.name, target=job.target,
            vector=job.vector, text=job.text.describe(), alias=job.config.alias,
            migration_id=record.id)
        result.source_count = self.source.count(job.schema.name)
        if self.state.get(record.id) is None:
            if not job.target_exists:
                self.target.create_like(job.schema, job.target, vector=job.vector, size=dims,
                                        distance=job.distance)
                record.created_target = result.created = True
            self.state.create(record)
        elif not job.target_exists:
            raise StoreError(
                f"Target collection {job.target!r} of an interrupted migration is gone from "
                f"{self.target.location}. Run again with --restart to start over.")
        result.resumed = record.phase != "planned"
        result.stats.add(record.counters)
        result.resumed_written = result.stats.written
        if not record.finished:
            await self._backfill(job, result, dims)
        if self.settings.migration.catch_up:
            await self._catch_up(job, result, dims)
        self._count_check_inputs(job, result)
        return result

    async def _backfill(self, job: _Job, result: CollectionResult, dims: int) -> None:
        record = job.record
        insert_only = self.target.conditional_writes()
        result.write_mode = "insert-only" if insert_only else "upsert"
        self.state.update(record.id, phase="backfilling", write_mode=result.write_mode,
                          total=result.source_count)
        skips = StateSkipLog(self.state, record.id)

        def checkpoint(cp: Checkpoint) -> None:
            skips.flush()  # a page's skipped points are saved before the page is committed
            self.state.update(record.id, checkpoint=cp.offset, finished=int(cp.finished),
                              counters=cp.counters)

        backfill = Backfill(
            source=ScrollSource(self.source, job.schema.name,
                                page_size=self.settings.migration.page_size,
                                vectors=job.keep_vectors, start=record.checkpoint),
            write=lambda points: self.target.upsert(job.target, points,
                                                    insert_only=insert_only),
            on_checkpoint=checkpoint,
            stats=result.stats,
            sampler=job.sample.offer if job.sample is not None else None,
            **self._pipeline_args(job, skips, dims, total=result.source_count),
        )
        await self._run_stage(backfill, skips, result)

    async def _catch_up(self, job: _Job, result: CollectionResult, dims: int) -> None:
        record = job.record
        self.state.update(record.id, phase="catching_up")
        self.state.clear_skipped(record.id)  # the join meets every source point again
        skips = StateSkipLog(self.state, record.id)
        join = MergeJoinSource(self.source, job.schema.name, self.target, job.target,
                               vector=job.vector, keep_vectors=job.keep_vectors, text=job.text,
                               page_size=self.settings.migration.page_size)
        stage = Backfill(
            source=join,
            write=lambda points: self.target.upsert(job.target, points),
            **self._pipeline_args(job, skips, dims, total=None,
                                  label=f"{job.config.name} (catch-up)"),
        )
        await self._run_stage(stage, skips, result)
        result.sync = join.stats
        result.stats.add({k: v for k, v in stage.stats.counters().items()
                          if k in ("embedded", "tokens", "requests", "retries", "cached",
                                   "tokens_saved")})

    def _pipeline_args(self, job: _Job, skips: StateSkipLog, dims: int, *, total: int | None,
                       label: str | None = None) -> dict[str, Any]:
        return {"embedder": self.embedder, "text": job.text, "vector": job.vector,
                "dims": dims, "skip_log": skips, "collection": label or job.config.name,
                "total": total, "concurrency": self.settings.provider.concurrency,
                "queue_depth": self.settings.migration.queue_depth,
                "on_progress": self.on_progress}

    async def _run_stage(self, stage: Backfill, skips: StateSkipLog,
                         result: CollectionResult) -> None:
        try:
            await stage.run()
        except (ProviderError, StoreError) as exc:
            skips.flush()
            self.state.update(result.migration_id, phase="failed", error=str(exc))
            raise _stopped(exc, result, stage.stats) from exc
        skips.flush()

    def _count_check_inputs(self, job: _Job, result: CollectionResult) -> None:
        skipped = self.state.skipped(job.record.id)
        result.skipped = len(skipped)
        result.first_skipped = [point for point, _ in skipped[:10]]
        if skipped:
            path = Path(self.settings.migration.state_dir) / f"{job.target}.skipped.jsonl"
            with path.open("w", encoding="utf-8") as handle:
                for point, reason in skipped:
                    handle.write(json.dumps({"collection": job.schema.name, "id": point,
                                             "reason": reason}) + "\n")
            result.skip_file = str(path)
        result.source_count = self.source.count(job.schema.name)
        result.target_count = self.target.count(job.target)

    async def _verify(self, job: _Job, result: CollectionResult) -> None:
        verify = self.settings.verify
        self.state.update(job.record.id, phase="verifying")
        readiness = self.target.wait_ready(job.target, timeout=verify.readiness_timeout)
        sample = job.sample.items if job.sample is not None else []
        if len(sample) < min(verify.sample, result.target_count):
            sample, _ = draw_sample(self.source, job.schema.name, job.text, verify.sample,
                                    verify.seed)
        pair = Pair(self.source, job.schema.name, job.vector, self.target, job.target,
                    job.vector, expected_count=result.source_count - result.skipped,
                    text=job.text)
        report = await run_checks(pair, sample, self.embedder, verify)
        report.readiness = readiness
        if verify.queries is not None:
            report.checks.append(await self._labelled(job))
        result.verification = report
        self.state.update(job.record.id, verification=report.to_dict())

    async def _labelled(self, job: _Job) -> Check:
        verify = self.settings.verify
        if verify.source_provider is None:
            raise ConfigError("verify.queries needs verify.source_provider: the provider and "
                              "model the source collection was built with.")
        queries = load_queries(Path(verify.queries or "."), verify.max_queries)
        old = build_embedder(verify.source_provider)
        try:
            return await labelled_check(
                queries, k=verify.k, max_drop=verify.max_ndcg_drop,
                source=(self.source, job.schema.name, job.vector, old),
                target=(self.target, job.target, job.vector, self.embedder))
        finally:
            await old.aclose()

    def _drop(self, old: str | None, new: str) -> str | None:
        """Delete the collection an alias left, if nothing serves it any more."""
        if old is None or old == new or old not in self.target.collection_names():
            return None
        if old in self.target.aliases().values():
            return None  # another alias still serves it
        self.target.delete_collection(old)
        return old

    def _gate(self, jobs: list[_Job], results: list[CollectionResult], *, force: bool) -> None:
        failed = [(job, r) for job, r in zip(jobs, results, strict=True)
                  if r.verification is not None and not r.verification.passed]
        if not failed or force:
            return
        for job, result in failed:
            self.state.update(job.record.id, phase="failed",
                              error=f"verification failed: {result.verification.summary()}"
                              if result.verification else "verification failed")
        message = " ".join(
            f"Verification of {r.target!r} failed: {r.verification.summary()}."
            for _, r in failed if r.verification is not None)
        raise VerificationFailed(
            f"{message} No alias was moved. Inspect with `migrator verify`, or move the alias "
            "anyway with --force (recorded as forced).",
            report=[r.verification.to_dict() for _, r in failed if r.verification])

    def _finish(self, job: _Job, result: CollectionResult, *, forced: bool = False) -> None:
        alias = job.config.alias
        result.forced = forced
        if alias:
            result.previous_alias_target = self.target.swap_alias(alias, job.target)
            result.swapped = True
            if result.previous_alias_target != job.target:
                metrics = result.verification.to_dict() if result.verification else {}
                self.state.record_alias(alias, result.previous_alias_target, job.target,
                                        forced=forced, metrics=metrics)
            if self.drop_old and not forced:
                result.dropped = self._drop(result.previous_alias_target, job.target)
        self.state.update(job.record.id, phase="swapped" if alias else "complete", error=None,
                          counters=result.stats.counters())


def _sample_texts(source: QdrantStore, schema: CollectionSchema, config: CollectionSettings,
                  limit: int = 256) -> list[str]:
    """Real texts from the start of the source, for the preflight probe."""
    text = TextSource.from_settings(config.text_field, config.text_template)
    page = source.scroll(schema.name, limit=limit, vectors=False)
    return [t for p in page.points if (t := text.extract(p.payload)[0])]


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


def _stopped(exc: ProviderError | StoreError, result: CollectionResult,
             stats: Stats) -> MigratorError:
    """The same error, saying what the run left behind and how to go on."""
    message = (
        f"{exc} The migration of {result.source!r} into {result.target!r} stopped with "
        f"{stats.written:,} of {result.source_count:,} points written; no alias was moved. "
        "Fix the cause and run the same command again: it resumes from the last checkpoint, "
        "and embeddings already made come from the cache."
    )
    if isinstance(exc, ProviderError):
        return type(exc)(message, provider=exc.provider, status=exc.status)
    return type(exc)(message)


def _problem(job: _Job, result: CollectionResult, settings: Settings) -> MigratorError | None:
    if result.skipped and settings.migration.missing_text == "fail":
        shown = ", ".join(repr(i) for i in result.first_skipped)
        more = (f" and {result.skipped - len(result.first_skipped)} more"
                if result.skipped > len(result.first_skipped) else "")
        return MissingText(
            f"{result.skipped} point(s) of {job.config.name!r} have no text in "
            f"{job.text.describe()}: {shown}{more}. The full list is in {result.skip_file}. "
            "Fix those payloads, point text_field/text_template at the text, or run again with "
            "--missing-text skip to migrate without them. No alias was moved.",
            point_ids=list(result.first_skipped),
            skip_file=result.skip_file,
        )
    expected = result.source_count - result.skipped
    if result.target_count != expected:
        return VerificationFailed(
            f"Target {job.target!r} holds {result.target_count} points, but {expected} were "
            f"expected ({result.source_count} in {job.schema.name!r}, {result.skipped} without "
            "text). The source may be changing right now: run `migrator sync`, or the same "
            "command again. No alias was moved."
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

