"""The Embedder protocol every provider implements, and the result it returns.

Besides `embed`, an embedder declares what the layers around it need to know: the size it
asks its model for, whether queries and documents get different vectors, whether it cuts
long inputs itself, its tokenizer, its HTTP figures and the bill of the run. Providers
subclass `Embedder` to take the defaults; the layers `build_embedder` stacks on a provider
(`Wrapper`s: fallback, meter, cache, sizing) pass every question down to the provider.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ..catalog import ModelSpec
from .batches import BatchAPI
from .sizing import DimsDecision
from .usage import EndpointMetrics, Usage

__all__ = ["CacheSlot", "Embedder", "Embedding", "InputKind", "Wrapper"]

InputKind = Literal["document", "query"]


@dataclass(frozen=True)
class Embedding:
    """Vectors for a batch of texts, in input order.

    `vectors` is a float32 matrix of shape (len(texts), dims). `tokens` is what the provider
    billed, or an estimate when `tokens_estimated` is true.
    """

    vectors: np.ndarray
    tokens: int
    tokens_estimated: bool = False
    retries: int = 0
    cached: int = 0  # texts answered from the embedding cache (not sent, not paid)
    tokens_saved: int = 0  # what the cached texts cost when they were first embedded


class CacheSlot(Protocol):
    """One key space of the embedding cache: a provider's own answers for one input kind
    (what batch mode fills)."""

    def keys(self, texts: Sequence[str]) -> list[bytes]: ...

    def found(self, keys: Sequence[bytes]) -> set[bytes]: ...

    def put(self, keys: Sequence[bytes], vectors: np.ndarray, tokens: Sequence[int]
            ) -> None: ...


class Embedder(Protocol):
    """An embedding model behind some API. Implementations are async and batch-aware.

    `spec`, `dims`, `batch_size`, `embed` and `aclose` are what a provider must implement;
    everything else has a default here.
    """

    spec: ModelSpec

    @property
    def dims(self) -> int | None:
        """The length of every vector this embedder returns; None until the first answer
        for a model the catalog does not know."""
        ...

    @property
    def batch_size(self) -> int:
        """The most texts one `embed` call may be given."""
        ...

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        """Embed up to `batch_size` non-empty texts."""
        ...

    async def aclose(self) -> None:
        """Release connections and models."""
        ...

    # ---- capabilities, with the defaults of a plain provider ---------------------------

    @property
    def asked_dims(self) -> int | None:
        """The size the model is asked for (None: its own size)."""
        return None

    @property
    def kinds_differ(self) -> bool:
        """Queries and documents get different vectors (an `input_type` in the request)."""
        return False

    @property
    def truncates_itself(self) -> bool:
        """The model cuts an input at its own token limit, exactly (sentence-transformers)."""
        return False

    @property
    def worth_caching(self) -> bool:
        """Storing a vector is cheaper than computing it again."""
        return True

    @property
    def tokenizer(self) -> Callable[[str], int] | None:
        """The model's exact token count of a text, when it has one here."""
        return None

    @property
    def metrics(self) -> EndpointMetrics | None:
        """The HTTP endpoint's own figures; None for a model that does not speak HTTP."""
        return None

    @property
    def usage(self) -> Usage | None:
        """The run's bill, per phase; kept by the meter `build_embedder` puts on a provider."""
        return None

    @property
    def sizing(self) -> DimsDecision | None:
        """The truncation or padding applied to the model's vectors; None when none is."""
        return None

    def expect_dims(self, dims: int) -> None:
        """The size the preflight probe saw, for a model the catalog lacks."""

    def settle(self) -> None:
        """A bulk of embedding is over (a backfill's last answer is in): start what was left
        for the end (the cache's index) in the background, while the run writes and checks.
        Texts may still come (verification's, the next collection's); an answer to one may
        wait for that work to end before it is stored."""

    async def embed_unsized(self, texts: Sequence[str], *, kind: InputKind = "document",
                            fresh: bool = False) -> Embedding:
        """The model's own vectors, before any truncation or padding. `fresh`: asked of the
        provider even when the cache holds them (and the cache's rows replaced)."""
        return await self.embed(texts, kind=kind)

    async def release(self) -> None:
        """Finish this stack's own work (cache writes) and leave the provider open."""

    def batches(self) -> BatchAPI | None:
        """The provider's batch API for this model and size; None where it has none."""
        return None

    def cache_slot(self, kind: InputKind = "document") -> CacheSlot | None:
        """The cache's key space of the provider's own answers; None without a cache."""
        return None

    async def check_cache(self, text: str) -> None:
        """Before vectors of this run join vectors of an earlier one: the cache's vector of
        `text`, when it holds one, is what the server still answers (a self-hosted server
        may serve another model under the same name). Nothing to do without a cache."""

    async def adopt_server_limits(self) -> None:
        """Before the first text: a self-hosted server's own word on how many texts a
        request and how many tokens a text it takes, read from the server (once) where it
        tells. Nothing to do for an API whose limits the catalog holds."""

    @property
    def limit_notes(self) -> list[str]:
        """What `adopt_server_limits` changed of the configuration, for the run's warnings."""
        return []


class Wrapper(Embedder):
    """A layer on an embedder: every question it does not answer itself goes to `inner`."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.spec = inner.spec

    @property
    def dims(self) -> int | None:
        return self.inner.dims

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        return await self.inner.embed(texts, kind=kind)

    async def embed_unsized(self, texts: Sequence[str], *, kind: InputKind = "document",
                            fresh: bool = False) -> Embedding:
        return await self.inner.embed_unsized(texts, kind=kind, fresh=fresh)

    async def aclose(self) -> None:
        await self.finish()
        await self.inner.aclose()

    async def release(self) -> None:
        await self.finish()
        await self.inner.release()

    async def finish(self) -> None:
        """This layer's own work, done before the layers below are released or closed."""

    @property
    def asked_dims(self) -> int | None:
        return self.inner.asked_dims

    @property
    def kinds_differ(self) -> bool:
        return self.inner.kinds_differ

    @property
    def truncates_itself(self) -> bool:
        return self.inner.truncates_itself

    @property
    def worth_caching(self) -> bool:
        return self.inner.worth_caching

    @property
    def tokenizer(self) -> Callable[[str], int] | None:
        return self.inner.tokenizer

    @property
    def metrics(self) -> EndpointMetrics | None:
        return self.inner.metrics

    @property
    def usage(self) -> Usage | None:
        return self.inner.usage

    @property
    def sizing(self) -> DimsDecision | None:
        return self.inner.sizing

    def expect_dims(self, dims: int) -> None:
        self.inner.expect_dims(dims)

    def batches(self) -> BatchAPI | None:
        return self.inner.batches()

    def settle(self) -> None:
        self.inner.settle()

    def cache_slot(self, kind: InputKind = "document") -> CacheSlot | None:
        return self.inner.cache_slot(kind)

    async def check_cache(self, text: str) -> None:
        await self.inner.check_cache(text)

    async def adopt_server_limits(self) -> None:
        await self.inner.adopt_server_limits()
        self.spec = self.inner.spec  # the limit a text is cut at may be the server's now

    @property
    def limit_notes(self) -> list[str]:
        return self.inner.limit_notes
