"""Adapters between the pipeline and the rest: where pages come from (a Qdrant scroll) and
where points without text are listed (the state database)."""

from __future__ import annotations

from typing import Any

from .state import State
from .store import Page, PointId, QdrantStore
from .store.paging import pages

__all__ = ["ScrollSource", "StateSkipLog"]


class ScrollSource:
    """Pages of a Qdrant collection in id order, from `start` (a `PageSource`)."""

    def __init__(self, store: QdrantStore, collection: str, *, page_size: int,
                 vectors: list[str], start: Any = None) -> None:
        self._pages = pages(store, collection, page_size=page_size, start=start,
                            vectors=vectors)

    def next_page(self) -> Page | None:
        return next(self._pages, None)


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


