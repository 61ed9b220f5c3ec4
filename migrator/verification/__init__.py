"""Verification: does the new collection find what it should, before an alias moves?

`check_target()` is the one flow: `migrate`'s swap gate and `migrator verify` both call it,
so both run every check (self-retrieval, ANN recall, overlap, integrity, and labelled
quality when configured). The checks live in `checks.py`, labelled quality in
`labelled.py`, dimension validation and the preflight probe in `dimensions.py`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..blocking import run_blocking
from ..embedding import Embedder, build_embedder, embedding, model_spec
from ..embedding.usage import PhaseUsage
from ..errors import CollectionNotFound, ConfigError
from ..jobs import target_name
from ..sampling import draw_sample
from ..settings import CollectionSettings, Settings
from ..state import MigrationRecord, State
from ..store import CollectionSchema, PointId, QdrantStore, opened
from ..texts import TextSource
from ..vector_cache import open_cache
from .checks import Check, Pair, VerificationReport, run_checks
from .labelled import labelled_check, load_queries

__all__ = ["VerificationReport", "VerifyResult", "check_target", "verify"]


async def check_target(pair: Pair, sample: list[tuple[PointId, str]], embedder: Embedder,
                       settings: Settings) -> VerificationReport:
    """Wait for the target to be ready, then run every check on `sample`: the gate's and
    `migrator verify`'s one flow."""
    verify = settings.verify
    readiness = pair.target_store.wait_ready(pair.target, timeout=verify.readiness_timeout)
    report = await run_checks(pair, sample, embedder, verify,
                              long_input=settings.provider.long_input,
                              concurrency=settings.provider.concurrency)
    report.readiness = readiness
    if verify.queries is not None:
        report.checks.append(await _labelled(pair, settings, embedder))
    return report


async def _labelled(pair: Pair, settings: Settings, embedder: Embedder) -> Check:
    verify = settings.verify
    if verify.source_provider is None:
        raise ConfigError("verify.queries needs verify.source_provider: the provider and "
                          "model the source collection was built with.")
    queries = load_queries(Path(verify.queries or "."), verify.max_queries)
    old = build_embedder(verify.source_provider.at("verify.source_provider"))
    try:
        await old.adopt_server_limits()
        return await labelled_check(
            queries, k=verify.k, max_drop=verify.max_ndcg_drop,
            source=(pair.source_store, pair.source, pair.source_vector, old),
            target=(pair.target_store, pair.target, pair.target_vector, embedder),
            long_input=settings.provider.long_input, concurrency=settings.provider.concurrency)
    finally:
        await old.aclose()


@dataclass
class VerifyResult:
    reports: list[VerificationReport]
    usage: PhaseUsage | None = None  # what the query embeddings cost (None: nothing sent)
    price_per_mtok: float | None = None
    # of the run, not of one report: the limits the provider's server set, said once
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports)

    def to_dict(self) -> dict[str, Any]:
        usage = (self.usage or PhaseUsage()).to_dict(self.price_per_mtok)
        return {"passed": self.passed, "reports": [r.to_dict() for r in self.reports],
                "usage": usage, "warnings": self.warnings}


def verify(settings: Settings, *, source_store: QdrantStore | None = None,
           target_store: QdrantStore | None = None,
           embedder: Embedder | None = None) -> VerifyResult:
    """Verify each configured source against its target, as `migrate` does before a swap.

    The target is the collection's `target`, else the one a migration in the state
    directory wrote, else the name `migrate` would give it. Query embeddings go through the
    cache. Returns the reports; `result.passed` is False when a check is below its threshold.

    Raises:
        ConfigError: nothing to verify. CollectionNotFound: a collection does not exist.
    """
    if not settings.collections:
        raise ConfigError("No collection to verify: give --collection NAME (and --target) or "
                          "a `collections:` list in the configuration file.")
    return run_blocking(_verify(settings, source_store, target_store, embedder), "verify")


async def _verify(settings: Settings, source_store: QdrantStore | None,
                  target_store: QdrantStore | None, embedder: Embedder | None
                  ) -> VerifyResult:
    state_dir = Path(settings.migration.state_dir)
    with opened(settings.source, settings.target, source_store=source_store,
                target_store=target_store) as (source, target), \
            open_cache(state_dir, settings.migration.cache) as cache:
        model_name = embedder.spec.model if embedder else model_spec(settings.provider).model
        records = _records(state_dir)  # the migrations recorded: what each check is of
        distance = _distance(settings, source, target, model_name, records)
        async with embedding(settings.provider, embedder, cache=cache,
                             distance=distance) as model:
            usage = model.usage
            with usage.during("verification") if usage else contextlib.nullcontext():
                reports = [await _verify_one(settings, config, source, target, model,
                                             records) for config in settings.collections]
    spent = usage.snapshot().phases.get("verification") if usage else None
    return VerifyResult(reports, spent, model.spec.price_per_mtok, list(model.limit_notes))


