"""`CachedEmbedder`: any embedder in front of the embedding cache.

Texts found in the cache are not sent; the rest are embedded, stored and merged back in
order. The cache key holds everything that changes a vector: provider, model, the size
decision (asked size, target size, truncation or padding, renormalisation), the input kind
and the text itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .dims import AdaptedEmbedder
from .providers.base import Embedder, Embedding, InputKind
from .state import CacheStats, EmbeddingCache
from .tokens import estimate_tokens

CACHE_FORMAT = "v1"
WRITE_BATCH = 512  # rows per cache transaction
MAX_PENDING_WRITES = 4  # transactions queued before a request waits for them


def namespace(embedder: Embedder, kind: InputKind) -> str:
    """What, besides the text, decides the vector `embedder` returns."""
    spec = embedder.spec
    if isinstance(embedder, AdaptedEmbedder):
        d = embedder.decision
        shape = f"{d.action}:{d.output}->{d.target}:renorm={d.renormalize}"
    else:
        shape = f"dims={embedder.dims}"
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

    @property
    def dims(self) -> int | None:
        return self.inner.dims

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        space = namespace(self.inner, kind)
        keys = [EmbeddingCache.key(space, t) for t in texts]
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        dims = self.inner.dims or (len(next(iter(found.values()))[0]) if found else 0)
        result: Embedding | None = None
        if missing:
            result = await self.inner.embed([texts[i] for i in missing], kind=kind)
            dims = result.vectors.shape[1]
            shares = _token_shares([texts[i] for i in missing], result.tokens)
            self._buffer.extend((keys[i], result.vectors[row], shares[row])
                                for row, i in enumerate(missing))
            if len(self._buffer) >= WRITE_BATCH:
                self._submit()
            if len(self._writes) >= MAX_PENDING_WRITES:
                await self._wait()
        vectors = np.empty((len(texts), dims), dtype=np.float32)
        if result is not None:
            vectors[missing] = result.vectors
        saved = 0
        for i, key in enumerate(keys):
            if key in found:
                vectors[i], tokens = found[key]
                saved += tokens
        return Embedding(
            vectors,
            tokens=result.tokens if result else 0,
            tokens_estimated=result.tokens_estimated if result else False,
            retries=result.retries if result else 0,
            cached=len(texts) - len(missing),
            tokens_saved=saved,
        )

    def _submit(self) -> None:
        if not self._buffer:
            return
        keys = [key for key, _, _ in self._buffer]
        vectors = np.vstack([vector for _, vector, _ in self._buffer])
        tokens = [count for _, _, count in self._buffer]
        self._buffer = []
        loop = asyncio.get_running_loop()
        self._writes.append(loop.run_in_executor(self._io, self.cache.put_many, keys,
                                                 vectors, tokens))

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
    """Entries and bytes of the embedding cache in `state_dir`."""
    cache = EmbeddingCache(state_dir)
    try:
        return cache.stats()
    finally:
        cache.close()


def cache_clear(state_dir: str | Path) -> int:
    """Empty the embedding cache in `state_dir`; return how many vectors were removed."""
    cache = EmbeddingCache(state_dir)
    try:
        return cache.clear()
    finally:
        cache.close()
