"""`AdaptedEmbedder`: the layer that truncates or pads the model's vectors to the decided
size (see `sizing`). It sits on top of the stack: the cache below it holds the model's own
vectors, so every size cut from them shares one cache entry and one payment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import ProviderResponseError
from .base import Embedder, Embedding, InputKind, Wrapper
from .sizing import DimsDecision, settle

__all__ = ["AdaptedEmbedder"]


class AdaptedEmbedder(Wrapper):
    """Vectors truncated or padded to `decision.target`. A probed decision (a model the
    catalog lacks) is settled by the first answer, or by the probe."""

    def __init__(self, inner: Embedder, decision: DimsDecision,
                 setting: Callable[[str], str] = "provider.{}".format) -> None:
        super().__init__(inner)
        self.decision = decision
        self._setting = setting  # names a provider setting in a refusal

    @property
    def dims(self) -> int:
        return self.decision.target

    @property
    def sizing(self) -> DimsDecision:
        return self.decision

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        result = await self.embed_unsized(texts, kind=kind)
        return replace(result, vectors=self.decision.apply(result.vectors))

    async def embed_unsized(self, texts: Sequence[str], *, kind: InputKind = "document",
                            fresh: bool = False) -> Embedding:
        result = await self.inner.embed_unsized(texts, kind=kind, fresh=fresh)
        output = int(result.vectors.shape[1])
        self.decision = settle(self.decision, output, self.spec.model, self._setting)
        if output != self.decision.output:
            raise ProviderResponseError(
                f"{self.spec.provider} ({self.spec.model}) returned vectors of {output} "
                f"values, expected {self.decision.output}; nothing was written.",
                provider=self.spec.provider)
        return result
