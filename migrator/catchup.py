"""Catch-up: bring a target up to date with its source after (or long after) the backfill.

Each source point is matched with its target point:
- a point only in the source is embedded and written (new);
- a point whose text changed is embedded again (changed);
- a point whose payload or other vectors changed but whose text did not gets them copied
  without a new embedding (updated);
- a point only in the target is deleted (deleted).

`MergeJoinSource` reads source and target side by side in id order (Qdrant scrolls by id),
payloads and all. `ChangedSinceSource` (with `sync.updated_field`) reads only the points
written since a time, with their target points, and the ids of the rest, for deletions
and new points. Memory holds a few pages, whatever the collection size (and, for the
second, the ids of the new points it found).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError
from .jobs import Job
from .ownership import served_by
from .settings import Settings
from .store import ChangedSince, Page, Point, PointId, QdrantStore, id_order
from .store.paging import pages
from .texts import TextSource

__all__ = ["ChangedSinceSource", "changes_source", "ID_PAGE", "MergeJoinSource",
           "refuse_mass_delete", "SyncStats"]

_MORE = "more"  # next_offset while the join is not exhausted (the pipeline only tests None)
ID_PAGE = 10_000  # ids per page of the id join: ids alone are small, and every page is a
# request to a server (and a pass over the whole collection in local mode)


@dataclass
class SyncStats:
    new: int = 0
    changed: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    without_text: int = 0
    since: float | None = None  # compared only the points written since (updated_field)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _Cursor:
    """A collection read page by page in id order, one point at a time."""

    def __init__(self, store: QdrantStore, collection: str, *, vectors: list[str] | bool,
                 page_size: int, payload: bool = True) -> None:
        self._points: Iterator[Point] = (point for page in pages(
            store, collection, page_size=page_size, vectors=vectors, payload=payload)
            for point in page.points)
        self.head: Point | None = None
        self.advance()

    def advance(self) -> None:
        self.head = next(self._points, None)


class _Reconciler:
    """What a catch-up does with each pair it meets: embed, copy, delete; the counts."""

    def __init__(self, target: QdrantStore, collection: str, *, vector: str,
                 keep_vectors: list[str], text: TextSource) -> None:
        self._target, self._collection = target, collection
        self._vector, self._keep, self._text = vector, keep_vectors, text
        self._deletes: list[PointId] = []
        self._copies: list[Point] = []
        self.stats = SyncStats()

    def embed(self, point: Point, out: list[Point], kind: str) -> None:
        out.append(point)  # points without text reach the pipeline, which lists them
        if self._text.extract(point.payload)[0] is None:
            self.stats.without_text += 1
        else:
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)

    def delete(self, point_id: PointId) -> None:
        self._deletes.append(point_id)
        self.stats.deleted += 1

    def compare(self, s: Point, t: Point, out: list[Point]) -> None:
        text = self._text.extract(s.payload)[0]
        if text is None:  # its text is gone: it cannot stay with a vector of the old text
            self.delete(t.id)
            self.embed(s, out, "changed")
            return
        if text != self._text.extract(t.payload)[0]:
            self.embed(s, out, "changed")
            return
        kept = {name: s.vectors[name] for name in self._keep if name in s.vectors}
        same_vectors = all(_same(kept.get(n), t.vectors.get(n)) for n in self._keep)
        if s.payload == t.payload and same_vectors:
            self.stats.unchanged += 1
            return
        self._copies.append(Point(s.id, s.payload, kept))
        self.stats.updated += 1

    def flush(self, threshold: int, out: list[Point]) -> None:
        if len(self._deletes) >= threshold:
            self._target.delete(self._collection, self._deletes)
            self._deletes = []
        if len(self._copies) >= threshold:
            # the target's migrated vectors are read only for the points copied without
            # re-embedding, not for every point
            current = {p.id: p.vectors.get(self._vector) for p in self._target.retrieve(
                self._collection, [c.id for c in self._copies], vectors=[self._vector])}
            ready = []
            for copy in self._copies:
                vector = current.get(copy.id)
                if vector is None:  # the target lost its vector: embed the text again
                    self.stats.updated -= 1
                    self.embed(copy, out, "changed")
                else:
                    copy.vectors[self._vector] = vector
                    ready.append(copy)
            if ready:
                self._target.upsert(self._collection, ready)
            self._copies = []


class MergeJoinSource:
    """A `PageSource` of the points to (re-)embed, from source and target read whole in id
    order; deletions and copies happen on the way."""

    def __init__(self, source: QdrantStore, source_collection: str, target: QdrantStore,
                 target_collection: str, *, vector: str, keep_vectors: list[str],
                 text: TextSource, page_size: int) -> None:
        self._src = _Cursor(source, source_collection, vectors=keep_vectors, page_size=page_size)
        self._dst = _Cursor(target, target_collection, vectors=keep_vectors, page_size=page_size)
        self._join = _Reconciler(target, target_collection, vector=vector,
                                 keep_vectors=keep_vectors, text=text)
        self.stats = self._join.stats
        self._page_size = page_size

    def next_page(self) -> Page | None:
        out: list[Point] = []
        while len(out) < self._page_size:
            s, t = self._src.head, self._dst.head
            if s is None and t is None:
                break
            if t is None or (s is not None and id_order(s.id) < id_order(t.id)):
                self._src.advance()
                self._join.embed(s, out, "new")  # type: ignore[arg-type]
            elif s is None or id_order(s.id) > id_order(t.id):
                self._dst.advance()
                self._join.delete(t.id)
            else:
                self._src.advance()
                self._dst.advance()
                self._join.compare(s, t, out)
            self._join.flush(self._page_size, out)
        finished = self._src.head is None and self._dst.head is None
        if finished:
            self._join.flush(1, out)
        return Page(out, None if finished else _MORE)


class ChangedSinceSource:
    """A `PageSource` of the points to (re-)embed, reading only what changed since a time:
    first the source points `changed` selects, each with its target point; then the ids of
    both collections side by side, for points deleted from the source and points new to it
    (a new point without the field is still found)."""

    def __init__(self, source: QdrantStore, source_collection: str, target: QdrantStore,
                 target_collection: str, *, changed: ChangedSince, vector: str,
                 keep_vectors: list[str], text: TextSource, page_size: int) -> None:
        self._source, self._source_collection = source, source_collection
        self._target, self._target_collection = target, target_collection
        self._changed, self._keep, self._page_size = changed, keep_vectors, page_size
        self._join = _Reconciler(target, target_collection, vector=vector,
                                 keep_vectors=keep_vectors, text=text)
        self.stats = self._join.stats
        self.stats.since = changed.since
        self._offset: Any = None
        self._scanned = False  # the changed points are all read
        self._seen_new: set[PointId] = set()  # new points found by the first pass
        self._ids: tuple[_Cursor, _Cursor] | None = None  # the id join, once begun
        self._new: list[PointId] = []

    def next_page(self) -> Page | None:
        out: list[Point] = []
        while len(out) < self._page_size and not self._finished():
            if not self._scanned:
                self._changed_page(out)
            else:
                self._ids_step(out)
            self._join.flush(self._page_size, out)
        finished = self._finished()
        if finished:
            self._join.flush(1, out)
        return Page(out, None if finished else _MORE)

    def _finished(self) -> bool:
        return (self._ids is not None and self._ids[0].head is None
                and self._ids[1].head is None and not self._new)

    def _changed_page(self, out: list[Point]) -> None:
        page = self._source.scroll(self._source_collection, limit=self._page_size,
                                   offset=self._offset, vectors=self._keep,
                                   changed=self._changed)
        self._offset = page.next_offset
        if page.points:
            targets = {p.id: p for p in self._target.retrieve(
                self._target_collection, [p.id for p in page.points], vectors=self._keep)}
            for point in page.points:
                current = targets.get(point.id)
                if current is None:
                    self._seen_new.add(point.id)
                    self._join.embed(point, out, "new")
                else:
                    self._join.compare(point, current, out)
        self._scanned = page.next_offset is None

    def _ids_step(self, out: list[Point]) -> None:
        """Advance the id join by up to a page of ids; read the new points it found."""
        if self._ids is None:
            self._ids = (_Cursor(self._source, self._source_collection, vectors=False,
                                 page_size=ID_PAGE, payload=False),
                         _Cursor(self._target, self._target_collection, vectors=False,
                                 page_size=ID_PAGE, payload=False))
        src, dst = self._ids
        for _ in range(self._page_size):
            s, t = src.head, dst.head
            if s is None and t is None:
                break
            if t is None or (s is not None and id_order(s.id) < id_order(t.id)):
                src.advance()
                if s.id not in self._seen_new:  # type: ignore[union-attr]
                    self._new.append(s.id)  # type: ignore[union-attr]
            elif s is None or id_order(s.id) > id_order(t.id):
                dst.advance()
                self._join.delete(t.id)
            else:
                src.advance()
                dst.advance()
        if self._new:
            for point in self._source.retrieve(self._source_collection, self._new,
                                               vectors=self._keep):
                self._join.embed(point, out, "new")
            self._new = []


def changes_source(job: Job, source: QdrantStore, target: QdrantStore, settings: Settings
                   ) -> MergeJoinSource | ChangedSinceSource:
    """What a catch-up reads: with `sync.updated_field` and the time the target last
    matched its source, only what was written since, less the clock skew allowed; else
    source and target whole (also while no source point has the field)."""
    refuse_mass_delete(job, source, target, settings.sync.max_delete)
    common: dict[str, Any] = {"vector": job.vector, "keep_vectors": job.keep_vectors,
                              "text": job.text, "page_size": settings.migration.page_size}
    since = job.record.changes_since
    field = settings.sync.updated_field
    time_form = source.time_form(job.schema.name, field) if field else None
    if field and since is not None and time_form is not None:
        changed = ChangedSince(field, since - settings.sync.clock_skew, time_form)
        return ChangedSinceSource(source, job.schema.name, target, job.target,
                                  changed=changed, **common)
    return MergeJoinSource(source, job.schema.name, target, job.target, **common)


def refuse_mass_delete(job: Job, source: QdrantStore, target: QdrantStore,
                       limit: float) -> None:
    """Refuse a catch-up that would delete more than `limit` of the points an alias serves:
    a source emptied or recreated by mistake would empty the live collection. (The target
    holds the source's ids, so it loses at least as many points as it has more.)

    Raises:
        DataError: it would; nothing was deleted.
    """
    served = served_by(target, job.target)
    held = target.count(job.target) if served else 0
    if not held:
        return
    lost = held - source.count(job.schema.name)
    if lost / held > limit:
        raise DataError(
            f"The source {job.schema.name!r} holds {held - lost:,} points and the target "
            f"{job.target!r}, which alias {served[0]!r} serves, {held:,}: this catch-up would "
            f"delete {lost / held:.0%} of what the alias serves (sync.max_delete is "
            f"{limit:.0%}). If the source really lost them, run again with --max-delete 1; "
            "if not, restore the source. Nothing was deleted.")


# Qdrant normalises a cosine vector as it stores it: a unit-length vector copied to the
# target may come back a float32 ulp (about 1.2e-7 of a value) away from the source's. No
# one changes a vector by less than this.
SAME_VECTOR_RTOL = 1e-6


def _same(a: Any, b: Any) -> bool:
    """Two copies of a kept vector hold the same values, float32 rounding apart. Sparse
    vectors (not normalised) compare exactly."""
    if a is None or b is None or hasattr(a, "indices") or hasattr(b, "indices"):
        return bool(a == b)
    try:
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError):  # not numbers: as they are
        return bool(a == b)
    return x.shape == y.shape and bool(np.allclose(x, y, rtol=SAME_VECTOR_RTOL, atol=0.0))
