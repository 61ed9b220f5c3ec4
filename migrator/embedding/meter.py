"""`Metered`: the layer right above the provider that counts what it answered, per phase
of the run, so the run report equals the bill."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Embedder, Embedding, InputKind, Wrapper
from .usage import Usage

__all__ = ["Metered"]


class Metered(Wrapper):
    """Every answer of `inner` is one billed request of its texts and tokens, counted in
    the phase `usage` is in. Texts a cache answered are counted by the cache."""

    def __init__(self, inner: Embedder, usage: Usage | None = None) -> None:
        super().__init__(inner)
        self._usage = usage or Usage()

    @property
    def usage(self) -> Usage:
        return self._usage

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        return self._count(await self.inner.embed(texts, kind=kind), len(texts))

    async def embed_unsized(self, texts: Sequence[str], *, kind: InputKind = "document",
                            fresh: bool = False) -> Embedding:
        return self._count(await self.inner.embed_unsized(texts, kind=kind, fresh=fresh),
                           len(texts))

    def _count(self, result: Embedding, texts: int) -> Embedding:
        shape = getattr(getattr(result, "vectors", None), "shape", None)
        if not isinstance(result, Embedding) or shape is None or shape[0] != texts:
            raise TypeError(_unlike_embedding(self.inner, result, texts))
        sent = texts - result.cached
        if sent:
            self._usage.answered(sent, result.tokens, result.tokens_estimated)
        return result


def _unlike_embedding(embedder: Embedder, result: object, texts: int) -> str:
    """What is wrong with what an embedder (most likely one a caller wrote) answered."""
    name = type(embedder).__name__
    if not isinstance(result, Embedding):
        return (f"{name}.embed returned {type(result).__name__}, not a migrator.Embedding: "
                "return Embedding(vectors=<float32 matrix, a row per text>, tokens=<tokens "
                "billed>).")
    return (f"{name}.embed was given {texts} texts and returned vectors of shape "
            f"{result.vectors.shape}: give a matrix with a row per text, in their order.")
