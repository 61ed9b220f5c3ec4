"""Token counting for cost estimates and request packing.

Without a tokenizer for the provider's model, migrator estimates conservatively: about
three characters a token, which over-counts English (closer to four) so that estimated
costs and packed requests err on the safe side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Embedder
from .vectors import l2_normalize

__all__ = ["CHARS_PER_TOKEN", "chunk_tokens", "combine", "count_tokens", "estimate_tokens",
    "estimate_total", "fit_all", "fit_text", "Fitted", "MAX_REQUEST_BYTES", "pack",
    "SPECIAL_TOKENS", "token_counter", "truncate_tokens", "TYPICAL_CHARS_PER_TOKEN"]

CHARS_PER_TOKEN = 3
SPECIAL_TOKENS = 8  # what a tokenizer may add to a text (CLS, SEP, BOS, ...)


def estimate_tokens(text: str) -> int:
    """A conservative estimate of the tokens in `text` (at least 1)."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def estimate_total(texts: Iterable[str]) -> int:
    return sum(estimate_tokens(t) for t in texts)


TYPICAL_CHARS_PER_TOKEN = 4  # for limits: flag what is really long, not what might be
MAX_REQUEST_BYTES = 4_000_000  # payload caps seen: TEI 2 MB by default, Gemini 4 MB


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens of `text`: exact with tiktoken (when installed) for OpenAI's models, else the
    typical ~4 characters a token."""
    encoding = _tiktoken(model)
    if encoding is not None:
        return len(encoding.encode(text, disallowed_special=()))
    return max(1, -(-len(text) // TYPICAL_CHARS_PER_TOKEN))


def truncate_tokens(text: str, limit: int, model: str | None = None) -> str:
    """The longest start of `text` within `limit` tokens, cut at a token (tiktoken) or a
    word boundary."""
    encoding = _tiktoken(model)
    if encoding is not None:
        return str(encoding.decode(encoding.encode(text, disallowed_special=())[:limit]))
    cut = text[: limit * TYPICAL_CHARS_PER_TOKEN]
    space = cut.rfind(" ")
    return cut[:space] if space > len(cut) // 2 else cut


def chunk_tokens(text: str, limit: int, model: str | None = None) -> list[str]:
    """`text` in consecutive pieces of at most `limit` tokens."""
    pieces = []
    rest = text
    while rest:
        piece = truncate_tokens(rest, limit, model) or rest[: limit * TYPICAL_CHARS_PER_TOKEN]
        pieces.append(piece)
        rest = rest[len(piece):].lstrip()
    return pieces


def token_counter(embedder: Embedder) -> Callable[[str], int]:
    """How to count a text's tokens for `embedder`: its model's own tokenizer when it has
    one (a local model), else `count_tokens` for its model name."""
    if embedder.tokenizer is not None:
        return embedder.tokenizer
    model = embedder.spec.model
    return lambda text: count_tokens(text, model)


def fit_text(text: str, embedder: Embedder, policy: str,
             counter: Callable[[str], int] | None = None) -> list[str]:
    """The text as sent: whole when within the model's per-input limit; else cut, chunked,
    or nothing (the `fail` policy lists the text and sends nothing). `counter` is
    `token_counter(embedder)`, for a caller that fits many texts.

    An embedder whose `truncates_itself` is true (sentence-transformers cuts at the model's
    own token limit, exactly) is given the whole text under `truncate`.
    """
    spec = embedder.spec
    limit = spec.max_tokens_per_input
    # no tokenizer makes more tokens than the text has UTF-8 bytes, plus a few special
    # ones: a text that short is within the limit without being counted
    if len(text) * 4 + SPECIAL_TOKENS <= limit or (
            len(text.encode("utf-8")) + SPECIAL_TOKENS <= limit):
        return [text]
    if (counter or token_counter(embedder))(text) <= limit:
        return [text]
    if policy == "truncate":
        if embedder.truncates_itself:
            return [text]
        return [truncate_tokens(text, limit, spec.model)]
    if policy == "chunk-mean":
        return chunk_tokens(text, limit, spec.model)
    return []


@dataclass
class Fitted:
    """Texts as they are sent: `unique` once each, and each input's rows in it (several
    for chunk-mean; none when the `fail` policy sends nothing for it)."""

    unique: list[str]
    rows: list[list[int]]

    @property
    def too_long(self) -> int:
        return sum(1 for r in self.rows if not r)


def fit_all(texts: Iterable[str], embedder: Embedder, policy: str) -> Fitted:
    """`fit_text` over many texts, each distinct piece once: the one prepare step of every
    path that embeds text (backfill, verification, compare)."""
    unique: dict[str, int] = {}
    counter = token_counter(embedder)
    rows = [[unique.setdefault(piece, len(unique))
             for piece in fit_text(text, embedder, policy, counter) if piece] for text in texts]
    return Fitted(list(unique), rows)


def combine(vectors: np.ndarray, rows: list[list[int]]) -> np.ndarray:
    """Each input's vector from the vectors of `Fitted.unique`: its one row, or the mean of
    its chunks, renormalised."""
    return np.stack([vectors[r[0]] if len(r) == 1 else
                     l2_normalize(vectors[r].mean(axis=0, keepdims=True))[0] for r in rows])


def pack(texts: list[str], *, max_inputs: int, max_tokens: int | None,
         max_bytes: int = MAX_REQUEST_BYTES) -> list[tuple[int, int]]:
    """Split `texts` into consecutive requests within the provider's limits on inputs,
    total tokens (estimated) and bytes; (start, stop) spans."""
    spans: list[tuple[int, int]] = []
    start, tokens, size = 0, 0, 0
    for i, text in enumerate(texts):
        t, b = estimate_tokens(text), len(text.encode("utf-8"))
        full = (i - start >= max_inputs or (max_tokens is not None and tokens + t > max_tokens)
                or size + b > max_bytes)
        if full and i > start:
            spans.append((start, i))
            start, tokens, size = i, 0, 0
        tokens, size = tokens + t, size + b
    if start < len(texts):
        spans.append((start, len(texts)))
    return spans


def _tiktoken(model: str | None) -> Any:
    if model is None or not model.split("/")[-1].startswith("text-embedding"):
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.encoding_for_model(model.split("/")[-1])
    except KeyError:
        return _cl100k(tiktoken)
    except Exception:  # tiktoken fetches its encodings on first use: offline, estimate
        return None


def _cl100k(tiktoken: Any) -> Any:
    try:
        return tiktoken.get_encoding("cl100k_base")
    except Exception:  # as above: no network, no encoding
        return None
