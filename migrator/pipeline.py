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
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import ProviderResponseError
from .providers.base import Embedder
from .store import Page, Point, PointId
from .texts import TextSource


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
    embed_seconds: float = 0.0
    pages: int = 0
    max_points_in_flight: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


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


@dataclass
class _PageWork:
    seq: int
    points: list[Point]  # the points that will be written
    text_index: list[int]  # for each point, its row in `unique_texts`
    unique_texts: list[str]
    vectors: np.ndarray | None = None
    pending: int = 0
    read: int = 0


@dataclass
class _Request:
    page: _PageWork
    start: int
    stop: int


_DONE: Any = object()


@dataclass
class Backfill:
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
    """

    source: PageSource
    write: Callable[[list[Point]], None]
    embedder: Embedder
    text: TextSource
    vector: str
    dims: int
    skip_log: SkipLog
    collection: str = ""
    total: int | None = None
    concurrency: int = 4
    queue_depth: int = 4
    on_progress: Callable[[Progress], None] | None = None
    stats: Stats = field(default_factory=Stats)
    _in_flight: int = 0

    def in_flight_bound(self, page_size: int) -> int:
        """The most points held at once with pages of `page_size`: pages queued for prepare,
        the one prepare holds, one per queued request and per worker (a request may be a
        whole page), pages queued for the writer, the one being written, the one the reader
        holds."""
        pages = (self.queue_depth + 1 + max(self.concurrency, self.queue_depth)
                 + self.concurrency + self.queue_depth + 1 + 1)
        return pages * page_size

    async def run(self) -> Stats:
        pages: asyncio.Queue[Any] = asyncio.Queue(self.queue_depth)
        requests: asyncio.Queue[Any] = asyncio.Queue(max(self.concurrency, self.queue_depth))
        done: asyncio.Queue[Any] = asyncio.Queue(self.queue_depth)
        workers = [self._embed_worker(requests, done) for _ in range(self.concurrency)]

        async def embed_stage() -> None:
            await _gather_or_cancel(*workers)
            await done.put(_DONE)

        await _gather_or_cancel(
            self._read(pages),
            self._prepare(pages, requests, done),
            embed_stage(),
            self._write(done),
        )
        return self.stats

    async def _read(self, pages: asyncio.Queue[Any]) -> None:
        seq = 0
        while True:
            page = await asyncio.to_thread(self.source.next_page)
            if page is None:
                break
            if page.points:
                self._in_flight += len(page.points)
                self.stats.max_points_in_flight = max(self.stats.max_points_in_flight,
                                                      self._in_flight)
                await pages.put((seq, page))
                seq += 1
            if page.next_offset is None:
                break
        await pages.put(_DONE)

    async def _prepare(self, pages: asyncio.Queue[Any], requests: asyncio.Queue[Any],
                       done: asyncio.Queue[Any]) -> None:
        batch = self.embedder.batch_size
        while (item := await pages.get()) is not _DONE:
            seq, page = item
            work = self._page_work(seq, page.points)
            if not work.unique_texts:
                await done.put(work)
                continue
            starts = range(0, len(work.unique_texts), batch)
            work.pending = len(starts)
            for start in starts:
                stop = min(start + batch, len(work.unique_texts))
                await requests.put(_Request(work, start, stop))
        for _ in range(self.concurrency):
            await requests.put(_DONE)

    def _page_work(self, seq: int, points: list[Point]) -> _PageWork:
        self.stats.read += len(points)
        keep: list[Point] = []
        text_index: list[int] = []
        unique: dict[str, int] = {}
        for point in points:
            text, reason = self.text.extract(point.payload)
            if text is None:
                self.skip_log.add(point.id, reason)
                self.stats.skipped += 1
                continue
            keep.append(point)
            text_index.append(unique.setdefault(text, len(unique)))
        return _PageWork(seq, keep, text_index, list(unique), read=len(points))

    async def _embed_worker(self, requests: asyncio.Queue[Any], done: asyncio.Queue[Any]) -> None:
        while (request := await requests.get()) is not _DONE:
            work: _PageWork = request.page
            texts = work.unique_texts[request.start : request.stop]
            started = time.perf_counter()
            result = await self.embedder.embed(texts, kind="document")
            self.stats.embed_seconds += time.perf_counter() - started
            self.stats.requests += 1
            self.stats.retries += result.retries
            self.stats.tokens += result.tokens
            self.stats.tokens_estimated |= result.tokens_estimated
            self.stats.embedded += len(texts)
            if work.vectors is None:
                work.vectors = np.empty((len(work.unique_texts), self.dims), dtype=np.float32)
            work.vectors[request.start : request.stop] = _checked(result.vectors, len(texts),
                                                                 self.dims)
            work.pending -= 1
            if work.pending == 0:
                await done.put(work)

    async def _write(self, done: asyncio.Queue[Any]) -> None:
        while (work := await done.get()) is not _DONE:
            points = self._target_points(work)
            if points:
                await asyncio.to_thread(self.write, points)
            self.stats.written += len(points)
            self.stats.pages += 1
            self._in_flight -= work.read
            if self.on_progress is not None:
                self.on_progress(Progress(self.collection, self.total, self.stats.read,
                                          self.stats.written, self.stats.skipped,
                                          self.stats.tokens))

    def _target_points(self, work: _PageWork) -> list[Point]:
        if not work.points:
            return []
        vectors = work.vectors
        if vectors is None:  # every text was embedded, so this cannot be None; be explicit
            raise RuntimeError("page has points but no vectors")
        rows = vectors[np.asarray(work.text_index)]
        out = []
        for point, row in zip(work.points, rows, strict=True):
            point.vectors[self.vector] = row
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


async def _gather_or_cancel(*coros: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None:
    """Run coroutines together; on the first failure cancel the rest and re-raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
