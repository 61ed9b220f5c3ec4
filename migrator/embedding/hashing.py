"""An offline, deterministic lexical baseline: signed feature hashing.

This is not a semantic model. Texts that share words (and, for `hash-ngrams-v1`, word
pieces) get similar vectors; synonyms do not. It exists so that the demo, the tests and
dry runs need no network and no API key, and as a lexical baseline in comparisons.

- `hash-words-v1`: lower-cased word unigrams and bigrams (common function words left out).
- `hash-ngrams-v1`: the same plus character 3-5-grams of each word, which makes it robust
  to inflection ("migrate" ~ "migration").

Each feature is hashed with CRC-32 (stable across processes, unlike `hash()`); the hash
picks a dimension and a sign, and the vector is L2-normalised. Any dimension works.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..errors import ConfigError
from ..settings import ProviderSettings
from .base import Embedder, Embedding, InputKind
from .tokens import estimate_tokens
from .vectors import l2_normalize

__all__ = ["HashingEmbedder", "STOPWORDS"]

_WORD = re.compile(r"\w+", re.UNICODE)
# Function words carry no topic; as whole-word features they would dominate short texts.
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from",
    "how", "i", "if", "in", "into", "is", "it", "its", "my", "of", "on", "or", "so", "than",
    "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "we",
    "were", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your",
})
_WEIGHTS = {"word": 1.0, "bigram": 0.6, "char": 0.25}
_SEEDS = {"hash-words-v1": 0x5EED0001, "hash-ngrams-v1": 0x5EED0002}


class HashingEmbedder(Embedder):
    """Feature-hashing embedder; see the module docstring."""

    worth_caching = False  # computing a vector is cheaper than storing and reading it

    def __init__(self, spec: ModelSpec, *, dims: int | None = None, batch_size: int = 1024) -> None:
        if spec.model not in _SEEDS:
            known = ", ".join(sorted(_SEEDS))
            raise ConfigError(f"Unknown hashing model {spec.model!r}; choose one of {known}.")
        self.spec = spec
        self._dims = dims or spec.dims
        if not spec.accepts_dims(self._dims):
            raise ConfigError(
                f"hashing model {spec.model!r} cannot produce {self._dims} dimensions "
                f"(allowed: {spec.describe_dims()})."
            )
        self._seed = _SEEDS[spec.model]
        self._char_ngrams = spec.model == "hash-ngrams-v1"
        self._batch_size = batch_size

    @classmethod
    def from_settings(cls, spec: ModelSpec, settings: ProviderSettings, ask: int | None,
                      client: Any = None) -> HashingEmbedder:
        """The registry's constructor (`migrator.embedding.construct`); no HTTP client."""
        return cls(spec, dims=ask, batch_size=settings.batch_size or spec.max_inputs)

    @property
    def dims(self) -> int:
        return self._dims

    @property
    def batch_size(self) -> int:
        return self._batch_size

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        vectors = await asyncio.to_thread(self.embed_sync, texts)
        return Embedding(vectors=vectors, tokens=sum(estimate_tokens(t) for t in texts),
                         tokens_estimated=True)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Embed without an event loop (the computation is the same)."""
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for row, text in enumerate(texts):
            for feature, weight in self._features(text):
                h = zlib.crc32(feature.encode("utf-8"), self._seed)
                rows.append(row)
                cols.append(h % self._dims)
                vals.append(weight if (h >> 31) & 1 else -weight)
        matrix = np.zeros((len(texts), self._dims), dtype=np.float32)
        np.add.at(matrix, (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)),
                  np.asarray(vals, dtype=np.float32))
        return l2_normalize(matrix)

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = _WORD.findall(text.lower())
        features = [("w:" + w, _WEIGHTS["word"]) for w in words if w not in STOPWORDS]
        features += [
            ("b:" + a + " " + b, _WEIGHTS["bigram"])
            for a, b in zip(words, words[1:], strict=False)
            if a not in STOPWORDS or b not in STOPWORDS
        ]
        if self._char_ngrams:
            for word in words:
                if word in STOPWORDS:
                    continue
                padded = f"<{word}>"
                for n in (3, 4, 5):
                    features += [
                        ("c:" + padded[i : i + n], _WEIGHTS["char"])
                        for i in range(len(padded) - n + 1)
                    ]
        if not features:  # punctuation-only text: hash the raw string so it is not all-zero
            features = [("r:" + text.strip(), 1.0)]
        return features

    async def aclose(self) -> None:
        return None
