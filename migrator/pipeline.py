"""The staged async engine that re-embeds points.

    reader ──pages──▶ prepare ──requests──▶ embed workers (N) ──pages──▶ writer

Stages are asyncio tasks joined by bounded queues, so memory is bounded by configuration
(queue depth × page size), not by collection size, and a slow stage makes the others wait
instead of buffering. Blocking work (Qdrant calls, CPU-bound embedders) runs in threads.
A page is written only when every text in it is embedded, so a failure never half-writes
a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from .embedding.base import Embedder
from .embedding.tokens import estimate_total, fit_all, pack
from .embedding.usage import Budget
from .embedding.vectors import l2_normalize
from .errors import NotSent, ProviderResponseError
from .interrupts import Stop, finish_in_thread, gather_or_cancel
from .store import Page, Point, PointId
from .texts import TextSource

__all__ = ["Checkpoint", "in_flight_bound", "PageSource", "Pipeline", "prepare", "Prepared",
    "Progress", "SkipLog", "SkipSink", "Stats", "TOO_LONG"]


class PageSource(Protocol):
    """Where points come from: Qdrant's scroll, or rows of a file. Called in a thread."""

    def next_page(self) -> Page | None:
        """The next page, or None when there are no more."""
        ...


@dataclass
class Progress:
    """What `on_progress` receives after each written page."""

    collection: str
    total: int | None
    read: int
    written: int
    skipped: int
    tokens: int
    throttled: int = 0  # provider answers 429 so far (HTTP providers)
    retries: int = 0  # requests sent again so far, for any cause


@dataclass
class Stats:
    """Counts for one backfill."""

    read: int = 0
    embedded: int = 0  # texts sent to the provider (after de-duplication)
    written: int = 0
    skipped: int = 0
    tokens: int = 0
    tokens_estimated: bool = False
    requests: int = 0
    retries: int = 0
    cached: int = 0
    tokens_saved: int = 0
    embed_seconds: float = 0.0
    pages: int = 0
    max_points_in_flight: int = 0

    # counted per page, committed with the checkpoint, restored on resume
    PAGE_COUNTERS: ClassVar[tuple[str, ...]] = (
        "read", "embedded", "written", "skipped", "tokens", "requests", "retries", "cached",
        "tokens_saved", "pages")
    # what a catch-up adds to its migration's counters: what it paid for (its points are
    # counted apart, by the count after it)
    PAID: ClassVar[tuple[str, ...]] = (
        "embedded", "tokens", "tokens_estimated", "requests", "retries", "cached",
        "tokens_saved")

    def to_dict(self) -> dict[str, Any]:
        # fields(), not __dataclass_fields__: that holds the class constants too
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def add(self, counts: dict[str, Any]) -> None:
        for key in self.PAGE_COUNTERS:
            setattr(self, key, getattr(self, key) + counts.get(key, 0))
        self.tokens_estimated |= bool(counts.get("tokens_estimated"))

    def counters(self) -> dict[str, Any]:
        data = {key: getattr(self, key) for key in self.PAGE_COUNTERS}
        data["tokens_estimated"] = self.tokens_estimated
        return data


@dataclass(frozen=True)
class Checkpoint:
    """Every page before `offset` is written; `counters` add up those pages. `finished`:
    the whole source is written (`offset` is None then)."""

    offset: Any
    finished: bool
    counters: dict[str, Any]


def in_flight_bound(page_size: int, *, concurrency: int, queue_depth: int) -> int:
    """The most points held at once with pages of `page_size`: pages queued for prepare,
    the one prepare holds, one per queued request and per worker (a request may be a whole
    page), pages queued for the writer, the one being written, the one the reader holds.
    It is also the most a crash can make a resume redo."""
    pages = (queue_depth + 1 + max(concurrency, queue_depth) + concurrency + queue_depth
             + 1 + 1)
    return pages * page_size


class SkipSink(Protocol):
    """Where points without text are listed."""

    def add(self, point_id: PointId, reason: str) -> None: ...


