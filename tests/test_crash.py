"""Crash safety: SIGKILL a migration at random moments, resume it, compare."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from migrator import migrate, open_store
from migrator.settings import StoreSettings

from .conftest import make_collection
from .crash_worker import PAGE, settings
from .loopback import LoopbackServer, vector_for

ROOT = Path(__file__).resolve().parent.parent
POINTS = 320
CONCURRENCY = 3


def run_worker(store: Path, state: Path, server: LoopbackServer, mode: str,
               kill_at: tuple[int, float] | None, *extra: str) -> int:
    """Run the worker; with `kill_at` (requests, delay), SIGKILL it that long after the
    server has seen that many requests: a random moment inside the run."""
    child = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(store),
                              str(state), server.url, mode, *extra], cwd=ROOT)
    if kill_at is not None:
        requests, delay = kill_at
        deadline = time.monotonic() + 60
        while server.requests < requests and child.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        time.sleep(delay)
        child.kill()
    return child.wait(timeout=120)


def _moment(seed: int) -> tuple[int, float]:
    rng = random.Random(seed)
    return rng.randint(2, POINTS // PAGE - 2), rng.uniform(0.0, 0.03)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "kill_at"), [
    ("write:3", None), ("write:11", None), ("checkpoint:2", None), ("checkpoint:9", None),
    *[("none", _moment(seed)) for seed in (1, 2, 3, 4)],
])
def test_kill_then_resume_gives_the_source_exactly(tmp_path: Path, mode: str,
                                                   kill_at: tuple[int, float] | None) -> None:
    store_path, state = tmp_path / "q", tmp_path / "state"
    client = QdrantClient(path=str(store_path))
    make_collection(client, "docs", n=POINTS)
    client.close()
    with LoopbackServer(dims=8, latency=0.02) as server:
        code = run_worker(store_path, state, server, mode, kill_at)
        assert code != 0, "the worker was meant to die"
        first_run = server.texts

        result = migrate(settings(store_path, state, server.url))

        outcome = result.collections[0]
        repeated = sum(n - 1 for n in server.seen.values() if n > 1)
    store = open_store(StoreSettings(path=store_path))
    try:
        source, _ = store.client.scroll("docs", limit=10_000)
        target, _ = store.client.scroll(outcome.target, limit=10_000, with_vectors=True)
        assert {p.id for p in target} == {p.id for p in source}
        by_id = {p.id: p for p in source}
        for point in target:
            assert point.payload == by_id[point.id].payload
            np.testing.assert_allclose(point.vector, vector_for(point.payload["text"], 8),
                                       atol=1e-6)
        assert store.aliases() == {"live": outcome.target}
    finally:
        store.close()
    # texts paid twice: only the requests in flight when the worker died (each answer is
    # committed to the cache before its vectors go on; the probe's are cached too)
    assert repeated <= CONCURRENCY * PAGE, (mode, first_run, repeated)
    assert outcome.resumed or first_run <= PAGE


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["write:3", "checkpoint:4"])
def test_kill_9_in_place_then_resume(tmp_path: Path, mode: str) -> None:
    """In place: SIGKILL inside a write of the new vectors (or a checkpoint), then resume:
    every point gets the new vector of its own text once, and nothing else changes."""
    store_path, state = tmp_path / "q", tmp_path / "state"
    client = QdrantClient(path=str(store_path))
    make_collection(client, "docs", n=POINTS)
    client.close()
    client = QdrantClient(path=str(store_path))  # read as a reopened store reads it
    before = {p.id: (p.payload, p.vector) for p in client.scroll(
        "docs", limit=10_000, with_vectors=True)[0]}
    client.close()
    with LoopbackServer(dims=8, latency=0.02) as server:
        assert run_worker(store_path, state, server, mode, None, "in-place") != 0
        result = migrate(settings(store_path, state, server.url, strategy="in-place"))
        repeated = sum(n - 1 for n in server.seen.values() if n > 1)
    assert result.collections[0].resumed and result.collections[0].target_count == POINTS
    store = open_store(StoreSettings(path=store_path))
    try:
        after, _ = store.client.scroll("docs", limit=10_000, with_vectors=True)
        assert {p.id for p in after} == set(before)
        for point in after:
            payload, vector = before[point.id]
            assert point.payload == payload
            np.testing.assert_allclose(point.vector[""], vector, rtol=1e-6)
            np.testing.assert_allclose(point.vector["v2"], vector_for(payload["text"], 8),
                                       atol=1e-6)
    finally:
        store.close()
    assert repeated <= CONCURRENCY * PAGE
