"""`sync()`: catch a migrated target up with its source, without a backfill or a swap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .blocking import run_blocking
from .embedding import Embedder
from .errors import ConfigError
from .interrupts import stoppable
from .migration import ProgressCallback, running
from .results import Bill, CollectionResult
from .settings import Settings
from .store import QdrantStore

__all__ = ["sync", "SyncResult"]


@dataclass
class SyncResult:
    collections: list[CollectionResult]
    bill: Bill = field(default_factory=Bill)
    warnings: list[str] = field(default_factory=list)  # the probe's, as migrate's

    def to_dict(self) -> dict[str, Any]:
        return {"collections": [c.to_dict() for c in self.collections],
                "bill": self.bill.to_dict(), "warnings": self.warnings}


def sync(
    settings: Settings,
    *,
    source_store: QdrantStore | None = None,
    target_store: QdrantStore | None = None,
    embedder: Embedder | None = None,
    on_progress: ProgressCallback | None = None,
    adopt_target: bool = False,
) -> SyncResult:
    """Embed points added or changed in each source since its target was filled, and delete
    points removed from it. Targets are found as `migrate` names them (or `target`).

    Raises:
        ConfigError: nothing to sync.
        StoreError: a target does not exist yet.
        ProviderError: the provider failed.
    """
    if not settings.collections:
        raise ConfigError("No collection to sync: give --collection NAME or a `collections:` "
                          "list in the configuration file.")
    return run_blocking(_sync(settings, source_store, target_store, embedder, on_progress,
                              adopt_target), "sync")


# what is left when a second signal (or one before the catch-up began) cancels a sync
_CANCELLED = "What it wrote stays; run the same command again to catch up the rest."


async def _sync(settings: Settings, source_store: QdrantStore | None,
                target_store: QdrantStore | None, embedder: Embedder | None,
                on_progress: ProgressCallback | None, adopt_target: bool) -> SyncResult:
    async with stoppable(_CANCELLED) as stop, running(
            settings, source_store, target_store, embedder, on_progress, stop) as (run, schemas):
        run.adopt_target = adopt_target
        collections, warnings = await run.sync_only(schemas)
        return SyncResult(collections, run.bill(), warnings)
