"""The Embedder protocol every provider implements, and the result it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ..catalog import ModelSpec
from ..errors import DimensionMismatch, ProviderResponseError

__all__ = ["check_vectors", "Embedder", "Embedding", "innermost", "InputKind", "l2_normalize"]

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


@runtime_checkable
class Embedder(Protocol):
    """An embedding model behind some API. Implementations are async and batch-aware."""

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


def innermost(embedder: Any) -> Any:
    """The provider under any wrappers (cache, size adapter) that keep it as `.inner`: what
    knows the model's tokenizer, its HTTP metrics and whether it is worth caching."""
    while getattr(embedder, "inner", None) is not None:
        embedder = embedder.inner
    return embedder


def check_vectors(vectors: np.ndarray, *, expected: int, dims: int, provider: str) -> np.ndarray:
    """Validate a response at the boundary: one finite vector of `dims` values per input.

    Raises:
        ProviderResponseError: a count, a length or a value is wrong.
    """
    if vectors.ndim != 2 or vectors.shape[0] != expected:
        raise ProviderResponseError(
            f"{provider} returned {vectors.shape[0] if vectors.ndim else 0} vectors for "
            f"{expected} inputs.",
            provider=provider,
        )
    if vectors.shape[1] != dims:
        raise DimensionMismatch(
            f"{provider} returned vectors of {vectors.shape[1]} values, expected {dims}. "
            "Check the model and `dimensions` settings against what the server serves.",
            provider=provider,
        )
    if not np.isfinite(vectors).all():
        bad = int((~np.isfinite(vectors)).any(axis=1).sum())
        raise ProviderResponseError(
            f"{provider} returned {bad} vector(s) containing NaN or infinite values.",
            provider=provider,
        )
    checked: np.ndarray = vectors.astype(np.float32, copy=False)
    return checked


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalized: np.ndarray = (vectors / norms).astype(np.float32, copy=False)
    return normalized

