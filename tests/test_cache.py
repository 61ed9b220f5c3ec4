"""The embedding cache's store: a vector log committed answer by answer, indexed by key in
bulk; and what happens to it across crashes, replacements and schema upgrades."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from migrator.catalog import ModelSpec
from migrator.databases import CACHE_FILE, open_db
from migrator.embedding import compose
from migrator.embedding.base import Embedder, Embedding, InputKind
from migrator.embedding.cache import INLINE_BYTES, _token_shares, cache_clear
from migrator.errors import StateError
from migrator.vector_cache import WAL_BYTES, EmbeddingCache

from .conftest import held_by_a_child


def key(n: int) -> bytes:
    return EmbeddingCache.key("ns", f"text {n}")


def rows(n: int, value: float, dims: int = 4) -> np.ndarray:
    return np.full((n, dims), value, dtype=np.float32)


def test_a_vector_is_found_before_and_after_it_is_indexed(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many("ns", [key(i) for i in range(10)], rows(10, 1.0), [3] * 10)
        found = cache.get_many("ns", [key(i) for i in range(12)])
        assert sorted(found) == sorted(key(i) for i in range(10))  # from the log's tail
        assert cache.stats().entries == 0  # not indexed yet
    with EmbeddingCache(tmp_path) as cache:
        found = cache.get_many("ns", [key(i) for i in range(12)])
        assert len(found) == 10 and cache.stats().entries == 10
        vector, tokens = found[key(3)]
        np.testing.assert_array_equal(vector, np.ones(4))
        assert tokens == 3


def test_a_key_stored_again_keeps_only_its_newest_vector(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many("ns", [key(1), key(2)], rows(2, 1.0), [1, 1])
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many("ns", [key(1)], rows(1, 2.0), [1])  # replaces an indexed row
        cache.put_many("ns", [key(2)], rows(1, 3.0), [1])
        cache.put_many("ns", [key(2)], rows(1, 4.0), [1])  # and a row of its own tail
        assert cache.get_many("ns", [key(1)])[key(1)][0][0] == 2.0
        assert cache.get_many("ns", [key(2)])[key(2)][0][0] == 4.0
    with EmbeddingCache(tmp_path) as cache:
        found = cache.get_many("ns", [key(1), key(2)])
        assert (found[key(1)][0][0], found[key(2)][0][0]) == (2.0, 4.0)
        assert cache.stats().entries == 2
    db = sqlite3.connect(tmp_path / CACHE_FILE)
    assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 2  # no orphan rows
    db.close()


def test_a_crashed_runs_tail_is_indexed_by_the_next_open(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put_many("ns", [key(i) for i in range(5)], rows(5, 1.0), [1] * 5)
    cache._db.close()  # a `kill -9`: committed, never indexed, never closed
    cache._reader.close()
    cache._in_use.close()  # the system drops a dead process's lock
    with EmbeddingCache(tmp_path) as again:
        assert again.stats().entries == 5
        assert len(again.get_many("ns", [key(i) for i in range(5)])) == 5


def orphans(directory: Path) -> int:
    """Rows of the vector log no key points to (space nothing can read)."""
    db = sqlite3.connect(directory / CACHE_FILE)
    try:
        return int(db.execute("SELECT (SELECT COUNT(*) FROM vectors) - "
                              "(SELECT COUNT(*) FROM vector_keys)").fetchone()[0])
    finally:
        db.close()


def test_a_crashed_tail_that_stores_keys_again_leaves_no_orphan_rows(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many("ns", [key(1)], rows(1, 1.0), [1])
    cache = EmbeddingCache(tmp_path)
    cache.put_many("ns", [key(1), key(2)], rows(2, 2.0), [1, 1])  # replaces an indexed row
    cache.put_many("ns", [key(2)], rows(1, 3.0), [1])  # and one of the tail's own
    cache._db.close()  # a `kill -9`: what the cache noted while appending is gone
    cache._reader.close()
    cache._in_use.close()  # the system drops a dead process's lock
    with EmbeddingCache(tmp_path) as again:
        found = again.get_many("ns", [key(1), key(2)])
        assert (found[key(1)][0][0], found[key(2)][0][0]) == (2.0, 3.0)
    assert orphans(tmp_path) == 0


def test_a_key_given_twice_in_one_answer_keeps_its_later_vector(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        vectors = np.vstack([rows(1, 1.0), rows(1, 2.0)])
        cache.put_many("ns", [key(1), key(1)], vectors, [1, 1])
        assert cache.get_many("ns", [key(1)])[key(1)][0][0] == 2.0
    with EmbeddingCache(tmp_path) as cache:
        assert cache.get_many("ns", [key(1)])[key(1)][0][0] == 2.0
    assert orphans(tmp_path) == 0


def test_two_caches_appending_to_one_file_leave_no_orphan_rows(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as first, EmbeddingCache(tmp_path) as second:
        first.put_many("fresh", [key(1)], rows(1, 1.0), [1])
        second.put_many("fresh", [key(1)], rows(1, 2.0), [1])  # neither knows of the other
        first.put_many("fresh", [key(2)], rows(1, 3.0), [1])
    with EmbeddingCache(tmp_path) as cache:
        assert cache.get_many("fresh", [key(1)])[key(1)][0][0] == 2.0
        assert cache.stats().entries == 2
    assert orphans(tmp_path) == 0


def test_a_version_1_cache_is_upgraded_with_its_vectors(tmp_path: Path) -> None:
    from migrator.vector_cache import CACHE_SCHEMA

    db = open_db(tmp_path / CACHE_FILE, CACHE_SCHEMA[:1])
    db.executemany("INSERT INTO embeddings VALUES (?, 4, ?, 7, 0)",
                   [(key(i), rows(1, float(i))[0].astype("<f4").tobytes()) for i in range(3)])
    db.close()
    with EmbeddingCache(tmp_path) as cache:
        found = cache.get_many("ns", [key(i) for i in range(3)])
        assert [found[key(i)][0][0] for i in range(3)] == [0.0, 1.0, 2.0]
        assert found[key(2)][1] == 7 and cache.stats().entries == 3
        assert cache.clear() == 3 and cache.get_many("ns", [key(0)]) == {}


def test_a_new_cache_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    from migrator.vector_cache import CACHE_SCHEMA, PAGE_BYTES

    def page_size(directory: Path) -> int:
        with sqlite3.connect(directory / CACHE_FILE) as db:
            return int(db.execute("PRAGMA page_size").fetchone()[0])

    EmbeddingCache(tmp_path / "new").close()
    open_db(tmp_path / "old" / CACHE_FILE, CACHE_SCHEMA).close()
    with EmbeddingCache(tmp_path / "old") as cache:
        cache.put_many("ns", [key(1)], rows(1, 1.0), [3])
        cache.put_many("ns", [key(2)], rows(1, 2.0), [3], wait=False)
    with EmbeddingCache(tmp_path / "old") as cache:
        assert cache.get_many("ns", [key(1), key(2)])[key(2)][0][0] == 2.0
    assert page_size(tmp_path / "new") == PAGE_BYTES != 4096
    assert page_size(tmp_path / "old") == 4096


def statements(db: sqlite3.Connection) -> list[str]:
    """Every statement `db` runs from now on (an `executemany` runs one per row)."""
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    return seen


def test_an_answer_is_stored_by_one_statement(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`executemany` steps SQLite once per row and gives up the GIL at each step: beside a
    busy thread (the store's), 20,000 rows took 42 s instead of 0.07 s."""
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many("ns", [key(0)], rows(1, 0.0), [1])  # lists the namespace first
        run = statements(cache._db)
        cache.put_many("ns", [key(i) for i in range(1, 301)], rows(300, 1.0), [1] * 300)
        assert len(run) == 1 and run[0].startswith("INSERT INTO vectors")
        # on the event loop likewise: no statement to set a busy timeout and back
        on_loop = statements(cache._impatient)
        cache.put_many("ns", [key(i) for i in range(331, 341)], rows(10, 1.0), [1] * 10,
                       wait=False)
        assert len(run) == 1 and len(on_loop) == 1 and on_loop[0].startswith("INSERT")
        monkeypatch.setattr("migrator.vector_cache.ROWS_PER_INSERT", 7)  # more than one
        cache.put_many("ns", [key(i) for i in range(301, 331)],
                       np.arange(30, dtype=np.float32)[:, None].repeat(4, axis=1),
                       list(range(100, 130)))
        found = cache.get_many("ns", [key(i) for i in range(341)])  # from the log's tail
        assert len(found) == 341 and [found[key(301 + i)][0][0] for i in range(30)] == list(
            range(30))
        assert [found[key(301 + i)][1] for i in range(30)] == list(range(100, 130))
        with pytest.raises(ValueError, match="32 bytes"):
            cache.put_many("ns", [b"short"], rows(1, 1.0), [1])
    with EmbeddingCache(tmp_path) as cache:
        found = cache.get_many("ns", [key(i) for i in range(341)])  # from the index
        assert len(found) == 341 and found[key(330)][0][0] == 29 and found[key(330)][1] == 129


