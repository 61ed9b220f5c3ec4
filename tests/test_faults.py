"""Faults from the provider, injected by the loopback server: each migration either
completes with every point correct, or stops with a clear message and nothing written wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from migrator import (
    CollectionSettings,
    MigrationSettings,
    MigratorError,
    Progress,
    ProviderSettings,
    Settings,
    migrate,
)
from migrator.embedding.http import SAME_WRONG_ANSWERS
from migrator.settings import VerifySettings
from migrator.store import QdrantStore

from .conftest import make_collection
from .loopback import Fault, LoopbackServer, vector_for

OK = Fault(0)  # answer normally
PROBE = [OK, OK]  # the preflight probe sends its texts in two requests
DIMS = 8


def nan_body() -> bytes:
    return (b'{"data": [' + b",".join(
        b'{"index": %d, "embedding": [NaN, 0, 0, 0, 0, 0, 0, 0]}' % i for i in range(8))
        + b'], "usage": {"prompt_tokens": 1}}')


def wrong_size_body() -> dict[str, object]:
    return {"data": [{"index": i, "embedding": [0.1] * 5} for i in range(8)]}


def missing_index_body() -> dict[str, object]:
    return {"data": [{"index": 0, "embedding": [0.1] * DIMS}] * 8}


TRANSIENT = {  # the run completes: retried, or asked for once more
    "503 burst": [Fault(503, {"error": {"message": "overloaded"}})] * 3,
    "429 with headers": [Fault(429, {"error": {"message": "Rate limit reached",
                                               "code": "rate_limit_exceeded"}},
                               {"retry-after-ms": "20", "x-ratelimit-remaining-tokens": "0",
                                "x-ratelimit-reset-tokens": "20ms"})] * 2,
    "timeout": [Fault(0, stall=1.5)],
    "connection reset": [Fault(0, reset=True)],
    "malformed JSON once": [Fault(200, raw=b"{not json")],
    "NaN once": [Fault(200, raw=nan_body())],
    # different bad answers in a row are faults, retried like a 5xx (they stopped the run
    # at the second)
    "three different bad answers": [Fault(200, raw=nan_body()), Fault(200, wrong_size_body()),
                                    Fault(200, missing_index_body())],
}
# The run stops with a message naming the problem. The same bad answer comes
# SAME_WRONG_ANSWERS times to each of the two requests in flight: that is the server's way.
BAD = 2 * SAME_WRONG_ANSWERS
FATAL = {
    "HTTP 200 with an error body": ([Fault(200, {"error": {"code": 502,
                                                           "message": "upstream down"}})] * BAD,
                                    "upstream down"),
    "wrong dimensions": ([Fault(200, wrong_size_body())] * BAD, "5 values, expected 8"),
    "NaN": ([Fault(200, raw=nan_body())] * BAD, "NaN or infinite"),
    "missing indices": ([Fault(200, missing_index_body())] * BAD, "repeated or out-of-range"),
    "400": ([Fault(400, {"error": {"message": "Invalid input"}})], "HTTP 400: Invalid input"),
}


def settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        provider=ProviderSettings(name="openai-compatible", model="faulty", base_url=url,
                                  dimensions=DIMS, batch_size=8, concurrency=2, timeout=1.0,
                                  max_retries=4),
        collections=[CollectionSettings(name="docs", alias="live")],
        migration=MigrationSettings(state_dir=tmp_path / "s", page_size=8, cache=False),
        verify=VerifySettings(enabled=False),
    )


def written_correctly(store: QdrantStore, collection: str) -> int:
    """Every point written has the vector of its own text; how many there are."""
    if collection not in store.collection_names():
        return 0
    points, _ = store.client.scroll(collection, limit=10_000, with_vectors=True)
    for point in points:
        np.testing.assert_allclose(point.vector, vector_for(point.payload["text"], DIMS),
                                   atol=1e-6)
    return len(points)


@pytest.mark.parametrize("name", sorted(TRANSIENT))
def test_transient_faults_complete_with_every_point_right(name: str, memory_store: QdrantStore,
                                                          tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=48)
    with LoopbackServer(dims=DIMS) as server:
        server.faults.extend([*PROBE, *TRANSIENT[name]])
        result = migrate(settings(tmp_path, server.url), source_store=memory_store)
    target = result.collections[0].target
    assert written_correctly(memory_store, target) == 48
    assert memory_store.aliases() == {"live": target}


def test_progress_events_count_429s_and_retries(memory_store: QdrantStore,
                                                tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=48)
    events: list[Progress] = []
    with LoopbackServer(dims=DIMS) as server:
        server.faults.extend([*PROBE, *TRANSIENT["429 with headers"],
                              *TRANSIENT["503 burst"][:1]])
        migrate(settings(tmp_path, server.url), source_store=memory_store,
                on_progress=events.append)
    last = [e for e in events if e.collection == "docs"][-1]  # the backfill, not catch-up
    assert last.written == 48
    assert last.throttled == 2 and last.retries == 3  # two 429s and one 503, each retried


def test_bad_answers_are_retried_and_counted_by_cause(memory_store: QdrantStore,
                                                     tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=48)
    with LoopbackServer(dims=DIMS) as server:
        server.faults.extend([*PROBE, *TRANSIENT["three different bad answers"]])
        result = migrate(settings(tmp_path, server.url), source_store=memory_store)
    assert result.bill.http is not None
    assert result.bill.http["retries"] == {"invalid answer": 3}
    assert written_correctly(memory_store, result.collections[0].target) == 48


@pytest.mark.parametrize("name", sorted(FATAL))
def test_fatal_faults_stop_cleanly(name: str, memory_store: QdrantStore,
                                   tmp_path: Path) -> None:
    faults, message = FATAL[name]
    make_collection(memory_store.client, "docs", n=48)
    with LoopbackServer(dims=DIMS) as server:
        server.faults.extend([*PROBE, *faults])
        with pytest.raises(MigratorError, match=message) as caught:
            migrate(settings(tmp_path, server.url), source_store=memory_store)
    assert "no alias was moved" in str(caught.value)
    assert memory_store.aliases() == {}
    assert written_correctly(memory_store, "docs__faulty-8") < 48


def test_shuffled_indices_are_put_back_in_order(memory_store: QdrantStore,
                                                tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=48)
    with LoopbackServer(dims=DIMS, shuffle=True) as server:
        result = migrate(settings(tmp_path, server.url), source_store=memory_store)
    assert written_correctly(memory_store, result.collections[0].target) == 48
