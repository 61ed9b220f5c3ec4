"""`sync()`: catch a migrated target up with its source, without a backfill or a swap."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .migration import ProgressCallback, _Run
from .providers import Embedder, build_embedder
from .results import CollectionResult
from .settings import Settings
from .state import EmbeddingCache, State
from .store import QdrantStore, opened


@dataclass
class SyncResult:
    collections: list[CollectionResult]

    def to_dict(self) -> dict[str, Any]:
        return {"collections": [c.to_dict() for c in self.collections]}


def sync(
    settings: Settings,
    *,
    source_store: QdrantStore | None = None,
    target_store: QdrantStore | None = None,
    embedder: Embedder | None = None,
    on_progress: ProgressCallback | None = None,
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
    return asyncio.run(_sync(settings, source_store, target_store, embedder, on_progress))


async def _sync(settings: Settings, source_store: QdrantStore | None,
                target_store: QdrantStore | None, embedder: Embedder | None,
                on_progress: ProgressCallback | None) -> SyncResult:
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
                return SyncResult(await run.sync_only(schemas))
            finally:
                await run.release()
                if embedder is None:
                    await model.aclose()
    finally:
        state.close()
        if cache is not None:
            cache.close()
