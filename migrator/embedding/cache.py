"""`CachedEmbedder`: any embedder in front of the embedding cache.

Texts found in the cache are not sent; the rest are embedded, stored and merged back in
order. The cache key holds everything that changes a vector: provider, model, the size
decision (asked size, target size, truncation or padding, renormalisation), the input kind
and the text itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import CorruptState, ProviderResponseError
from ..state import CACHE_FILE, CacheStats, EmbeddingCache
from .base import Embedder, Embedding, InputKind
from .sizing import AdaptedEmbedder
from .tokens import estimate_tokens

__all__ = ["cache_clear", "CACHE_FORMAT", "cache_stats", "CachedEmbedder", "MAX_PENDING_WRITES",
    "namespace", "WRITE_BATCH"]

CACHE_FORMAT = "v1"
WRITE_BATCH = 512  # rows per cache transaction
MAX_PENDING_WRITES = 4  # transactions queued before a request waits for them


def namespace(embedder: Embedder, kind: InputKind) -> str:
    """What, besides the text, decides the vector `embedder` returns."""
    spec = embedder.spec
    if isinstance(embedder, AdaptedEmbedder):
        d = embedder.decision
        shape = f"{d.action}:{d.output}->{d.target}:renorm={d.renormalize}"
    else:  # the size asked for, not the size seen: a probed model's size is known late
        shape = f"dims={getattr(embedder, 'asked_dims', embedder.dims) or 'native'}"
    return "\0".join([CACHE_FORMAT, spec.provider, spec.model, shape, kind])


class CachedEmbedder:
    """Embeds through `inner`, answering repeated texts from `cache`."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.spec = inner.spec
        # One thread of its own: cache I/O must not queue behind (or hold up) the store's
        # reads and writes in the default executor, and SQLite serialises writes anyway.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrator-cache")
        # writes are gathered into transactions of WRITE_BATCH rows (one per request costs
        # twice as much) and run behind the requests, in order, on that thread
        self._writes: list[asyncio.Future[None]] = []
        self._buffer: list[tuple[bytes, np.ndarray, int]] = []
        # embedded in this run but maybe not yet in the database, and being embedded now:
        # a text is sent once per run however its repeats are spread over requests
        self._recent: dict[bytes, tuple[np.ndarray, int]] = {}
        self._inflight: dict[bytes, asyncio.Future[tuple[np.ndarray, int]]] = {}

    @property
    def dims(self) -> int | None:
        return self.inner.dims

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        space = namespace(self.inner, kind)
        keys = [EmbeddingCache.key(space, t) for t in texts]
        unknown = [k for k in keys if k not in self._recent and k not in self._inflight]
        stored = self.cache.get_many(unknown) if unknown else {}
        hits: dict[int, tuple[np.ndarray, int]] = {}
        waits: dict[int, asyncio.Future[tuple[np.ndarray, int]]] = {}
        mine: list[int] = []
        width = self.inner.dims
        for i, key in enumerate(keys):
            if key in self._recent:
                hits[i] = self._recent[key]
            elif key in stored and _sound(stored[key][0], width):
                hits[i] = stored[key]  # a row that fails the writer's checks is a miss
            elif key in self._inflight:  # another request (or this one) is embedding it
                waits[i] = self._inflight[key]
            else:
                self._inflight[key] = asyncio.get_running_loop().create_future()
                mine.append(i)
        result = await self._embed_mine(texts, keys, mine, kind) if mine else None
        for i, future in waits.items():
            hits[i] = await future
        dims = result.vectors.shape[1] if result is not None else len(
            next(iter(hits.values()))[0])
        vectors = np.empty((len(texts), dims), dtype=np.float32)
        if result is not None:
            vectors[mine] = result.vectors
        for i, (vector, _) in hits.items():
            vectors[i] = vector
        return Embedding(
            vectors,
            tokens=result.tokens if result else 0,
            tokens_estimated=result.tokens_estimated if result else False,
            retries=result.retries if result else 0,
            cached=len(hits),
            tokens_saved=sum(tokens for _, tokens in hits.values()),
        )

    async def _embed_mine(self, texts: Sequence[str], keys: list[bytes], mine: list[int],
                          kind: InputKind) -> Embedding:
        """Embed the texts this call claimed; hand each result to anyone waiting for it."""
        claimed = [self._inflight[keys[i]] for i in mine]
        try:
            result = await self.inner.embed([texts[i] for i in mine], kind=kind)
            _check_answer(result.vectors, self.inner.dims, self.spec.provider)
        except BaseException as exc:
            for i, future in zip(mine, claimed, strict=True):
                del self._inflight[keys[i]]
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # the caller sees exc itself; waiters may not exist
            raise
        shares = _token_shares([texts[i] for i in mine], result.tokens)
        for row, (i, future) in enumerate(zip(mine, claimed, strict=True)):
            entry = (result.vectors[row], shares[row])
            self._recent[keys[i]] = entry
            del self._inflight[keys[i]]
            future.set_result(entry)
            self._buffer.append((keys[i], *entry))
        if len(self._buffer) >= WRITE_BATCH:
            self._submit()
        if len(self._writes) >= MAX_PENDING_WRITES:
            await self._wait()
        return result

    def _submit(self) -> None:
        if not self._buffer:
            return
        keys = [key for key, _, _ in self._buffer]
        vectors = np.vstack([vector for _, vector, _ in self._buffer])
        tokens = [count for _, _, count in self._buffer]
        self._buffer = []
        loop = asyncio.get_running_loop()
        write = loop.run_in_executor(self._io, self.cache.put_many, keys, vectors, tokens)
        write.add_done_callback(functools.partial(self._forget, keys))
        self._writes.append(write)

    def _forget(self, keys: list[bytes], _write: object) -> None:
        """Written to the database: no need to hold them in memory any longer."""
        for key in keys:
            self._recent.pop(key, None)

    async def _wait(self) -> None:
        writes, self._writes = self._writes, []
        await asyncio.gather(*writes)

    async def flush(self) -> None:
        """Write everything embedded so far to the cache (and raise if a write failed)."""
        self._submit()
        await self._wait()

    async def release(self) -> None:
        """Finish the cache writes and stop the cache thread; the inner embedder stays open."""
        try:
            await self.flush()
        finally:
            self._io.shutdown(wait=True)

    async def aclose(self) -> None:
        await self.release()
        await self.inner.aclose()


