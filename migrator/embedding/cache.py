"""`CachedEmbedder`: any embedder in front of the embedding cache.

Texts found in the cache are not sent; the rest are embedded, stored and merged back in
order. The cache key holds everything that changes a vector: provider, model, the size the
model is asked for, any truncation or padding done above the provider (none in the stack
`build_embedder` builds: the cache sits below sizing, so every size cut from a model's
vectors shares them), the input kind where the model tells queries from documents, and the
text itself.

Each answer is committed before its vectors go on: a crash, even `kill -9`, loses only the
answers still in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np

from ..catalog import REGISTRY, Provider
from ..databases import CACHE_FILE
from ..errors import ConfigError, CorruptState, ProviderResponseError
from ..vector_cache import ROWS_PER_INSERT, CacheStats, EmbeddingCache
from .base import CacheSlot, Embedder, Embedding, InputKind, Wrapper
from .tokens import CHARS_PER_TOKEN

__all__ = ["cache_clear", "CACHE_FORMAT", "cache_stats", "CachedEmbedder", "INLINE_BYTES",
           "namespace"]

CACHE_FORMAT = "v1"
# An answer of up to this many bytes of vectors is committed on the event loop (about a
# millisecond of writing): in a CPU-bound run, handing it to the cache's thread costs more
# than the write, as the threads then take turns at the GIL. A bigger one goes to the thread.
INLINE_BYTES = 256 * 1024
# a self-hosted server answers the same text with a vector this close to the cache's (GPU
# batching moves the last digits) unless it serves another model
SAME_MODEL = 0.99
_NOT_SELF_HOSTED = Provider("", "")


def namespace(embedder: Embedder, kind: InputKind) -> str:
    """What, besides the text, decides the vector `embedder` returns. A model that embeds
    queries and documents alike shares one vector between them: verifying a migration
    reuses the vectors its backfill paid for."""
    spec = embedder.spec
    shape = f"dims={embedder.asked_dims or 'native'}"
    sizing = embedder.sizing
    if sizing is not None:  # a cache above sizing holds sized vectors
        shape += f":{sizing.action}:{sizing.output}->{sizing.target}:renorm={sizing.renormalize}"
    return "\0".join([CACHE_FORMAT, spec.provider, spec.model, shape,
                      kind if embedder.kinds_differ else "document"])


class CachedEmbedder(Wrapper):
    """Embeds through `inner`, answering repeated texts from `cache`."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        super().__init__(inner)
        self.cache = cache
        # One thread of its own: cache I/O must not queue behind (or hold up) the store's
        # reads and writes in the default executor, and SQLite serialises writes anyway.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migrator-cache")
        self._upkeep: list[asyncio.Future[None]] = []  # the cache's, in that thread
        # being embedded now: a text is sent once however its repeats are spread over
        # concurrent requests. Each key maps to the answer of the call that claimed it (its
        # vectors and token shares, once committed) and its row in that answer.
        self._inflight: dict[bytes, tuple[asyncio.Future[_Answer], int]] = {}

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        space = namespace(self.inner, kind)
        keys = EmbeddingCache.keys(space, texts)
        inflight = self._inflight
        unknown = [k for k in keys if k not in inflight] if inflight else keys
        found = self.cache.get_many(space, unknown) if unknown else {}
        hits, waits, mine, repeats = self._sort_out(keys, _sound_rows(found, self.inner.dims))
        result = await self._embed_mine(space, texts, keys, mine, kind) if mine else None
        for i, (claim, row) in waits.items():
            vectors, shares = await claim
            hits[i] = (vectors[row], shares[row])
        vectors = _assemble(len(texts), result, mine, hits, repeats)
        saved = sum(tokens for _, tokens in hits.values())
        usage = self.usage
        if usage is not None and (hits or repeats):
            usage.from_cache(len(hits) + len(repeats), saved)
        return Embedding(
            vectors,
            tokens=result.tokens if result else 0,
            tokens_estimated=result.tokens_estimated if result else False,
            retries=result.retries if result else 0,
            cached=len(hits) + len(repeats),
            tokens_saved=saved,
        )

    def _sort_out(self, keys: list[bytes], stored: dict[bytes, tuple[np.ndarray, int]]
                  ) -> tuple[dict[int, tuple[np.ndarray, int]],
                             dict[int, tuple[asyncio.Future[_Answer], int]],
                             list[int], dict[int, int]]:
        """Where each text's vector comes from: the cache (hits), another call embedding it
        now (waits), this call (mine), or the first copy of a text given twice (repeats)."""
        hits: dict[int, tuple[np.ndarray, int]] = {}
        waits: dict[int, tuple[asyncio.Future[_Answer], int]] = {}
        repeats: dict[int, int] = {}
        inflight = self._inflight
        if not stored and inflight.keys().isdisjoint(keys) and len(set(keys)) == len(keys):
            return hits, waits, list(range(len(keys))), repeats  # all new: a first run's
        mine: list[int] = []
        first: dict[bytes, int] = {}  # the texts this call sends, by key
        for i, key in enumerate(keys):
            if key in stored:
                hits[i] = stored[key]
            elif key in inflight:  # another request is embedding it
                waits[i] = inflight[key]
            elif key in first:
                repeats[i] = first[key]
            else:
                first[key] = i
                mine.append(i)
        return hits, waits, mine, repeats

    async def embed_unsized(self, texts: Sequence[str], *, kind: InputKind = "document",
                            fresh: bool = False) -> Embedding:
        if self.inner.sizing is not None:  # this cache holds sized vectors: go below it
            return await self.inner.embed_unsized(texts, kind=kind, fresh=fresh)
        if not fresh:
            return await self.embed(texts, kind=kind)
        space = namespace(self.inner, kind)
        keys = EmbeddingCache.keys(space, texts)
        result = await self.inner.embed(texts, kind=kind)
        await self._store(space, keys, list(texts), result)
        return result

    async def _embed_mine(self, space: str, texts: Sequence[str], keys: list[bytes],
                          mine: list[int], kind: InputKind) -> Embedding:
        """Embed the texts this call claimed, commit them, then hand the answer to anyone
        waiting for one of them."""
        claim: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        every = len(mine) == len(texts)
        claimed = keys if every else [keys[i] for i in mine]
        sent = list(texts) if every else [texts[i] for i in mine]
        rows = zip(repeat(claim), range(len(claimed)), strict=False)  # (its claim, its row)
        self._inflight.update(zip(claimed, rows, strict=True))
        try:
            result = await self.inner.embed(sent, kind=kind)
            shares = await self._store(space, claimed, sent, result)
        except BaseException as exc:
            claim.set_exception(exc)
            claim.exception()  # the caller sees exc itself; waiters may not exist
            raise
        else:
            claim.set_result((result.vectors, shares))
        finally:
            for key in claimed:
                del self._inflight[key]
        return result

    async def _store(self, space: str, keys: list[bytes], texts: list[str],
                     result: Embedding) -> list[int]:
        """Check an answer as the writer would and commit it, one transaction per answer;
        return each text's share of its tokens."""
        vectors = result.vectors
        _check_answer(vectors, self.inner.dims, self.spec.provider)
        shares = _token_shares(texts, result.tokens)
        loop = asyncio.get_running_loop()
        # committed here when small and no other write is under way, else in the thread
        if not (vectors.nbytes <= INLINE_BYTES and len(keys) <= ROWS_PER_INSERT
                and self.cache.put_many(space, keys, vectors, shares, wait=False)):
            await loop.run_in_executor(self._io, self.cache.put_many, space, keys, vectors,
                                       shares)
        elif self.cache.upkeep_due and not self._upkeep_pending():
            self._upkeep.append(loop.run_in_executor(self._io, self.cache.upkeep))
        return shares

    def settle(self) -> None:
        self._upkeep_pending()
        self._upkeep.append(
            asyncio.get_running_loop().run_in_executor(self._io, self.cache.settle))

    def _upkeep_pending(self) -> bool:
        """Whether upkeep is under way in the cache's thread; raises the error of one that
        ended with one."""
        ended = [future for future in self._upkeep if future.done()]
        self._upkeep = [future for future in self._upkeep if not future.done()]
        for future in ended:
            future.result()
        return bool(self._upkeep)

    async def finish(self) -> None:
        """Wait for the cache's upkeep and stop its thread (every answer is committed)."""
        try:
            for future in self._upkeep:
                await future
        finally:
            self._io.shutdown(wait=True)

    async def check_cache(self, text: str) -> None:
        """Raises ConfigError when the cache holds a vector of `text` that a self-hosted
        server no longer answers: run on, this run's vectors (of the model served now) and
        the cache's (of the one served before) would be mixed in one collection. One text
        asked again of the server, which costs nothing there; a provider whose model name
        pins the model is not asked."""
        if self.inner.sizing is not None:  # this cache holds sized vectors: go below it
            await self.inner.check_cache(text)
            return
        if not REGISTRY.get(self.spec.provider, _NOT_SELF_HOSTED).self_hosted:
            return
        space = namespace(self.inner, "document")
        key = EmbeddingCache.keys(space, [text])[0]
        held = _sound_rows(self.cache.get_many(space, [key]), self.inner.dims).get(key)
        if held is None:
            return
        served = (await self.inner.embed([text])).vectors[0]
        if served.shape != held[0].shape:
            unlike = f"{len(served)} values, not the {len(held[0])} cached"
        else:
            similarity = float(np.dot(held[0], served) / (
                np.linalg.norm(held[0]) * np.linalg.norm(served) or 1.0))
            unlike = f"cosine {similarity:.3f}" if similarity < SAME_MODEL else ""
        if unlike:
            raise ConfigError(
                f"{self.spec.provider} ({self.spec.model}) no longer answers what the "
                f"embedding cache holds for it: the same text gets another vector now "
                f"({unlike}). The server serves another model under this name "
                "(or the model changed), and this run's vectors would be mixed with an "
                "earlier run's in one collection. Give the model a name of its own "
                "(provider.model), or empty the cache (`migrator cache clear`) and start "
                "over with --restart. Nothing was written.")

    def cache_slot(self, kind: InputKind = "document") -> CacheSlot | None:
        if self.inner.sizing is not None:  # this cache holds sized vectors, not answers
            return self.inner.cache_slot(kind)
        return _Slot(self.cache, namespace(self.inner, kind), self.inner.dims,
                     self.spec.provider)


