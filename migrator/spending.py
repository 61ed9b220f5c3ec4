"""What a run spends: its bill (per phase, from the meter on the provider), and the limit
`--max-cost` sets on it (refused before the start when `plan`'s estimate is over it;
enforced request by request as the run goes)."""

from __future__ import annotations

from .embedding import Embedder, Usage
from .embedding.usage import Budget
from .errors import ConfigError
from .planning import plan
from .results import Bill
from .settings import CollectionSettings, Settings
from .state import State
from .store import CollectionSchema, QdrantStore
from .texts import TextSource
from .verification.dimensions import probe_texts
from .wording import money

__all__ = ["bill_of", "budget_for", "paid_so_far", "refuse_over_budget"]


def bill_of(embedder: Embedder, since: Usage | None = None) -> Bill:
    """The bill of the run `embedder` (a stack from `build_embedder`/`compose`) served: what
    it used after `since` (a snapshot taken when the run began; an embedder may serve
    several runs), as it stands now."""
    metrics = embedder.metrics
    usage = Usage() if embedder.usage is None else (
        embedder.usage.since(since) if since is not None else embedder.usage.snapshot())
    return Bill(usage, embedder.spec.price_per_mtok,
                metrics.to_dict() if metrics is not None else None)


def paid_so_far(embedder: Embedder, since: Usage | None = None) -> str:
    """What the run `embedder` serves paid for so far, and whether the next run pays for it
    again (`Bill.paid`): the end of the message of a run that stopped."""
    return bill_of(embedder, since).paid(cached=embedder.cache_slot() is not None)


def budget_for(settings: Settings, embedder: Embedder) -> Budget | None:
    """What this run may spend, from --max-cost; None without a limit.

    Raises:
        ConfigError: a limit for a model whose price migrator does not know.
    """
    limit = settings.migration.max_cost
    if limit is None:
        return None
    spec = embedder.spec
    if spec.price_per_mtok is None or embedder.usage is None:
        raise ConfigError(
            f"--max-cost needs the price of {spec.provider} {spec.model}, and migrator does "
            "not know it (the model is not in its catalog). Give its price in USD per "
            "million tokens as provider.price_per_mtok, or remove --max-cost "
            "(migration.max_cost).")
    return Budget(limit, spec.price_per_mtok, embedder.usage)


def refuse_over_budget(budget: Budget, settings: Settings, source: QdrantStore,
                       target: QdrantStore, state: State, schemas: list[CollectionSchema],
                       embedder: Embedder) -> None:
    """Refuse to start when `plan`'s estimate of what is left to embed exceeds the budget
    (a collection an earlier run half wrote counts for the half that is left; one no run
    has started counts less the share of its texts the cache already holds, measured on
    the texts `plan` samples too: the first points).

    Raises:
        ConfigError: the estimate is over --max-cost; nothing was sent.
    """
    estimate = plan(settings, source_store=source, target_store=target)
    provider = settings.provider
    records = [m for m in state.all()
               if m.model == provider.model and m.provider == provider.name]
    left = 0.0
    for config, schema, planned in zip(settings.collections, schemas, estimate.collections,
                                       strict=True):
        text = TextSource.from_settings(config.text_field, config.text_template).describe()
        written = max((m.counters.get("written", 0) for m in records
                       if m.source_collection == schema.name and m.text == text), default=0)
        done = min(1.0, written / schema.points_count) if schema.points_count else 1.0
        if done == 0:
            done = _cached_share(source, schema, config, settings, embedder)
        left += (planned.estimated_cost or 0.0) * estimate.price_factor * (1 - done)
    if left > budget.limit:
        priced = " at the batch price" if estimate.batch is not None else ""
        raise ConfigError(
            f"The estimated cost of this run{priced}, {money(left)} (`migrator plan` shows how "
            f"it is made), exceeds --max-cost {money(budget.limit)}. Raise --max-cost, or "
            "migrate fewer collections at a time. Nothing was sent.")


def _cached_share(source: QdrantStore, schema: CollectionSchema,
                  config: CollectionSettings, settings: Settings, embedder: Embedder) -> float:
    """The share of the first texts of `schema` the embedding cache already holds."""
    slot = embedder.cache_slot("document")
    texts = probe_texts(source, schema, config, embedder, settings.provider.long_input).texts
    if slot is None or not texts:
        return 0.0
    keys = slot.keys(texts)
    return len(slot.found(keys)) / len(keys)
