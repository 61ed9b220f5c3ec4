"""Fallback endpoints that serve the *same* model (OpenAI, an Azure deployment of it,
OpenRouter's `openai/...` of it), each behind a circuit breaker.

Vectors of different models must never share a collection, so configuration that falls
back to another model, or to another size, is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import ConfigError, DimensionMismatch, ProviderError
from ..settings import ProviderSettings
from .base import Embedder, Embedding, InputKind, Wrapper

__all__ = ["Breaker", "canonical_model", "check_same_model", "COOLDOWN", "FAILURES_TO_OPEN",
    "FallbackEmbedder"]

FAILURES_TO_OPEN = 3  # consecutive failures that open an endpoint's circuit
COOLDOWN = 30.0  # seconds an open circuit stays open before one request may try again


def canonical_model(settings: ProviderSettings) -> str:
    """The model an endpoint serves, whatever the provider calls it."""
    return settings.model.split("/")[-1].lower()


def check_same_model(primary: ProviderSettings, fallbacks: Sequence[ProviderSettings]) -> None:
    for fallback in fallbacks:
        if canonical_model(fallback) != canonical_model(primary) or (
                fallback.dimensions != primary.dimensions):
            raise ConfigError(
                f"Fallback {fallback.name} {fallback.model!r} ({fallback.dimensions or 'native'}"
                f" dims) does not serve the same model and size as {primary.name} "
                f"{primary.model!r} ({primary.dimensions or 'native'} dims). Vectors of "
                "different models must not share a collection: a fallback must serve the same "
                "model at the same size.")
        if fallback.price_per_mtok not in (None, primary.price_per_mtok):
            raise ConfigError(
                f"Fallback {fallback.name} {fallback.model!r} has a price_per_mtok of its own; "
                "the bill prices every endpoint of a model at provider.price_per_mtok. Remove "
                "it from the fallback (or give the price once, on provider).")


class Breaker:
    """Closed until FAILURES_TO_OPEN failures in a row; then open for COOLDOWN seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = 0
        self.opened_at: float | None = None
        self._clock = clock

    @property
    def open(self) -> bool:
        if self.opened_at is None:
            return False
        return self._clock() - self.opened_at < COOLDOWN  # after: half-open, one try

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= FAILURES_TO_OPEN:
            self.opened_at = self._clock()


class FallbackEmbedder(Wrapper):
    """Tries each endpoint in order, skipping those whose circuit is open. Size and metrics
    are the primary's (`inner`); a request and a text are kept within every endpoint's
    limits, as any of them may be sent it."""

    def __init__(self, endpoints: Sequence[Embedder], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(endpoints[0])
        self.endpoints = list(endpoints)
        self.breakers = [Breaker(clock) for _ in self.endpoints]
        self.used: list[int] = [0] * len(self.endpoints)  # requests answered, per endpoint

    @property
    def batch_size(self) -> int:
        return min(e.batch_size for e in self.endpoints)

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        last: ProviderError | None = None
        order = [i for i, b in enumerate(self.breakers) if not b.open] or list(
            range(len(self.endpoints)))  # all open: try them anyway rather than give up
        for i in order:
            try:
                result = await self.endpoints[i].embed(texts, kind=kind)
            except DimensionMismatch:
                raise  # another size is another model: never paper over it
            except ProviderError as exc:
                self.breakers[i].failure()
                last = exc
                continue
            self.breakers[i].success()
            self.used[i] += 1
            return result
        if last is None:  # cannot happen: `order` always holds an endpoint
            raise RuntimeError("no endpoint to try")
        raise last

    async def embed_unsized(self, texts: Sequence[str], *, kind: InputKind = "document",
                            fresh: bool = False) -> Embedding:
        return await self.embed(texts, kind=kind)  # endpoints are providers: nothing sized

    async def adopt_server_limits(self) -> None:
        # at once: a fallback that is down may take the whole lookup time to say nothing
        await asyncio.gather(*(endpoint.adopt_server_limits() for endpoint in self.endpoints))
        specs = [endpoint.spec for endpoint in self.endpoints]
        self.spec = replace(self.inner.spec,
                            max_inputs=min(spec.max_inputs for spec in specs),
                            max_tokens_per_input=min(s.max_tokens_per_input for s in specs))

    @property
    def limit_notes(self) -> list[str]:
        return [*self.inner.limit_notes, *(
            f"fallback {n}: {note}" for n, endpoint in enumerate(self.endpoints[1:], 1)
            for note in endpoint.limit_notes)]

    async def release(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.release()

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.aclose()