class _Slot:
    """One namespace of the cache, for vectors that came another way (batch mode)."""

    def __init__(self, cache: EmbeddingCache, space: str, width: int | None,
                 provider: str) -> None:
        self._cache, self._space = cache, space
        self._width, self._provider = width, provider

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        return EmbeddingCache.keys(self._space, texts)

    def found(self, keys: Sequence[bytes]) -> set[bytes]:
        return set(_sound_rows(self._cache.get_many(self._space, keys), self._width))

    def put(self, keys: Sequence[bytes], vectors: np.ndarray, tokens: Sequence[int]
            ) -> None:
        _check_answer(vectors, self._width, self._provider)
        self._cache.put_many(self._space, keys, vectors, tokens)


_Answer = tuple[np.ndarray, list[int]]  # an answer's vectors and each text's token share


def _assemble(count: int, result: Embedding | None, mine: list[int],
              hits: dict[int, tuple[np.ndarray, int]], repeats: dict[int, int]) -> np.ndarray:
    """The vectors of a call's texts in order: those it sent, found and copied."""
    if result is not None and len(mine) == count:  # every text was sent, in order
        return np.asarray(result.vectors, dtype=np.float32)
    dims = result.vectors.shape[1] if result is not None else len(
        next(iter(hits.values()))[0])
    vectors = np.empty((count, dims), dtype=np.float32)
    if result is not None:
        vectors[mine] = result.vectors
    for i, (vector, _) in hits.items():
        vectors[i] = vector
    for i, copy in repeats.items():
        vectors[i] = vectors[copy]
    return vectors


def _sound_rows(rows: dict[bytes, tuple[np.ndarray, int]], width: int | None
                ) -> dict[bytes, tuple[np.ndarray, int]]:
    """The rows that pass the writer's checks (the width, finite values); any other row is
    a miss, embedded again and replaced."""
    if not rows:
        return rows
    sizes = {len(vector) for vector, _ in rows.values()}
    if len(sizes) == 1 and (width is None or sizes == {width}):
        matrix = np.vstack([vector for vector, _ in rows.values()])
        if np.isfinite(matrix).all():
            return rows
    return {key: (vector, tokens) for key, (vector, tokens) in rows.items()
            if (width is None or len(vector) == width) and np.isfinite(vector).all()}


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
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    estimates = np.maximum(1, (lengths + (CHARS_PER_TOKEN - 1)) // CHARS_PER_TOKEN)
    exact = estimates * (total / int(estimates.sum()))
    shares = exact.astype(np.int64)  # the floor: `exact` is never negative
    left = total - int(shares.sum())
    if left:
        shares[np.argsort(shares - exact, kind="stable")[:left]] += 1
    return list(shares.tolist())


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