async def _verify_one(settings: Settings, config: CollectionSettings, source: QdrantStore,
                      target: QdrantStore, embedder: Embedder,
                      records: list[MigrationRecord]) -> VerificationReport:
    schema, record = _source(config, source, target, embedder.spec.model, records)
    text = TextSource.from_settings(config.text_field, config.text_template)
    old, new, collection = _names(config, schema, record)
    target_schema = target.describe(collection or _default_target(settings, config, target,
                                                                  embedder))
    if (target_schema.name, new) == (schema.name, old) and source.identity == target.identity:
        raise ConfigError(
            f"{config.name!r} is the collection {schema.name!r} that would be checked as the "
            "target: verification compares a target with the collection it was migrated "
            "from. Give that source collection by its own name (an alias moved by the "
            "migration serves the target now).")
    verify = settings.verify
    sample, without_text = draw_sample(source, schema.name, text, verify.sample, verify.seed)
    pair = Pair(source, schema.name, old, target, target_schema.name, new,
                expected_count=source.count(schema.name) - without_text, text=text)
    report = await check_target(pair, sample, embedder, settings)
    report.warnings += _unlike_writer(records, target, target_schema.name, new, text, embedder)
    return report


def _source(config: CollectionSettings, source: QdrantStore, target: QdrantStore,
            model: str, records: list[MigrationRecord]
            ) -> tuple[CollectionSchema, MigrationRecord | None]:
    """The source collection checked against, and the latest migration of it to `model`
    recorded (None with a `target` given): the collection that migration read, when an
    alias it moved names the source (the alias serves the target now)."""
    schema = source.describe(config.name)
    record = None if config.target else _latest(records, config, model, target)
    if record is not None and record.source_collection not in (None, schema.name):
        schema = source.describe(record.source_collection)
    return schema, record


def _names(config: CollectionSettings, schema: CollectionSchema,
           record: MigrationRecord | None) -> tuple[str, str, str | None]:
    """The source's vector, the target's vector and the target collection checked: the
    collection's `target`, else what `record` (the latest migration to the model) wrote (the
    new vector of the same collection, in place), else None (the name `migrate` would
    give)."""
    if record is not None and record.in_place and record.new_vector:
        return record.vector, record.new_vector, record.target
    old = schema.vector(config.vector).name
    return old, old, config.target or (record.target if record else None)


def _distance(settings: Settings, source: QdrantStore, target: QdrantStore, model: str,
              records: list[MigrationRecord]) -> str:
    """The distance of the first target's vector, which its migration sized its vectors
    for (truncation renormalises for Cosine and Dot only): queries are sized alike."""
    first = settings.collections[0]
    schema, record = _source(first, source, target, model, records)
    _, new, collection = _names(first, schema, record)
    if first.distance or not collection or not target.exists(collection):
        return first.distance or schema.vector(first.vector).distance
    return target.describe(collection).vector(new).distance


def _records(state_dir: Path) -> list[MigrationRecord]:
    """The migrations recorded in `state_dir` (none without a state file: none is made)."""
    if not (state_dir / "state.db").exists():
        return []
    with State(state_dir) as state:
        return state.all()


def _latest(records: list[MigrationRecord], config: CollectionSettings, model: str,
            target: QdrantStore) -> MigrationRecord | None:
    """The latest migration of this source to `model` into `target`."""
    done = [m for m in records if m.source == config.name
            and m.model == model and m.store in (None, target.identity)]
    return done[-1] if done else None


def _unlike_writer(records: list[MigrationRecord], store: QdrantStore, collection: str,
                   vector: str, text: TextSource, embedder: Embedder) -> list[str]:
    """A warning when the migration recorded as writing `vector` of `collection` embedded
    another text or model than this check does: self-retrieval would fail for that alone."""
    writers = [m for m in records if m.target == collection and m.store == store.identity
               and (m.new_vector if m.in_place else m.vector) == vector]
    if not writers:
        return []
    writer, spec = writers[-1], embedder.spec
    unlike = []
    if writer.text != text.describe():
        unlike.append(f"the text from {writer.text} (this check: {text.describe()})")
    if (writer.provider, writer.model) != (spec.provider, spec.model):
        unlike.append(f"the model {writer.provider} {writer.model} (this check: "
                      f"{spec.provider} {spec.model})")
    if not unlike:
        return []
    return [f"The migration that wrote {collection!r} embedded {' and '.join(unlike)}: "
            "queries embedded otherwise do not find their points, whatever the collection's "
            "quality. Verify with the settings that migration used."]


def _default_target(settings: Settings, config: CollectionSettings, target: QdrantStore,
                    embedder: Embedder) -> str:
    """The name `migrate` would give the target, when that collection exists."""
    if not embedder.dims:
        raise ConfigError(f"Cannot tell the target of {config.name!r}: give --target.")
    name = target_name(config.name, embedder.spec, embedder.dims)
    if not target.exists(name):
        spec = embedder.spec
        raise CollectionNotFound(
            f"Nothing to verify for {config.name!r}: no migration of it to {spec.provider} "
            f"{spec.model} is recorded in {settings.migration.state_dir}, and {name!r}, the "
            f"collection `migrate` would create, is not in {target.location}. Give --target, "
            "or the --state-dir and the --provider, --model and --dimensions of the "
            "migration to verify.")
    return name