def _sound(vector: np.ndarray, width: int | None) -> bool:
    return (width is None or vector.shape[0] == width) and bool(np.isfinite(vector).all())


def _check_answer(vectors: np.ndarray, width: int | None, provider: str) -> None:
    """The writer's checks, before anything enters the cache: the width the size decision
    fixed, and finite values."""
    if (width is not None and vectors.shape[1] != width) or not np.isfinite(vectors).all():
        raise ProviderResponseError(
            f"{provider} returned vectors of {vectors.shape[1]} values (expected {width}) or "
            "with NaN/infinite values; they were neither cached nor written.",
            provider=provider)


def _token_shares(texts: Sequence[str], total: int) -> list[int]:
    """Split a request's token count over its texts in proportion to their estimated
    length; the shares add up to `total` exactly (largest remainders get the rest)."""
    estimates = [estimate_tokens(t) for t in texts]
    exact = [total * e / sum(estimates) for e in estimates]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(texts)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def cache_stats(state_dir: str | Path) -> CacheStats:
    """Entries and bytes of the embedding cache in `state_dir` (none, when it has no cache:
    a mistyped path creates nothing)."""
    path = Path(state_dir) / CACHE_FILE
    if not path.exists():
        return CacheStats(0, 0, str(path))
    with EmbeddingCache(state_dir) as cache:
        return cache.stats()


def cache_clear(state_dir: str | Path) -> int:
    """Empty the embedding cache in `state_dir`; return how many vectors were removed."""
    path = Path(state_dir) / CACHE_FILE
    if not path.exists():
        return 0
    try:
        cache = EmbeddingCache(state_dir)
    except CorruptState:  # nothing in it can be read: remove the files themselves
        for leftover in path.parent.glob(CACHE_FILE + "*"):
            leftover.unlink()
        return 0
    with cache:
        return cache.clear()