def test_a_namespace_the_cache_never_held_is_not_looked_up(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many("ns", [key(i) for i in range(3)], rows(3, 1.0), [1] * 3)
    with EmbeddingCache(tmp_path) as cache:
        run = statements(cache._reader)
        assert cache.get_many("another model", [key(0)]) == {} and run == []
        assert len(cache.get_many("ns", [key(i) for i in range(3)])) == 3 and run
        cache.put_many("another model", [key(9)], rows(1, 2.0), [1])
        assert cache.get_many("another model", [key(9)])[key(9)][0][0] == 2.0  # its tail
        cache.clear()
        assert cache.get_many("ns", [key(0)]) == {}
        cache.put_many("ns", [key(0)], rows(1, 3.0), [1])  # listed again after the clear
    with EmbeddingCache(tmp_path) as cache:
        assert cache.get_many("ns", [key(0)])[key(0)][0][0] == 3.0


def test_a_requests_tokens_are_shared_by_length_and_add_up_exactly() -> None:
    # 3 characters a token: estimates 1, 2, 4 (an empty text counts as one)
    assert _token_shares(["", "abcd", "a" * 12], 14) == [2, 4, 8]
    assert _token_shares(["ab", "ab", "ab"], 4) == [2, 1, 1]  # the remainder goes first
    assert _token_shares(["ab", "abcdefgh"], 0) == [0, 0]
    rng = np.random.default_rng(7)
    for _ in range(200):
        texts = ["x" * int(n) for n in rng.integers(0, 60, size=int(rng.integers(1, 40)))]
        total = int(rng.integers(0, 5000))
        shares = _token_shares(texts, total)
        assert sum(shares) == total and min(shares) >= 0 and len(shares) == len(texts)


class Counting(Embedder):
    """Answers at once with vectors of ones and keeps every text it was sent."""

    spec = ModelSpec("counting", "m", 4, max_inputs=4096, max_tokens_per_input=100)
    batch_size = 4096

    def __init__(self, dims: int = 4) -> None:
        self.sent: list[str] = []
        self._dims = dims

    @property
    def dims(self) -> int:
        return self._dims

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        self.sent.extend(texts)
        return Embedding(np.ones((len(texts), self._dims), dtype=np.float32), len(texts))

    async def aclose(self) -> None:
        return None


def test_a_text_given_twice_in_one_call_is_sent_once(tmp_path: Path) -> None:
    provider = Counting()
    with EmbeddingCache(tmp_path) as cache:
        stack = compose(provider, cache)
        result = asyncio.run(stack.embed(["a", "b", "a"]))
        asyncio.run(stack.release())
    assert provider.sent == ["a", "b"] and result.vectors.shape == (3, 4)
    assert result.cached == 1


def test_a_small_answer_is_committed_on_the_event_loop_and_a_big_one_in_the_thread(
        tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Handing a small answer to the cache's thread cost a CPU-bound run more than writing
    it (the threads take turns at the GIL): committed where it arrives. A big one would hold
    up the event loop: the thread writes it. Either is committed before it is returned."""
    committed: list[tuple[str, int]] = []
    real = EmbeddingCache.put_many

    def put_many(self, space, keys, vectors, tokens, *, wait=True):  # type: ignore[no-untyped-def]
        done = real(self, space, keys, vectors, tokens, wait=wait)
        if done:
            committed.append((threading.current_thread().name, len(keys)))
        return done

    monkeypatch.setattr(EmbeddingCache, "put_many", put_many)
    dims = 256  # a row of 1 KB
    small, big = INLINE_BYTES // (4 * dims), INLINE_BYTES // (4 * dims) + 1
    with EmbeddingCache(tmp_path) as cache:
        stack = compose(Counting(dims), cache)

        async def run() -> None:
            await stack.embed([f"s{i}" for i in range(small)])
            await stack.embed([f"b{i}" for i in range(big)])
            await stack.release()

        asyncio.run(run())
    loop_thread = threading.current_thread().name
    assert committed == [(loop_thread, small), ("migrator-cache_0", big)]


def test_a_write_on_the_event_loop_never_waits(tmp_path: Path) -> None:
    """Not for this process's cache thread, nor for another process holding SQLite's
    write lock (a waiting write would freeze the loop for up to 30 s, Ctrl-C included)."""
    with EmbeddingCache(tmp_path) as cache:
        with cache._writing:  # the cache thread is writing
            assert cache.put_many("ns", [key(1)], rows(1, 1.0), [1], wait=False) is False
        other = sqlite3.connect(tmp_path / CACHE_FILE, isolation_level=None,
                                check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        answers: list[bool] = []
        attempt = threading.Thread(target=lambda: answers.append(cache.put_many(
            "ns", [key(1)], rows(1, 1.0), [1], wait=False)))
        attempt.start()
        attempt.join(10)  # waiting would take BUSY_SECONDS (30 s)
        assert answers == [False]
        assert cache.get_many("ns", [key(1)]) == {}
        # a write that may wait still waits for the lock
        release = threading.Timer(0.2, other.rollback)
        release.start()
        assert cache.put_many("ns", [key(1)], rows(1, 2.0), [1]) is True
        release.join()
        other.close()
        assert cache.get_many("ns", [key(1)])[key(1)][0][0] == 2.0


def test_the_wal_is_checkpointed_as_a_run_goes(tmp_path: Path) -> None:
    """SQLite's own checkpoint would run inside a commit on the event loop: `upkeep()` does
    it in the cache's thread instead, and the WAL stays about WAL_BYTES long."""
    dims = 256
    per_answer = INLINE_BYTES // (4 * dims)
    with EmbeddingCache(tmp_path) as cache:
        stack = compose(Counting(dims), cache)

        async def run() -> None:
            for answer in range(4 * WAL_BYTES // INLINE_BYTES):  # 16 MB, answer by answer
                await stack.embed([f"{answer} {i}" for i in range(per_answer)])
            await stack.release()

        asyncio.run(run())
        wal = tmp_path / (CACHE_FILE + "-wal")
        assert 0 < wal.stat().st_size < 2 * WAL_BYTES


def test_a_settled_cache_is_indexed_before_it_closes(tmp_path: Path) -> None:
    """`settle()` (a backfill's last answer is in) indexes the tail in the cache's thread:
    `close()` is left nothing to index, and another process finds the vectors at once."""
    with EmbeddingCache(tmp_path) as cache:
        stack = compose(Counting(), cache)

        async def run() -> None:
            await stack.embed([f"text {i}" for i in range(300)])
            stack.settle()
            await stack.release()  # waits for the cache's thread

        asyncio.run(run())
        db = sqlite3.connect(tmp_path / CACHE_FILE)
        assert db.execute("SELECT COUNT(*) FROM vector_keys").fetchone()[0] == 300
        db.close()


def test_the_cache_is_not_cleared_under_a_process_that_has_it_open(tmp_path: Path) -> None:

    with EmbeddingCache(tmp_path) as running:  # a run in another process, as far as the lock
        running.put_many("ns", [key(1)], rows(1, 1.0), [1])  # can tell
        with pytest.raises(StateError, match="in use by another migrator process"):
            cache_clear(tmp_path)
        assert running.get_many("ns", [key(1)])  # nothing was removed
    assert cache_clear(tmp_path) == 1  # once it has ended


def test_a_process_killed_with_the_cache_open_does_not_block_a_clear(tmp_path: Path) -> None:
    with held_by_a_child(f"from migrator.vector_cache import EmbeddingCache\n"
                         f"cache = EmbeddingCache({str(tmp_path)!r})"), pytest.raises(StateError):
        cache_clear(tmp_path)
    assert cache_clear(tmp_path) == 0


def test_a_cache_that_fails_to_open_holds_nothing_open(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Say a crashed run's tail cannot be indexed: the lock that says the cache is in use
    went only when the half-made object was collected, so a `cache clear` was refused."""
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many("ns", [key(1)], rows(1, 1.0), [1])

    def fail(self: EmbeddingCache) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(EmbeddingCache, "index", fail)
    with pytest.raises(sqlite3.OperationalError) as failed:
        EmbeddingCache(tmp_path)
    monkeypatch.undo()
    assert failed.value is not None  # its traceback keeps the half-made cache alive
    assert cache_clear(tmp_path) == 1