class SkipLog:
    """Points left out, with the reason: appended to a JSONL file as they are found."""

    def __init__(self, path: Path | None, *, collection: str, keep: int = 10) -> None:
        self.path = path
        self.collection = collection
        self.count = 0
        self.first: list[PointId] = []
        self._keep = keep
        self._file: Any = None

    def add(self, point_id: PointId, reason: str) -> None:
        self.count += 1
        if len(self.first) < self._keep:
            self.first.append(point_id)
        if self.path is None:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        record = {"collection": self.collection, "id": point_id, "reason": reason}
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


TOO_LONG = "text is over the model's limit"  # the start of such a point's listed reason


@dataclass
class Prepared:
    """A page made ready to embed: the points that will be written, each one's row (or
    rows, for chunks) in `unique`, the texts to send once each, and the points left out."""

    points: list[Point]
    text_index: list[int | list[int]]
    unique: list[str]
    texts: list[str]  # each point's whole text
    skipped: list[tuple[PointId, str]]


def prepare(points: list[Point], text: TextSource, embedder: Embedder,
            long_input: str) -> Prepared:
    """The one prepare step (the backfill's, the catch-up's, batch mode's): each point's
    text, the long-input policy, de-duplication."""
    with_text: list[tuple[Point, str]] = []
    skipped: list[tuple[PointId, str]] = []
    for point in points:
        found, reason = text.extract(point.payload)
        if found is None:
            skipped.append((point.id, reason))
        else:
            with_text.append((point, found))
    fitted = fit_all([found for _, found in with_text], embedder, long_input)
    keep: list[Point] = []
    texts: list[str] = []
    text_index: list[int | list[int]] = []
    for (point, found), rows in zip(with_text, fitted.rows, strict=True):
        if not rows:  # over the model's limit under `long_input: fail`
            skipped.append((point.id, f"{TOO_LONG} "
                            f"({embedder.spec.max_tokens_per_input} tokens)"))
            continue
        keep.append(point)
        texts.append(found)
        text_index.append(rows[0] if len(rows) == 1 else rows)
    return Prepared(keep, text_index, fitted.unique, texts, skipped)


@dataclass
class _PageWork:
    seq: int
    points: list[Point]  # the points that will be written
    text_index: list[int | list[int]]  # each point's row in `unique_texts` (chunks: rows)
    unique_texts: list[str]
    texts: list[str] = field(default_factory=list)  # each point's whole text
    vectors: np.ndarray | None = None
    pending: int = 0
    counts: dict[str, Any] = field(default_factory=dict)

    def count(self, key: str, amount: Any) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount


@dataclass
class _Request:
    page: _PageWork
    start: int
    stop: int


_DONE: Any = object()


