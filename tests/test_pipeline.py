"""The staged engine with fakes: batching, overlap, bounded memory, no half-written pages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import pytest

from migrator.catalog import ModelSpec
from migrator.embedding.base import Embedder, Embedding, InputKind
from migrator.errors import ProviderResponseError
from migrator.pipeline import Pipeline, SkipLog
from migrator.store import Page, Point
from migrator.texts import TextSource

SPEC = ModelSpec("fake", "fake", 4, max_inputs=8, max_tokens_per_input=100)


class FakeEmbedder(Embedder):
    """Counts batches and tracks how many calls overlap."""

    spec = SPEC

    def __init__(self, *, batch_size: int = 8, delay: float = 0.0, fail_on: str | None = None
                 ) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.active = 0
        self.max_active = 0
        self._batch_size = batch_size

    @property
    def dims(self) -> int:
        return 4

    @property
    def batch_size(self) -> int:
        return self._batch_size

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            if self.fail_on is not None and self.fail_on in texts:
                raise ProviderResponseError("fake provider failed")
            self.batches.append(list(texts))
            vectors = np.array([[len(t), 1, 0, 0] for t in texts], dtype=np.float32)
            return Embedding(vectors, tokens=len(texts))
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        return None


class ListSource:
    def __init__(self, n: int, page_size: int) -> None:
        self.points = [Point(i, {"text": f"text {i}"}, {}) for i in range(n)]
        self.page_size = page_size
        self.position = 0

    def next_page(self) -> Page | None:
        chunk = self.points[self.position: self.position + self.page_size]
        self.position += self.page_size
        return Page(chunk, self.position if self.position < len(self.points) else None)


def backfill(source: ListSource, embedder: FakeEmbedder, written: list[list[Point]], *,
             concurrency: int = 4, queue_depth: int = 2, write_delay: float = 0.0) -> Pipeline:
    def write(points: list[Point]) -> None:
        time.sleep(write_delay)
        written.append(points)

    return Pipeline(source=source, write=write, embedder=embedder,  # type: ignore[arg-type]
                    text=TextSource("text"), vector="", dims=4,
                    skip_log=SkipLog(None, collection="c"), concurrency=concurrency,
                    queue_depth=queue_depth)


def test_every_point_written_once_in_batches_of_the_provider_size() -> None:
    embedder, written = FakeEmbedder(batch_size=8), []
    stats = asyncio.run(backfill(ListSource(100, 20), embedder, written).run())
    ids = sorted(p.id for page in written for p in page)
    assert ids == list(range(100))
    assert all(len(b) <= 8 for b in embedder.batches)
    assert (stats.read, stats.written, stats.embedded, stats.pages) == (100, 100, 100, 5)
    point = written[0][0]
    np.testing.assert_array_equal(point.vectors[""], [len(point.payload["text"]), 1, 0, 0])


def test_the_embedder_settles_once_its_last_answer_is_in_before_the_last_write() -> None:
    """The cache indexes in the background while the last pages are written, not after."""
    events: list[str] = []

    class Settling(FakeEmbedder):
        async def embed(self, texts: Sequence[str], *, kind: InputKind = "document"
                        ) -> Embedding:
            events.append("embed")
            return await super().embed(texts, kind=kind)

        def settle(self) -> None:
            events.append("settle")

    def write(points: list[Point]) -> None:
        time.sleep(0.01)
        events.append("write")

    run = Pipeline(source=ListSource(60, 10), write=write,  # type: ignore[arg-type]
                   embedder=Settling(batch_size=10), text=TextSource("text"), vector="",
                   dims=4, skip_log=SkipLog(None, collection="c"), queue_depth=2)
    asyncio.run(run.run())
    assert events.count("settle") == 1
    settled = events.index("settle")
    assert "embed" not in events[settled:]  # after every answer
    assert "write" in events[settled:]  # while pages are still being written


def test_requests_overlap_up_to_the_concurrency() -> None:
    embedder, written = FakeEmbedder(batch_size=5, delay=0.02), []
    asyncio.run(backfill(ListSource(200, 20), embedder, written, concurrency=6).run())
    assert embedder.max_active == 6


def test_points_in_flight_stay_bounded_under_a_slow_writer() -> None:
    page_size, queue_depth, concurrency = 10, 2, 3
    embedder, written = FakeEmbedder(batch_size=10), []
    run = backfill(ListSource(400, page_size), embedder, written, concurrency=concurrency,
                   queue_depth=queue_depth, write_delay=0.01)
    stats = asyncio.run(run.run())
    assert stats.written == 400
    assert stats.max_points_in_flight <= run.in_flight_bound(page_size) == 130
    assert stats.max_points_in_flight < 400 / 2


def test_a_failure_stops_the_run_without_half_written_pages() -> None:
    embedder, written = FakeEmbedder(batch_size=4, fail_on="text 45"), []
    with pytest.raises(ProviderResponseError):
        asyncio.run(backfill(ListSource(100, 10), embedder, written).run())
    pages = [sorted(p.id for p in page) for page in written]
    assert all(page == list(range(page[0], page[0] + 10)) for page in pages)
    assert all(40 not in page for page in pages)


def test_non_finite_vectors_never_reach_the_writer() -> None:
    class NaNEmbedder(FakeEmbedder):
        async def embed(self, texts: Sequence[str], *, kind: InputKind = "document"
                        ) -> Embedding:
            return Embedding(np.full((len(texts), 4), np.nan, dtype=np.float32), 1)

    written: list[list[Point]] = []
    with pytest.raises(ProviderResponseError, match="nothing was written"):
        asyncio.run(backfill(ListSource(10, 5), NaNEmbedder(), written).run())
    assert written == []
