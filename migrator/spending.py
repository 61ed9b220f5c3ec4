"""What a run spends: its bill (per phase, from the meter on the provider), and the limit
`--max-cost` sets on it (refused before the start when `plan`'s estimate is over it;
enforced request by request as the run goes)."""

from __future__ import annotations

from .embedding import Embedder, Usage
from .embedding.usage import Budget
from .errors import ConfigError
from .planning import plan
from .results import Bill
from .settings import Settings
from .state import State
from .store import CollectionSchema, QdrantStore

__all__ = ["bill_of", "budget_for", "refuse_over_budget"]


def bill_of(embedder: Embedder, since: Usage | None = None) -> Bill:
    """The bill of the run `embedder` (a stack from `build_embedder`/`compose`) served: what
    it used after `since` (a snapshot taken when the run began; an embedder may serve
    several runs), as it stands now."""
    metrics = embedder.metrics
    usage = Usage() if embedder.usage is None else (
        embedder.usage.since(since) if since is not None else embedder.usage.snapshot())
    return Bill(usage, embedder.spec.price_per_mtok,
                metrics.to_dict() if metrics is not None else None)


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
            "not know it (the model is not in its catalog). Remove --max-cost "
            "(migration.max_cost) for this model.")
    return Budget(limit, spec.price_per_mtok, embedder.usage)


def refuse_over_budget(budget: Budget, settings: Settings, source: QdrantStore,
                       target: QdrantStore, state: State,
                       schemas: list[CollectionSchema]) -> None:
    """Refuse to start when `plan`'s estimate of what is left to embed exceeds the budget
    (a collection an earlier run half wrote counts for the half that is left).

    Raises:
        ConfigError: the estimate is over --max-cost; nothing was sent.
    """
    estimate = plan(settings, source_store=source, target_store=target)
    provider = settings.provider
    records = [m for m in state.all()
               if m.model == provider.model and m.provider == provider.name]
    left = 0.0
    for schema, planned in zip(schemas, estimate.collections, strict=True):
        written = max((m.counters.get("written", 0) for m in records
                       if m.source_collection == schema.name), default=0)
        done = min(1.0, written / schema.points_count) if schema.points_count else 1.0
        left += (planned.estimated_cost or 0.0) * (1 - done)
    if left > budget.limit:
        raise ConfigError(
            f"The estimated cost of this run, ${left:,.4f} (`migrator plan` shows how it is "
            f"made), exceeds --max-cost ${budget.limit:,.2f}. Raise --max-cost, or migrate "
            "fewer collections at a time. Nothing was sent.")