@dataclass
class Pipeline:
    """One re-embedding run from a `PageSource` into a writer.

    Args:
        source: yields pages of points.
        write: writes a list of points (idempotent upsert); called in a thread.
        embedder: the target model.
        text: where each point's text is.
        vector: the name of the vector to set on each point (UNNAMED for the default one).
        keep_vectors: vectors read from the source to copy unchanged.
        skip_log: where points without text are listed.
        concurrency: embedding requests in flight.
        queue_depth: pages buffered between stages.
        on_progress: called after each written page.
        stats: counters to continue from (a checkpoint's).
        on_checkpoint: called each time the low-water mark advances: every page before its
            offset is written. Pages finish out of order; a resume from the offset redoes at
            most the pages that were in flight.
        sampler: given (id, text) of every point written, for the verification sample.
        stop: once its event is set, no page is read and no request sent any more; the
            requests in flight are answered, the pages they complete written and
            checkpointed, and `run` returns (the caller reports the interruption).
        budget: what the run may spend; a request it refuses is not sent, and the run
            winds down as after a stop (the caller reports it).
    """

    source: PageSource
    write: Callable[[list[Point]], None]
    embedder: Embedder
    text: TextSource
    vector: str
    dims: int
    skip_log: SkipSink
    collection: str = ""
    total: int | None = None
    concurrency: int = 4
    queue_depth: int = 4
    on_progress: Callable[[Progress], None] | None = None
    stats: Stats = field(default_factory=Stats)
    on_checkpoint: Callable[[Checkpoint], None] | None = None
    sampler: Callable[[list[tuple[PointId, str]]], None] | None = None
    long_input: str = "fail"  # texts over the model's per-input limit: fail|truncate|chunk-mean
    stop: Stop | None = None
    budget: Budget | None = None
    _in_flight: int = 0
    _ends: dict[int, Any] = field(default_factory=dict)  # seq -> offset after the page
    _done: dict[int, dict[str, Any]] = field(default_factory=dict)  # written, not committed
    _low: int = 0  # the lowest page not yet written
    _committed: Stats = field(default_factory=Stats)

    def in_flight_bound(self, page_size: int) -> int:
        return in_flight_bound(page_size, concurrency=self.concurrency,
                               queue_depth=self.queue_depth)

    async def run(self) -> Stats:
        self._committed = Stats()
        self._committed.add(self.stats.counters())
        pages: asyncio.Queue[Any] = asyncio.Queue(self.queue_depth)
        requests: asyncio.Queue[Any] = asyncio.Queue(max(self.concurrency, self.queue_depth))
        done: asyncio.Queue[Any] = asyncio.Queue(self.queue_depth)
        workers = [self._embed_worker(requests, done) for _ in range(self.concurrency)]

        async def embed_stage() -> None:
            await gather_or_cancel(*workers)
            self.embedder.settle()  # the cache indexes while the last pages are written
            await done.put(_DONE)

        with self.stop.draining() if self.stop else contextlib.nullcontext():
            await gather_or_cancel(
                self._read(pages),
                self._prepare(pages, requests, done),
                embed_stage(),
                self._write(done),
            )
        return self.stats

    def _stopping(self) -> bool:
        return (self.stop is not None and self.stop.requested) or (
            self.budget is not None and self.budget.exceeded)

    async def _read(self, pages: asyncio.Queue[Any]) -> None:
        seq = 0
        while not self._stopping():
            page = await finish_in_thread(self.source.next_page)
            if page is None:
                break
            self._in_flight += len(page.points)
            self.stats.max_points_in_flight = max(self.stats.max_points_in_flight,
                                                  self._in_flight)
            self._ends[seq] = page.next_offset
            await pages.put((seq, page))
            seq += 1
            if page.next_offset is None:
                break
        await pages.put(_DONE)

    async def _prepare(self, pages: asyncio.Queue[Any], requests: asyncio.Queue[Any],
                       done: asyncio.Queue[Any]) -> None:
        spec = self.embedder.spec
        while (item := await pages.get()) is not _DONE:
            if self._stopping():
                continue  # read, never sent: the checkpoint stays before it
            seq, page = item
            work = self._page_work(seq, page.points)
            if not work.unique_texts:
                await done.put(work)
                continue
            spans = pack(work.unique_texts, max_inputs=self.embedder.batch_size,
                         max_tokens=spec.max_tokens_per_request)
            work.pending = len(spans)
            for start, stop in spans:
                await requests.put(_Request(work, start, stop))
        for _ in range(self.concurrency):
            await requests.put(_DONE)

    def _page_work(self, seq: int, points: list[Point]) -> _PageWork:
        self.stats.read += len(points)
        ready = prepare(points, self.text, self.embedder, self.long_input)
        for point_id, reason in ready.skipped:
            self.skip_log.add(point_id, reason)
        skipped = len(ready.skipped)
        self.stats.skipped += skipped
        return _PageWork(seq, ready.points, ready.text_index, ready.unique, ready.texts,
                         counts={"read": len(points), "skipped": skipped, "pages": 1})

    async def _embed_worker(self, requests: asyncio.Queue[Any], done: asyncio.Queue[Any]) -> None:
        while (request := await requests.get()) is not _DONE:
            if self._stopping():
                continue  # not sent; its page is redone on resume
            work: _PageWork = request.page
            texts = work.unique_texts[request.start : request.stop]
            reserved = estimate_total(self._to_send(texts)) if self.budget is not None else 0
            if self.budget is not None and not self.budget.admit(reserved):
                continue  # over budget: not sent; its page is redone on resume
            started = time.perf_counter()
            try:
                result = await self.embedder.embed(texts, kind="document")
            except NotSent:
                continue  # stopping: not sent (again); its page is redone on resume
            finally:
                if self.budget is not None:
                    self.budget.settle(reserved)
            self.stats.embed_seconds += time.perf_counter() - started
            sent = len(texts) - result.cached
            counts = {"requests": 1 if sent else 0, "retries": result.retries,
                      "tokens": result.tokens, "embedded": sent, "cached": result.cached,
                      "tokens_saved": result.tokens_saved}
            for key, amount in counts.items():
                setattr(self.stats, key, getattr(self.stats, key) + amount)
                work.count(key, amount)
            self.stats.tokens_estimated |= result.tokens_estimated
            if result.tokens_estimated:
                work.counts["tokens_estimated"] = True
            if work.vectors is None:
                work.vectors = np.empty((len(work.unique_texts), self.dims), dtype=np.float32)
            work.vectors[request.start : request.stop] = _checked(result.vectors, len(texts),
                                                                 self.dims)
            work.pending -= 1
            if work.pending == 0:
                await done.put(work)

    def _to_send(self, texts: list[str]) -> list[str]:
        """The texts the cache does not hold: what a request will cost (--max-cost)."""
        slot = self.embedder.cache_slot("document")
        if slot is None:
            return texts
        keys = slot.keys(texts)
        found = slot.found(keys)
        return [text for text, key in zip(texts, keys, strict=True) if key not in found]

    async def _write(self, done: asyncio.Queue[Any]) -> None:
        while (work := await done.get()) is not _DONE:
            points = self._target_points(work)
            if points:
                await finish_in_thread(self.write, points)
                if self.sampler is not None:
                    self.sampler(list(zip((p.id for p in work.points), work.texts,
                                          strict=True)))
            self.stats.written += len(points)
            self.stats.pages += 1
            work.count("written", len(points))
            self._in_flight -= work.counts["read"]
            self._page_done(work)
            if self.on_progress is not None:
                metrics = self.embedder.metrics
                self.on_progress(Progress(
                    self.collection, self.total, self.stats.read, self.stats.written,
                    self.stats.skipped, self.stats.tokens,
                    throttled=metrics.throttled if metrics else 0,
                    retries=sum(metrics.retries.values()) if metrics else 0))

    def _page_done(self, work: _PageWork) -> None:
        """Advance the low-water mark over the pages written so far, in order."""
        self._done[work.seq] = work.counts
        advanced = False
        while self._low in self._done:
            self._committed.add(self._done.pop(self._low))
            self._low += 1
            advanced = True
        if advanced and self.on_checkpoint is not None:
            offset = self._ends[self._low - 1]
            self.on_checkpoint(Checkpoint(offset, offset is None, self._committed.counters()))

    def _target_points(self, work: _PageWork) -> list[Point]:
        if not work.points:
            return []
        vectors = work.vectors
        if vectors is None:  # every text was embedded, so this cannot be None; be explicit
            raise RuntimeError("page has points but no vectors")
        out = []
        for point, index in zip(work.points, work.text_index, strict=True):
            if isinstance(index, list):  # chunk-mean: the mean of the pieces, renormalised
                point.vectors[self.vector] = l2_normalize(
                    vectors[index].mean(axis=0, keepdims=True))[0]
            else:
                point.vectors[self.vector] = vectors[index]
            out.append(point)
        return out


def _checked(vectors: np.ndarray, expected: int, dims: int) -> np.ndarray:
    """The last check before a vector is written: shape and finite values."""
    if vectors.shape != (expected, dims) or not np.isfinite(vectors).all():
        raise ProviderResponseError(
            f"An embedding batch of shape {vectors.shape} with non-finite values or the wrong "
            f"size reached the writer (expected ({expected}, {dims})); nothing was written."
        )
    return vectors
