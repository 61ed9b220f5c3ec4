"""`migrate()` / `amigrate()`: preflight → create target → backfill → catch-up → check →
swap alias. Resumable: progress is checkpointed in the state directory, and the same call
continues where an interrupted one stopped."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from .batching import BATCH_PROBE, no_batches_running, run_batches
from .blocking import run_blocking
from .catchup import changes_source
from .embedding import Embedder, embedding
from .errors import ConfigError, DataError, MigratorError, ProviderError, StoreError
from .gate import gate, hold_back, move_alias, verify_job
from .inplace import (
    InPlaceCatchUp,
    in_place,
    name_old_vectors,
    new_vector_name,
    prepare,
    using_hint,
    writer,
)
from .inplace import check as check_in_place
from .interrupts import Stop, stoppable
from .jobs import (
    Job,
    check_aliases,
    check_existing_target,
    missing_target,
    refuse_alias_target,
    refuse_multivector,
    refuse_source_as_target,
    target_name,
)
from .ownership import Confirm, claim, provenance, restart
from .pipeline import Checkpoint, Pipeline, Progress, Stats
from .preflight import refuse_before_paying
from .results import (
    Bill,
    CollectionResult,
    MigrationResult,
    count_check_inputs,
    over_budget_error,
    problem_of,
    raise_problems,
    stopped_error,
    where_it_stopped,
)
from .sampling import Reservoir
from .settings import CollectionSettings, Settings
from .sources import ScrollSource, StateSkipLog
from .spending import bill_of, budget_for, paid_so_far
from .state import MigrationRecord, Phase, State, migration_id
from .store import CollectionSchema, QdrantStore, opened
from .texts import TextSource
from .vector_cache import open_cache
from .verification.dimensions import ProbeResult, probe, probe_texts

__all__ = ["amigrate", "Confirm", "migrate", "ProgressCallback", "running"]

ProgressCallback = Callable[[Progress], None]


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
    adopt_target: bool = False,
    confirm: Confirm | None = None,
) -> MigrationResult:
    """Re-embed every configured collection and move its alias: `amigrate()`, run to the
    end (see there for arguments)."""
    return run_blocking(amigrate(settings, source_store=source_store, target_store=target_store,
                                 embedder=embedder, on_progress=on_progress, restart=restart,
                                 force=force, drop_old=drop_old, adopt_target=adopt_target,
                                 confirm=confirm), "migrate", "amigrate")


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
    adopt_target: bool = False,
    confirm: Confirm | None = None,
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
        restart: forget earlier progress and delete targets this migration created (never
            one an alias serves).
        force: move aliases even when verification fails (recorded as forced).
        drop_old: after a verified (not forced) alias move, delete the collection the alias
            pointed to before, unless another alias still serves it.
        adopt_target: allow writing into an existing target this migration did not create
            (refused while another alias serves it); without it such a target is refused.
        confirm: with `restart`, called with the collections that would be deleted; False
            stops the run with nothing deleted. None: no question.

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
    async with stoppable() as stop, running(settings, source_store, target_store, embedder,
                                            on_progress, stop) as (run, schemas):
        run.drop_old, run.adopt_target = drop_old, adopt_target
        return await run.go(schemas, restart=restart, force=force, confirm=confirm)


@contextlib.asynccontextmanager
async def running(settings: Settings, source_store: QdrantStore | None,
                  target_store: QdrantStore | None, embedder: Embedder | None,
                  on_progress: ProgressCallback | None, stop: Stop | None = None
                  ) -> AsyncIterator[tuple[_Run, list[CollectionSchema]]]:
    """A run with everything it needs open (state, cache, stores, the embedder), and the
    schemas of the configured sources; all of it closed again afterwards. `stop` (from
    `stoppable()`) makes a signal end the backfill and catch-up gracefully."""
    state_dir = Path(settings.migration.state_dir)
    with State(state_dir) as state, open_cache(state_dir, settings.migration.cache) as cache, \
            opened(settings.source, settings.target, source_store=source_store,
                   target_store=target_store, create=settings.target is not None
                   ) as (source, target):
        schemas = [source.describe(c.name) for c in settings.collections]
        settings = name_old_vectors(settings, schemas, state.all())
        first = settings.collections[0]
        distance = first.distance or schemas[0].vector(first.vector).distance
        async with embedding(settings.provider, embedder, cache=cache,
                             distance=distance) as model:
            for c in settings.collections:  # one run at a time, before anything is paid for
                state.claim(source.identity, c.name, model.spec.provider, model.spec.model)
            run = _Run(settings, state, source, target, model, on_progress)
            run.stop = stop
            if stop is not None:
                stop.paid = run.paid
            yield run, schemas


class _Run:
    """One call of `amigrate`: the steps, in order, sharing what they need."""

    def __init__(self, settings: Settings, state: State, source: QdrantStore,
                 target: QdrantStore, embedder: Embedder,
                 on_progress: ProgressCallback | None) -> None:
        self.settings, self.state = settings, state
        self.source, self.target, self.embedder = source, target, embedder
        self.on_progress = on_progress
        self.drop_old = False
        self.adopt_target = False
        self.stop: Stop | None = None
        self.budget = budget_for(settings, embedder)
        # the caller's embedder may have served earlier runs: this run's bill starts here
        self._used_before = embedder.usage.snapshot() if embedder.usage else None

    async def go(self, schemas: list[CollectionSchema], *, restart: bool,
                 force: bool = False, confirm: Confirm | None = None) -> MigrationResult:
        started = time.perf_counter()
        collections = self.settings.collections
        others = refuse_before_paying(self.settings, self.source, self.target, self.state,
                                      schemas, self.embedder, self.budget)
        first = collections[0]
        with self._phase("probe"):
            checked = await self._probe(schemas[0], first)
        checked.warnings += others
        dims = checked.target
        # batch mode: the provider's batch API fills the cache first (else None)
        with self._phase("batch") if self.settings.provider.batch else contextlib.nullcontext():
            batch = await run_batches(self.settings, self.state, self.source, self.embedder,
                                      schemas, stop=self.stop, restart=restart, confirm=confirm,
                                      on_progress=self.on_progress)
            if batch is not None and not batch.done:  # running: the next run collects
                return MigrationResult(self.settings.provider.name, self.settings.provider.model,
                                       dims, [], time.perf_counter() - started, self.bill(),
                                       checked.decision, checked.warnings, batch)
        if restart:
            self._restart(schemas, dims, confirm)
        jobs = [self._job(c, s, dims) for c, s in zip(collections, schemas, strict=True)]
        check_aliases(jobs, self.target)

        results = [await self._migrate_one(job, dims) for job in jobs]
        problems = [problem_of(job, result, self.settings)
                    for job, result in zip(jobs, results, strict=True)]
        for job, problem in zip(jobs, problems, strict=True):
            if problem is not None:
                self.state.update(job.record.id, phase=Phase.FAILED, error=str(problem))
        hold_back(self.state, [job for job, p in zip(jobs, problems, strict=True) if not p],
                  [job.config.name for job, p in zip(jobs, problems, strict=True) if p],
                  "not verified")
        raise_problems([p for p in problems if p is not None])
        if self.settings.verify.enabled:
            for job, result in zip(jobs, results, strict=True):
                await self._verify(job, result)
            gate(jobs, results, self.state, force=force)
        for job, result in zip(jobs, results, strict=True):
            self._finish(job, result, forced=force and result.verification is not None
                         and not result.verification.passed)
        return MigrationResult(
            provider=self.settings.provider.name,
            model=self.settings.provider.model,
            dims=dims,
            dims_decision=checked.decision,
            warnings=checked.warnings,
            collections=results,
            seconds=time.perf_counter() - started,
            bill=self.bill(),
            batch=batch,
        )

    def bill(self) -> Bill:
        """This run's bill, per phase, as the meter on the provider counted it."""
        return bill_of(self.embedder, self._used_before)

    def _phase(self, phase: str) -> contextlib.AbstractContextManager[Any]:
        usage = self.embedder.usage
        return usage.during(phase) if usage is not None else contextlib.nullcontext()

    async def sync_only(self, schemas: list[CollectionSchema]
                        ) -> tuple[list[CollectionResult], list[str]]:
        """Catch-up for collections whose target exists: no backfill, no alias move.
        Returns each collection's result and the probe's warnings."""
        collections = self.settings.collections
        await no_batches_running(self.state, [c.name for c in collections], self.embedder)
        first = collections[0]
        with self._phase("probe"):
            checked = await self._probe(schemas[0], first)
        results = []
        problems: list[MigratorError] = []
        for config, schema in zip(collections, schemas, strict=True):
            job = self._job(config, schema, checked.target)
            if not job.target_exists or job.target_vector not in job.schema.vectors:
                raise missing_target(job, self.state.all(), self.target)
            if self.state.get(job.record.id) is None:
                self.state.create(job.record)
            result = CollectionResult(
                source=config.name, source_collection=job.schema.name, target=job.target,
                vector=job.vector, text=job.text.describe(), migration_id=job.record.id)
            with self._phase("catch-up"):
                await self._catch_up(job, result, checked.target)
            count_check_inputs(job, result, self.state, self.source, self.target,
                               Path(self.settings.migration.state_dir))
            problem = problem_of(job, result, self.settings)
            if isinstance(problem, DataError):  # points without text under `fail`
                problems.append(problem)
            self.state.update(job.record.id, phase=job.record.phase if job.record.phase in (
                Phase.SWAPPED, Phase.COMPLETE) else Phase.CATCHING_UP)
            results.append(result)
        raise_problems(problems)
        return results, checked.warnings

    async def _probe(self, schema: CollectionSchema, first: CollectionSettings) -> ProbeResult:
        sample = probe_texts(self.source, schema, first, self.embedder,
                             self.settings.provider.long_input)
        texts = sample.texts
        if self.settings.provider.batch:  # sent synchronously: as few as fix the size
            texts = texts[:BATCH_PROBE]
        distance = first.distance or schema.vector(first.vector).distance
        result = await probe(self.embedder, texts, distance=distance)
        result.warnings += sample.warnings
        return result

    def _identify(self, config: CollectionSettings, schema: CollectionSchema,
                  dims: int) -> tuple[str, TextSource, str]:
        """The target name, the text and the migration id of one collection. The id takes in
        both stores' identities, so the same names on another store are another migration."""
        spec = self.embedder.spec
        text = TextSource.from_settings(config.text_field, config.text_template)
        vector = schema.vector(config.vector)
        name, written = config.target or target_name(config.name, spec, dims), vector.name
        if in_place(config, self.settings):  # into the source itself, as a new vector
            new = new_vector_name(config, spec, dims)
            name, written = schema.name, f"{vector.name}->{new}"
        identity = migration_id(self.source.identity, config.name, self.target.identity, name,
                                written, spec.provider, spec.model, dims, text.describe())
        return name, text, identity

    def _restart(self, schemas: list[CollectionSchema], dims: int,
                 confirm: Confirm | None) -> None:
        planned = [self._identify(c, s, dims) for c, s in
                   zip(self.settings.collections, schemas, strict=True)]
        restart(self.target, self.state, [(name, identity) for name, _, identity in planned],
                confirm)

    def _job(self, config: CollectionSettings, schema: CollectionSchema, dims: int) -> Job:
        spec = self.embedder.spec
        name, text, identity = self._identify(config, schema, dims)
        vector = schema.vector(config.vector)
        record = self.state.get(identity)
        if record is not None and record.source_collection != schema.name:
            # e.g. the alias that was migrated now points at the target: keep the original
            schema = self.source.describe(record.source_collection)
            vector = schema.vector(config.vector)
        inplace = check_in_place(config, self.settings, self.target, schema=schema,
                                 reads=vector.name, writes=new_vector_name(config, spec, dims),
                                 records=self.state.all())
        if name == schema.name and not inplace:
            refuse_source_as_target(config.name, schema.name, self.state.directory)
        refuse_multivector(vector, schema.name)
        distance = config.distance or vector.distance
        refuse_alias_target(self.target, config.name, name)
        if record is None:
            record = MigrationRecord(
                id=identity, source=config.name, source_collection=schema.name, target=name,
                vector=vector.name, provider=spec.provider, model=spec.model, dims=dims,
                text=text.describe(), alias=config.alias, phase=Phase.PLANNED,
                store=self.target.identity,
                strategy="in-place" if inplace else "new-collection",
                new_vector=new_vector_name(config, spec, dims) if inplace else None)
        exists = self.target.exists(name)
        keep = [] if inplace else [n for n in schema.vectors if n != vector.name] + (
            schema.sparse_vectors)
        if exists and not inplace:
            check_existing_target(self.target.describe(name), vector.name, dims, distance, keep,
                                  distance_given=config.distance is not None)
            claim(self.target, self.state, config, name, record, adopt=self.adopt_target)
        verify = self.settings.verify
        return Job(config, schema, vector.name, text, name, exists, distance, keep, record,
                   Reservoir(verify.sample, verify.seed), inplace, record.new_vector or "")

    async def _migrate_one(self, job: Job, dims: int) -> CollectionResult:
        record = job.record
        result = CollectionResult(
            source=job.config.name, source_collection=job.schema.name, target=job.target,
            vector=job.vector, text=job.text.describe(), alias=job.config.alias,
            migration_id=record.id)
        result.source_count = self.source.count(job.schema.name)
        if job.in_place:  # the new vector, added once; refused before anything is recorded
            prepare(job, self.target, self.state, dims)
        if self.state.get(record.id) is None:
            if not job.target_exists:
                self.target.create_like(job.schema, job.target, vector=job.vector, size=dims,
                                        distance=job.distance, provenance=provenance(record))
                record.created_target = result.created = True
            self.state.create(record)
        elif not job.target_exists:
            how = "a finished" if record.finished else "an interrupted"
            raise StoreError(
                f"Target collection {job.target!r} of {how} migration is gone from "
                f"{self.target.location} (deleted since). Run again with --restart to start over.")
        result.resumed = record.phase != Phase.PLANNED
        result.write_mode = record.write_mode
        result.stats.add(record.counters)
        result.resumed_written = result.stats.written
        if not record.finished:
            with self._phase("backfill"):
                await self._backfill(job, result, dims)
        if self.settings.migration.catch_up:
            with self._phase("catch-up"):
                await self._catch_up(job, result, dims)
        count_check_inputs(job, result, self.state, self.source, self.target,
                               Path(self.settings.migration.state_dir))
        return result

    async def _backfill(self, job: Job, result: CollectionResult, dims: int) -> None:
        record = job.record
        insert_only = self.target.conditional_writes()
        result.write_mode = ("new vector only" if job.in_place else
                             "insert-only" if insert_only else "upsert")
        self.state.update(record.id, phase=Phase.BACKFILLING, error=None,
                          write_mode=result.write_mode,
                          total=result.source_count)
        if record.changes_since is None:  # a resumed backfill keeps its first start
            record.changes_since = time.time()
            self.state.update(record.id, changes_since=record.changes_since)
        skips = StateSkipLog(self.state, record.id)

        def checkpoint(cp: Checkpoint) -> None:
            skips.flush()  # a page's skipped points are saved before the page is committed
            self.state.update(record.id, checkpoint=cp.offset, finished=int(cp.finished),
                              counters=cp.counters)

        backfill = Pipeline(
            source=ScrollSource(self.source, job.schema.name,
                                page_size=self.settings.migration.page_size,
                                vectors=job.keep_vectors, start=record.checkpoint),
            write=writer(job, self.target, self.state) if job.in_place else (
                lambda points: self.target.upsert(job.target, points, insert_only=insert_only)),
            on_checkpoint=checkpoint,
            stats=result.stats,
            sampler=job.sample.offer if job.sample is not None else None,
            **self._pipeline_args(job, skips, dims, total=result.source_count),
        )
        await self._run_stage(backfill, skips, result, catch_up=False)

    async def _catch_up(self, job: Job, result: CollectionResult, dims: int) -> None:
        record = job.record
        started = time.time()
        self.state.update(record.id, phase=Phase.CATCHING_UP, error=None)
        self.state.clear_skipped(record.id)  # the join meets every source point again
        skips = StateSkipLog(self.state, record.id)
        join = (InPlaceCatchUp(job, self.target, self.state, self.settings) if job.in_place
                else changes_source(job, self.source, self.target, self.settings))
        stage = Pipeline(
            source=join,
            write=writer(job, self.target, self.state) if job.in_place else (
                lambda points: self.target.upsert(job.target, points)),
            **self._pipeline_args(job, skips, dims, total=None,
                                  label=f"{job.config.name} (catch-up)"),
        )
        await self._run_stage(stage, skips, result, catch_up=True)
        record.changes_since = started
        paid = {k: v for k, v in stage.stats.counters().items() if k in Stats.PAID}
        result.sync = join.stats
        result.stats.add(paid)
        # the record's counters cover every run, a sync's catch-up too
        counters = Stats()
        counters.add((self.state.get(record.id) or record).counters)
        counters.add(paid)
        self.state.update(record.id, changes_since=started, counters=counters.counters())

    def _pipeline_args(self, job: Job, skips: StateSkipLog, dims: int, *, total: int | None,
                       label: str | None = None) -> dict[str, Any]:
        return {"embedder": self.embedder, "long_input": self.settings.provider.long_input,
                "text": job.text, "vector": job.target_vector,
                "dims": dims, "skip_log": skips, "collection": label or job.config.name,
                "total": total, "concurrency": self.settings.provider.concurrency,
                "queue_depth": self.settings.migration.queue_depth,
                "on_progress": self.on_progress, "stop": self.stop, "budget": self.budget}

    async def _run_stage(self, stage: Pipeline, skips: StateSkipLog,
                         result: CollectionResult, *, catch_up: bool) -> None:
        try:
            await stage.run()
        except (ProviderError, StoreError) as exc:
            skips.flush()
            self.state.update(result.migration_id, phase=Phase.FAILED, error=str(exc))
            raise stopped_error(exc, result, stage.stats, self.paid()) from exc
        skips.flush()
        budget = self.budget
        if budget is not None and budget.exceeded:
            self.state.update(result.migration_id, error="stopped at --max-cost")
            raise over_budget_error(budget, result, stage.stats, catch_up=catch_up)
        if self.stop is not None and self.stop.requested:
            self.state.update(result.migration_id, error="interrupted")
            raise self.stop.error(where_it_stopped(result, stage.stats, catch_up=catch_up))

    def paid(self) -> str:
        return paid_so_far(self.embedder, self._used_before)

    async def _verify(self, job: Job, result: CollectionResult) -> None:
        self.state.update(job.record.id, phase=Phase.VERIFYING, error=None)
        try:
            with self._phase("verification"):
                result.verification = await verify_job(job, result, self.settings, self.source,
                                                       self.target, self.embedder)
        except MigratorError as exc:  # a provider or store failure, not a failed check
            self.state.update(job.record.id, phase=Phase.FAILED, error=str(exc))
            raise
        self.state.update(job.record.id, verification=result.verification.to_dict())

    def _finish(self, job: Job, result: CollectionResult, *, forced: bool = False) -> None:
        alias = job.config.alias
        result.forced = forced
        result.using = using_hint(job) if job.in_place else None
        if alias:
            move_alias(alias, job, result, self.target, self.state, drop_old=self.drop_old)
        self.state.update(job.record.id, phase=Phase.SWAPPED if alias else Phase.COMPLETE,
                          error=None, counters=result.stats.counters())
