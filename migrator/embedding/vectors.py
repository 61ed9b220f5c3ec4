"""Vector checks at the provider boundary, and L2 normalisation."""

from __future__ import annotations

import numpy as np

from ..errors import DimensionMismatch, ProviderResponseError
from ..wording import counted

__all__ = ["check_vectors", "l2_normalize"]


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
            f"{provider} returned {counted(bad, 'vector')} containing NaN or infinite values.",
            provider=provider,
        )
    checked: np.ndarray = vectors.astype(np.float32, copy=False)
    return checked


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalized: np.ndarray = (vectors / norms).astype(np.float32, copy=False)
    return normalized

