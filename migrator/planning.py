"""`plan()`: a read-only look at what a migration would do and cost."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import BATCH, BatchTerms, ModelSpec
from .embedding import model_spec
from .embedding.sizing import DimsDecision, decide
from .embedding.tokens import count_tokens, estimate_tokens
from .errors import ConfigError, StateError
from .inplace import check as check_in_place
from .inplace import in_place, name_old_vectors, new_vector_name
from .jobs import (
    check_default_target,
    model_slug,
    refuse_alias_target,
    refuse_empty,
    refuse_foreign_alias,
    refuse_multivector,
    refuse_shared,
    refuse_source_as_target,
    target_name,
)
from .naming import env_variable
from .settings import CollectionSettings, Settings
from .state import MigrationRecord, State
from .store import CollectionSchema, Point, QdrantStore, opened
from .texts import TextSource, refuse_no_text

__all__ = ["ASSUMED_REQUEST_SECONDS", "CollectionPlan", "LOCAL_MODE_LIMIT", "local_mode_warning",
           "plan", "PlanResult", "storage"]

LOCAL_MODE_LIMIT = 20_000  # qdrant-client warns above this many points in local mode
ASSUMED_REQUEST_SECONDS = 0.5  # a typical remote embedding request of a few hundred texts


@dataclass
class CollectionPlan:
    source: str
    schema: CollectionSchema
    vector: str
    text: str
    sample_size: int
    missing_in_sample: int
    chars: dict[str, float]
    tokens_per_text: float
    estimated_tokens: int
    estimated_cost: float | None
    estimated_requests: int
    estimated_seconds: float | None
    target: str
    target_exists: bool
    target_size: int | None
    target_distance: str
    alias: str | None
    warnings: list[str] = field(default_factory=list)
    storage: dict[str, Any] = field(default_factory=dict)  # both strategies' bytes
    recorded: MigrationRecord | None = None  # this migration, as far as an earlier run got
    new_vector: str | None = None  # in place: the vector added to the source collection

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__
                if k not in ("schema", "recorded")}
        data["vector"] = self.vector or "(unnamed)"
        data["schema"] = self.schema.to_dict()
        record = self.recorded
        data["recorded"] = None if record is None else {
            "migration": record.id, "phase": str(record.phase), "finished": record.finished,
            "written": record.counters.get("written", 0), "total": record.total}
        return data


@dataclass
class PlanResult:
    provider: str
    model: str
    spec: ModelSpec
    dims: DimsDecision
    collections: list[CollectionPlan]
    warnings: list[str]
    max_cost: float | None = None  # migration.max_cost, the estimate's limit
    batch: BatchTerms | None = None  # with provider.batch: the provider's batch terms
    batch_asked: bool = False  # provider.batch was set

    @property
    def estimated_tokens(self) -> int:
        return sum(c.estimated_tokens for c in self.collections)

    @property
    def estimated_cost(self) -> float | None:
        costs = [c.estimated_cost for c in self.collections]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def batch_cost(self) -> float | None:
        """The estimate at the batch price (batch mode)."""
        cost = self.estimated_cost
        return None if cost is None or self.batch is None else cost * self.batch.price_factor

    @property
    def price_factor(self) -> float:
        """The share of the list price this run pays: the batch price in batch mode."""
        return self.batch.price_factor if self.batch is not None else 1.0

    @property
    def within_max_cost(self) -> bool | None:
        """Whether `migrate` would start under --max-cost; None without a limit or a price."""
        cost = self.estimated_cost
        return (None if self.max_cost is None or cost is None
                else cost * self.price_factor <= self.max_cost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "model_known": bool(self.spec.dims),
            "dims_decision": self.dims.consequences(),
            "price_per_mtok": self.spec.price_per_mtok,
            "estimated_tokens": self.estimated_tokens,
            "estimated_cost_usd": self.estimated_cost,
            "max_cost_usd": self.max_cost,
            "within_max_cost": self.within_max_cost,
            "batch": None if not self.batch_asked else {
                "available": self.batch is not None,
                "estimated_cost_usd": self.batch_cost,
                "window_hours": self.batch.window_hours if self.batch else None},
            "warnings": self.warnings,
            "collections": [c.to_dict() for c in self.collections],
        }


def plan(settings: Settings, *, source_store: QdrantStore | None = None,
         target_store: QdrantStore | None = None, sample: int = 200) -> PlanResult:
    """Describe what `migrate()` would do, without writing anything or calling the provider.

    Args:
        settings: the same settings `migrate()` takes.
        source_store / target_store: open stores (default: opened from the settings).
        sample: how many points per collection to read for text statistics.

    Raises:
        ConfigError: nothing to plan, or bad configuration.
        CollectionNotFound: a source collection or alias does not exist.
    """
    if not settings.collections:
        raise ConfigError("No collection to plan: give --collection NAME or a `collections:` "
                          "list in the configuration file.")
    if sample < 1:
        raise ConfigError(f"sample is {sample}; plan reads at least 1 point per collection.")
    spec = model_spec(settings.provider)
    with opened(settings.source, settings.target, source_store=source_store,
                target_store=target_store) as (source, target):
        records, unread = _records(settings, target)
        # as migrate does: the vector an in-place migration replaces, where not named
        settings = name_old_vectors(
            settings, [source.describe(c.name) for c in settings.collections], records)
        plans = [_plan_one(c, settings, spec, source, target, sample, records)
                 for c in settings.collections]
    first = plans[0]
    decision = decide(spec, settings.provider.dimensions,
                      policy=settings.provider.dimension_policy,
                      distance=first.target_distance,
                      send_dimensions=settings.provider.send_dimensions)
    refusals = []
    try:  # as migrate checks the run's collections together
        refuse_shared([(plan.target, plan.alias) for plan in plans])
    except ConfigError as exc:
        refusals.append(f"migrate will refuse to start: {exc}")
    return PlanResult(settings.provider.name, settings.provider.model, spec, decision, plans,
                      _run_warnings(settings, spec, decision) + unread + refusals,
                      settings.migration.max_cost,
                      BATCH.get(settings.provider.name) if settings.provider.batch else None,
                      settings.provider.batch)


def _run_warnings(settings: Settings, spec: ModelSpec, decision: DimsDecision) -> list[str]:
    warnings = []
    if decision.action == "truncate" and not spec.matryoshka:
        warnings.append(f"{spec.model} is not known to be trained for truncation; migrate "
                        "measures what truncation costs in its preflight probe, and `migrator "
                        "validate --dims` compares sizes.")
    if decision.action == "pad":
        warnings.append(f"Zero-padding wastes {decision.wasted_bytes_per_vector} bytes per "
                        "vector.")

    provider = settings.provider
    if provider.key_missing:
        warnings.append("No API key is set: migrate will need "
                        f"{env_variable(provider.key_env, provider.setting('api_key_env'))}.")
    if not spec.dims:
        warnings.append(f"Model {provider.model!r} is not in migrator's catalog: its size will "
                        "be probed with one request, and no cost can be estimated.")
    elif spec.price_per_mtok is None:
        warnings.append(f"No price is known for {provider.model!r}; cost is not estimated.")
    if provider.name == "hashing":
        warnings.append("The hashing provider is a lexical baseline, not a semantic model.")
    return warnings


def _records(settings: Settings, target: QdrantStore) -> tuple[list[MigrationRecord], list[str]]:
    """The migrations into `target` recorded in the state directory (none when there is no
    state file: plan creates nothing), and a warning when the file cannot be read: the plan
    stands without it, and migrate will say the same."""
    state_dir = Path(settings.migration.state_dir)
    if not (state_dir / "state.db").exists():
        return [], []
    try:
        with State(state_dir) as state:
            return [m for m in state.all() if m.store == target.identity], []
    except StateError as exc:
        return [], [f"Earlier runs are not shown: {exc}"]


def _recorded(records: list[MigrationRecord], source: str, targets: tuple[str, ...],
              spec: ModelSpec, text: str, dims: int | None) -> MigrationRecord | None:
    """The latest recorded run of this migration: of `source` (as named) into one of
    `targets` (a new collection, or in place the source itself)."""
    same = [m for m in records if m.source == source and m.target in targets
            and (m.provider, m.model, m.text) == (spec.provider, spec.model, text)
            and (dims is None or m.dims == dims)]
    return max(same, key=lambda m: m.updated_at) if same else None


def _plan_one(config: CollectionSettings, settings: Settings, spec: ModelSpec,
              source: QdrantStore, target: QdrantStore, sample: int,
              records: list[MigrationRecord]) -> CollectionPlan:
    schema = source.describe(config.name)
    text = TextSource.from_settings(config.text_field, config.text_template)
    dims = settings.provider.dimensions or spec.dims or None
    # a model the catalog lacks is sized by migrate's probe, and its default target with it
    name = config.target or target_name(config.name, spec, dims or "<size found by the probe>")
    recorded = _recorded(records, config.name, (name, schema.name), spec, text.describe(), dims)
    if recorded is not None and recorded.source_collection != schema.name:
        # the alias that was migrated serves the target now: migrate reads the original
        schema = source.describe(recorded.source_collection)
    vector = schema.vector(config.vector)
    new_vector = None
    if in_place(config, settings):  # into the source itself, as a vector of its own
        name = schema.name
        new_vector = (new_vector_name(config, spec, dims or 0) if config.new_vector or dims
                      else f"{model_slug(spec)}-<size found by the probe>")
    page = source.scroll(schema.name, limit=sample, vectors=schema.sparse_vectors)
    texts, missing = [], 0
    for point in page.points:
        value, _ = text.extract(point.payload)
        if value is None:
            missing += 1
        else:
            texts.append(value)
    lengths = np.array([len(t) for t in texts]) if texts else np.zeros(1)
    per_text = float(np.mean([estimate_tokens(t) for t in texts])) if texts else 0.0
    embeddable = schema.points_count * (len(texts) / max(len(page.points), 1))
    tokens = int(round(per_text * embeddable))
    batch = min(settings.provider.batch_size or 256, spec.max_inputs)
    requests = -(-int(embeddable) // batch) if embeddable else 0
    remote = spec.provider not in ("hashing", "local")
    plan = CollectionPlan(
        source=config.name, schema=schema, vector=vector.name, text=text.describe(),
        sample_size=len(page.points), missing_in_sample=missing,
        chars={"min": float(lengths.min()), "mean": round(float(lengths.mean()), 1),
               "p95": float(np.percentile(lengths, 95)), "max": float(lengths.max())},
        tokens_per_text=round(per_text, 1), estimated_tokens=tokens,
        estimated_cost=spec.cost(tokens), estimated_requests=requests,
        estimated_seconds=(requests * ASSUMED_REQUEST_SECONDS / settings.provider.concurrency
                           if remote else None),
        target=name, target_size=dims, new_vector=new_vector,
        target_exists=(new_vector in schema.vectors if new_vector is not None
                       else bool(dims or config.target) and target.exists(name)),
        target_distance=config.distance or vector.distance, alias=config.alias,
    )
    plan.storage = storage(schema, vector.name, dims or vector.size, page.points)
    plan.storage["dims"] = dims or vector.size
    plan.storage["dims_assumed"] = not dims  # the probe fixes the size: the source's, till then
    plan.recorded = recorded
    plan.warnings = _collection_warnings(plan, settings, target, spec)
    plan.warnings += text.unfilled_warnings(config.name, [p.payload for p in page.points])
    plan.warnings += _over_limit(texts, spec, settings.provider.long_input)
    try:  # what migrate refuses before it writes, as it checks it
        refuse_empty(source, schema, settings.verify.enabled)
        refuse_no_text(config.name, text, [p.payload for p in page.points])
        if field := settings.sync.updated_field:
            source.time_form(schema.name, field)
        refuse_multivector(vector, schema.name)
        if new_vector is not None:
            check_in_place(config, settings, target, schema=schema, reads=vector.name,
                           writes=new_vector, records=records)
        else:
            if name == schema.name:
                refuse_source_as_target(config.name, schema.name,
                                        Path(settings.migration.state_dir))
            refuse_alias_target(target, config.name, name)
            if config.alias is not None:
                refuse_foreign_alias(target, config.alias, schema.name, records)
            if config.target is None:
                check_default_target(config.name, spec, dims)
    except ConfigError as exc:
        plan.warnings.append(f"migrate will refuse to start: {exc}")
    return plan


def local_mode_warning(store: QdrantStore, points: int) -> list[str]:
    """What the embedded store costs a collection of `points` over qdrant-client's limit
    (whose own warning, with a line of its code, the command line leaves out)."""
    if not store.local or points <= LOCAL_MODE_LIMIT:
        return []
    return [f"{points:,} points is more than the embedded store handles well "
            f"({LOCAL_MODE_LIMIT:,}): it keeps every point in memory and, on disk, writes "
            "about a thousand points a second. Use a Qdrant server (--qdrant-url)."]


def storage(schema: CollectionSchema, replaced: str, dims: int,
            sample: list[Point]) -> dict[str, Any]:
    """What each strategy adds to the cluster while the old data is still there, in bytes,
    from the collection's own count, its vectors' sizes and a sample's payloads and sparse
    vectors: in place, the new vector; a new collection, every vector (the replaced one at
    the new size) and every payload again. Index overhead is left out of both."""
    points = schema.points_count
    new_vector = points * dims * 4
    dense = sum(4 * (dims if name == replaced else spec.size)
                for name, spec in schema.vectors.items())
    per_point = [len(json.dumps(p.payload, default=str).encode()) + 8 * sum(
        len(getattr(v, "indices", ()) or ()) for v in p.vectors.values()) for p in sample]
    extra = float(np.mean(per_point)) if per_point else 0.0
    copy = int(points * (dense + extra))
    return {"in_place_bytes": new_vector, "new_collection_bytes": copy,
            "recommended": "in-place" if copy >= 2 * new_vector else "new-collection"}


def _over_limit(texts: list[str], spec: ModelSpec, policy: str) -> list[str]:
    """What migrate will do with the sampled texts over the model's per-input token limit
    (counted as migrate counts them for a model it has no tokenizer of its own for)."""
    limit = spec.max_tokens_per_input
    over = sum(1 for t in texts if count_tokens(t, spec.model) > limit)
    if not over:
        return []
    done = {"fail": "migrate lists such texts, sends none of them and stops before any swap "
                    "(long_input: fail; give --long-input truncate or chunk-mean)",
            "truncate": "they will be cut at the limit (long_input: truncate)",
            "chunk-mean": "they will be embedded in pieces and averaged (long_input: "
                          "chunk-mean)"}[policy]
    return [f"{over} of {len(texts)} sampled texts are over {spec.model}'s limit of "
            f"{limit:,} tokens per input: {done}."]


def _collection_warnings(plan: CollectionPlan, settings: Settings, target: QdrantStore,
                         spec: ModelSpec) -> list[str]:
    warnings = []
    if spec.dims and not spec.normalized and plan.target_distance == "Dot":
        warnings.append(f"{spec.model} does not return unit-length vectors and the distance "
                        "is Dot: scores will mix length with similarity.")
    if 0 < plan.missing_in_sample < plan.sample_size:  # none at all: migrate refuses it
        policy = settings.migration.missing_text
        consequence = ("the run will fail before any swap" if policy == "fail"
                       else "they will be skipped and listed")
        warnings.append(f"{plan.missing_in_sample} of {plan.sample_size} sampled points have no "
                        f"text in {plan.text}; {consequence} (missing_text: {policy}).")
    if plan.target_exists and plan.recorded is None and plan.new_vector is not None:
        warnings.append(f"Collection {plan.target!r} already has a vector named "
                        f"{plan.new_vector!r}, which no migration recorded here added; migrate "
                        "will refuse it (give another --new-vector).")
    elif plan.target_exists and plan.recorded is None and plan.target != plan.schema.name:
        warnings.append(f"Target {plan.target!r} already exists and no migration recorded here "
                        "created it: migrate writes into it only when its own metadata names "
                        "this migration (a state directory lost), or with --adopt-target (the "
                        "catch-up then deletes every point the source lacks); else it refuses.")
    if plan.alias and plan.alias in target.collection_names():
        warnings.append(f"Alias {plan.alias!r} is an existing collection's name; migrate will "
                        "refuse it.")
    warnings += local_mode_warning(target, plan.schema.points_count)
    old = plan.schema.vectors[plan.vector].size
    if plan.target_size and plan.target_size != old:
        warnings.append(f"The vector size changes from {old} to {plan.target_size}.")
    return warnings
