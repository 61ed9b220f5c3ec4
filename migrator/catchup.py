"""Catch-up: bring a target up to date with its source after (or long after) the backfill.

Source and target are read side by side in id order (Qdrant scrolls by id) and merge-joined:
- a point only in the source is embedded and written (new);
- a point whose text changed is embedded again (changed);
- a point whose payload or other vectors changed but whose text did not gets them copied
  without a new embedding (updated);
- a point only in the target is deleted (deleted).
Memory holds two pages, whatever the collection size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .store import Page, Point, PointId, QdrantStore, id_order
from .texts import TextSource

__all__ = ["MergeJoinSource", "SyncStats"]

_MORE = "more"  # next_offset while the join is not exhausted (the pipeline only tests None)


@dataclass
class SyncStats:
    new: int = 0
    changed: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    without_text: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _Cursor:
    """A collection read page by page in id order, one point at a time."""

    def __init__(self, store: QdrantStore, collection: str, *, vectors: list[str] | bool,
                 page_size: int) -> None:
        self._store, self._collection = store, collection
        self._vectors, self._page_size = vectors, page_size
        self._points: Iterator[Point] = iter(())
        self._offset: Any = None
        self._exhausted = False
        self.head: Point | None = None
        self.advance()

    def advance(self) -> None:
        self.head = next(self._points, None)
        while self.head is None and not self._exhausted:
            page = self._store.scroll(self._collection, limit=self._page_size,
                                      offset=self._offset, vectors=self._vectors)
            self._offset = page.next_offset
            self._exhausted = page.next_offset is None
            self._points = iter(page.points)
            self.head = next(self._points, None)


class MergeJoinSource:
    """A `PageSource` of the points to (re-)embed; deletions and copies happen on the way."""

    def __init__(self, source: QdrantStore, source_collection: str, target: QdrantStore,
                 target_collection: str, *, vector: str, keep_vectors: list[str],
                 text: TextSource, page_size: int) -> None:
        self._src = _Cursor(source, source_collection, vectors=keep_vectors, page_size=page_size)
        # the target's migrated vectors are read only for the points copied without
        # re-embedding (see _flush), not for every point
        self._dst = _Cursor(target, target_collection, vectors=keep_vectors, page_size=page_size)
        self._target, self._collection = target, target_collection
        self._vector, self._keep, self._text = vector, keep_vectors, text
        self._page_size = page_size
        self._deletes: list[PointId] = []
        self._copies: list[Point] = []
        self.stats = SyncStats()

    def next_page(self) -> Page | None:
        out: list[Point] = []
        while len(out) < self._page_size:
            s, t = self._src.head, self._dst.head
            if s is None and t is None:
                break
            if t is None or (s is not None and id_order(s.id) < id_order(t.id)):
                self._src.advance()
                self._embed(s, out, "new")  # type: ignore[arg-type]
            elif s is None or id_order(s.id) > id_order(t.id):
                self._dst.advance()
                self._deletes.append(t.id)
                self.stats.deleted += 1
            else:
                self._src.advance()
                self._dst.advance()
                self._compare(s, t, out)
            self._flush(self._page_size, out)
        finished = self._src.head is None and self._dst.head is None
        if finished:
            self._flush(1, out)
        return Page(out, None if finished else _MORE)

    def _embed(self, point: Point, out: list[Point], kind: str) -> None:
        out.append(point)  # points without text reach the pipeline, which lists them
        if self._text.extract(point.payload)[0] is None:
            self.stats.without_text += 1
        else:
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)

    def _compare(self, s: Point, t: Point, out: list[Point]) -> None:
        text = self._text.extract(s.payload)[0]
        if text is None:  # its text is gone: it cannot stay with a vector of the old text
            self._deletes.append(t.id)
            self.stats.deleted += 1
            self._embed(s, out, "changed")
            return
        if text != self._text.extract(t.payload)[0]:
            self._embed(s, out, "changed")
            return
        kept = {name: s.vectors[name] for name in self._keep if name in s.vectors}
        same_vectors = all(_same(kept.get(n), t.vectors.get(n)) for n in self._keep)
        if s.payload == t.payload and same_vectors:
            self.stats.unchanged += 1
            return
        self._copies.append(Point(s.id, s.payload, kept))
        self.stats.updated += 1

    def _flush(self, threshold: int, out: list[Point]) -> None:
        if len(self._deletes) >= threshold:
            self._target.delete(self._collection, self._deletes)
            self._deletes = []
        if len(self._copies) >= threshold:
            current = {p.id: p.vectors.get(self._vector) for p in self._target.retrieve(
                self._collection, [c.id for c in self._copies], vectors=[self._vector])}
            ready = []
            for copy in self._copies:
                vector = current.get(copy.id)
                if vector is None:  # the target lost its vector: embed the text again
                    self.stats.updated -= 1
                    self._embed(copy, out, "changed")
                else:
                    copy.vectors[self._vector] = vector
                    ready.append(copy)
            if ready:
                self._target.upsert(self._collection, ready)
            self._copies = []


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "tolist"):
        a = a.tolist()
    if hasattr(b, "tolist"):
        b = b.tolist()
    return bool(a == b)
