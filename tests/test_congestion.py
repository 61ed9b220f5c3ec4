"""Issue 14.1: the requests in flight follow the server. A server that answers one request
at a time (a model on a CPU) made a run at the default concurrency time out on every
request it queued, and each retry added the same work again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from migrator import (
    CollectionSettings,
    MigrationSettings,
    ProviderSettings,
    Settings,
    StoreSettings,
    migrate,
)
from migrator.embedding import build_embedder
from migrator.embedding.congestion import AdaptiveConcurrency
from migrator.settings import VerifySettings

from .conftest import make_collection
from .loopback import LoopbackServer, vector_for

N = 320


def test_the_limit_grows_to_the_ceiling_while_answers_are_steady() -> None:
    limit = AdaptiveConcurrency(8)
    limit.overloaded()
    assert limit.allowed == 4
    for _ in range(40):
        limit.answered(0.1, 16)
    assert limit.allowed == 8 and limit.lowest == 4


def test_queueing_latency_shrinks_the_limit() -> None:
    limit = AdaptiveConcurrency(8)
    for _ in range(10):
        limit.answered(0.1, 10)
    for _ in range(10):
        limit.answered(0.5, 10)  # the same texts, five times slower: queued
    assert limit.allowed < 8


def test_a_slot_waits_for_the_limit() -> None:
    async def run() -> int:
        limit = AdaptiveConcurrency(4)
        limit.overloaded()
        limit.overloaded()  # one allowed
        most = 0

        async def request() -> None:
            nonlocal most
            async with limit.slot():
                most = max(most, limit.in_flight)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(request() for _ in range(6)))
        return most

    assert asyncio.run(run()) == 1


def test_a_one_request_at_a_time_server_is_not_flooded(tmp_path: Path) -> None:
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    make_collection(client, "docs", n=N)
    client.close()
    # 16 texts take 128 ms; the ceiling of 8 queues 1 s against a 500 ms timeout (a request
    # alone keeps a margin of 4x for a machine under load)
    with LoopbackServer(dims=8, serial=True, per_text=0.008) as server:
        settings = Settings(
            source=StoreSettings(path=store),
            provider=ProviderSettings(name="openai-compatible", model="m", base_url=server.url,
                                      batch_size=16, concurrency=8, timeout=0.5,
                                      max_retries=4),
            collections=[CollectionSettings(name="docs")],
            migration=MigrationSettings(state_dir=tmp_path / "s", page_size=16),
            verify=VerifySettings(enabled=False),
        )
        result = migrate(settings)
        wasted = server.texts - N
    http = result.bill.http
    assert http is not None and http["lowest_concurrency"] < 8
    assert wasted <= 8 * 16  # at most the first flood's abandoned requests
    points, _ = QdrantClient(path=str(store)).scroll(result.collections[0].target,
                                                      limit=N, with_vectors=True)
    assert len(points) == N
    for point in points:
        np.testing.assert_allclose(point.vector, vector_for(point.payload["text"], 8),
                                   atol=1e-6)


def test_small_requests_say_nothing_of_queueing() -> None:
    """A fixed-latency server answers 8 texts as slowly as 64: per text, 8x slower."""
    limit = AdaptiveConcurrency(8)
    for _ in range(10):
        limit.answered(0.05, 64)
    for _ in range(10):
        limit.answered(0.05, 8)
    assert limit.allowed == 8


def test_a_server_fast_only_for_a_while_is_not_taken_for_a_queue_for_good() -> None:
    """Ten answers came in a lull of the server's other load, 7x faster than every one
    after it, however few were in flight: measured against them, the steady latency read
    as queueing, and the limit stayed at one request in flight for the next 57 answers
    (until the lull's answers left the window), a quarter of what the server answers at."""
    limit = AdaptiveConcurrency(4)
    for _ in range(10):
        limit.answered(0.006, 8)
    for _ in range(40):
        limit.answered(0.044, 8)
    assert limit.allowed == 4 and limit.lowest == 1


def test_a_server_without_tcp_nodelay_is_not_taken_for_a_queueing_one() -> None:
    """A server that writes a reply's headers and body apart without TCP_NODELAY answers a
    connection's first request at once and every later one after the client's delayed ACK
    (about 40 ms). Measured against those first answers, the later ones read as queueing:
    the run fell to one request in flight and went five times slower than the server
    serves (400 requests: 13 s against 2.7 s at the ceiling)."""
    with LoopbackServer(dims=8, latency=0.005, nagle=True) as server:
        embedder = build_embedder(ProviderSettings(
            name="openai-compatible", model="m", base_url=server.url, dimensions=8,
            concurrency=8, batch_size=8))

        async def run() -> None:
            await asyncio.gather(*(embedder.embed([f"text {i} {j}" for j in range(8)])
                                   for i in range(120)))
            await embedder.aclose()

        asyncio.run(run())
    assert embedder.metrics.lowest_concurrency >= 4


def test_answers_on_fresh_connections_are_not_measured_beside_kept_alive_ones() -> None:
    limit = AdaptiveConcurrency(4)
    for _ in range(4):
        limit.answered(0.006, 8, fresh=True)  # a connection's first answer: no ACK to wait
    for _ in range(40):
        limit.answered(0.044, 8)
        limit.answered(0.001, 8, fresh=True)  # a new connection now and then
    assert limit.allowed == 4 and limit.lowest == 4
    closing = AdaptiveConcurrency(4)  # a server that closes every connection
    for _ in range(10):
        closing.answered(0.1, 10, fresh=True)
    for _ in range(10):
        closing.answered(0.5, 10, fresh=True)  # still measured: queued
    assert closing.allowed < 4
