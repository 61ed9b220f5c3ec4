"""Seeded samples of a collection's (id, text) pairs: a reservoir filled while the backfill
writes (no extra pass), or one pass over the payloads when that saw too few points."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from .store import PointId, QdrantStore
from .texts import TextSource

__all__ = ["Reservoir", "draw_sample"]


class Reservoir:
    """A seeded uniform sample of a stream (Algorithm R): no extra pass, bounded memory."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.items: list[tuple[PointId, str]] = []
        self.seen = 0
        self._rng = random.Random(seed)

    def offer(self, items: Iterable[tuple[PointId, str]]) -> None:
        for item in items:
            self.seen += 1
            if len(self.items) < self.size:
                self.items.append(item)
            else:
                slot = self._rng.randrange(self.seen)
                if slot < self.size:
                    self.items[slot] = item


def draw_sample(store: QdrantStore, collection: str, text: TextSource, size: int,
                seed: int, *, page_size: int = 512) -> tuple[list[tuple[PointId, str]], int]:
    """A seeded sample of (id, text) by one pass over the payloads (no vectors), and how
    many points have no text: used by `verify` on its own, and when a resumed backfill saw
    too few points to sample from."""
    reservoir = Reservoir(size, seed)
    without_text = 0
    offset: Any = None
    while True:
        page = store.scroll(collection, limit=page_size, offset=offset, vectors=False)
        texts = [(p.id, text.extract(p.payload)[0]) for p in page.points]
        without_text += sum(1 for _, t in texts if t is None)
        reservoir.offer((i, t) for i, t in texts if t is not None)
        offset = page.next_offset
        if offset is None:
            return reservoir.items, without_text
