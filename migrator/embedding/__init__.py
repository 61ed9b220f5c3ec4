"""Embedding providers behind one async protocol, the registry that builds them, and the
one stack every caller gets: provider endpoint(s) -> fallback -> meter -> cache -> sizing."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx

from ..catalog import REGISTRY, ModelSpec, lookup, models_for
from ..errors import ConfigError
from ..settings import ProviderSettings
from ..vector_cache import EmbeddingCache
from .adapter import AdaptedEmbedder
from .base import Embedder, Embedding, InputKind
from .cache import CachedEmbedder
from .fallback import FallbackEmbedder, check_same_model
from .meter import Metered
from .sizing import decide
from .usage import Usage

__all__ = ["build_embedder", "check_embedder", "compose", "construct", "Embedder", "Embedding",
           "embedding", "InputKind", "model_spec", "Usage"]


def construct(spec: ModelSpec, settings: ProviderSettings, ask: int | None,
              client: httpx.AsyncClient | None) -> Embedder:
    """The provider's embedder class (from the registry, imported when first used: `local`
    needs the optional torch) built for `spec`, asked for the size `ask`."""
    provider = REGISTRY.get(settings.name)
    if provider is None:  # settings validation normally catches this first
        raise ConfigError(f"Unknown provider {settings.name!r}; choose one of "
                          f"{', '.join(REGISTRY)}.")
    module, _, name = provider.embedder.partition(":")
    cls = getattr(importlib.import_module(f".{module}", __name__), name)
    embedder: Embedder = cls.from_settings(spec, settings, ask, client)
    return embedder


def model_spec(settings: ProviderSettings) -> ModelSpec:
    """The catalog entry for the configured model, or a stub for a model it lacks; with the
    price and the per-input token limit the settings give, when they do.

    A stub has `dims=0` (unknown until the first response) and generic limits.
    """
    spec = _listed_spec(settings)
    given = {name: value for name in ("price_per_mtok", "max_tokens_per_input")
             if (value := getattr(settings, name)) is not None}
    return replace(spec, **given) if given else spec


def _listed_spec(settings: ProviderSettings) -> ModelSpec:
    price = settings.price_per_mtok
    spec = lookup(settings.name, settings.model)
    if spec is not None:
        return spec
    if REGISTRY[settings.name].catalog_only:
        known = ", ".join(s.model for s in models_for([settings.name]))
        raise ConfigError(
            f"Unknown {settings.name} model {settings.model!r}. Known models: {known}. "
            "Run `migrator models` to list every model migrator knows."
        )
    if price is None and settings.name == "local":
        price = 0.0  # runs on this machine
    return ModelSpec(
        provider=settings.name,
        model=settings.model,
        dims=0,
        max_inputs=settings.batch_size or 256,
        max_tokens_per_input=8192,
        price_per_mtok=price,
        notes="not in migrator's catalog: size probed" + (
            ", no price known" if price is None else ""),
    )


def build_embedder(settings: ProviderSettings, *, client: httpx.AsyncClient | None = None,
                   distance: str = "Cosine", cache: EmbeddingCache | None = None) -> Embedder:
    """The embedder the settings describe, at the size they ask for, as one stack: the
    provider endpoint (and its fallbacks), a meter of what it answers, the cache, and the
    truncation or padding on top. The cache sits below sizing, so the probe, the backfill,
    verification and every size of a truncation sweep share the model's own vectors.

    The size is decided by `sizing.decide`: asked of the model when it can produce it, else
    truncated or padded under `provider.dimension_policy`, else refused.

    Raises:
        ConfigError: unknown provider or model, missing API key, impossible dimensions.
    """
    inner, decision = _build_endpoint(settings, client, distance)
    if settings.fallbacks:
        check_same_model(settings, settings.fallbacks)
        inner = FallbackEmbedder([inner, *(
            _build_endpoint(settings.nested(f, f"fallbacks.{n}"), client, distance)[0]
            for n, f in enumerate(settings.fallbacks))])
    stack = compose(inner, cache)
    if decision.action in ("truncate", "pad") or (decision.action == "probed"
                                                  and decision.target):
        # a probed one settles on the first answer
        return AdaptedEmbedder(stack, decision, settings.setting)
    return stack


@contextlib.asynccontextmanager
async def embedding(settings: ProviderSettings, embedder: Embedder | None = None, *,
                    cache: EmbeddingCache | None = None, distance: str = "Cosine"
                    ) -> AsyncIterator[Embedder]:
    """`async with embedding(settings.provider, embedder, cache=cache) as model:` the stack a
    command embeds with: `build_embedder(settings)`, closed afterwards; or the caller's own
    `embedder` with the meter and the cache on it, released afterwards (left open). A
    self-hosted server's own limits are read before it is yielded."""
    model = (build_embedder(settings, distance=distance, cache=cache) if embedder is None
             else compose(embedder, cache))
    try:
        await model.adopt_server_limits()
        yield model
    finally:
        if embedder is None:
            await model.aclose()
        else:
            await model.release()  # the caller's embedder stays open


def compose(embedder: Embedder, cache: EmbeddingCache | None) -> Embedder:
    """`embedder` with the layers a run needs: a meter (unless it has one) and the cache
    (unless caching it is not worth it). For an embedder a caller built itself; close the
    result with `release()` to leave the caller's embedder open."""
    if embedder.usage is None:
        embedder = Metered(check_embedder(embedder))
    if cache is None or not embedder.worth_caching:
        return embedder
    return CachedEmbedder(embedder, cache)


def check_embedder(embedder: Embedder) -> Embedder:
    """`embedder`, once it has what a run asks of it before its first text: a `ModelSpec`
    (the cache, the state and the report name the model by it) and a batch size.

    Raises:
        TypeError: an embedder a caller wrote lacks one of them, named with what to give.
    """
    name = type(embedder).__name__
    spec = getattr(embedder, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise TypeError(
            f"{name}.spec is {type(spec).__name__}, not a migrator.ModelSpec: give it one, "
            "e.g. ModelSpec(provider='mine', model='m1', dims=384, max_inputs=64, "
            "max_tokens_per_input=512).")
    size = getattr(embedder, "batch_size", None)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise TypeError(f"{name}.batch_size is {size!r}: give the most texts one `embed` "
                        "call may be given, a whole number of at least 1.")
    return embedder


def _build_endpoint(settings: ProviderSettings, client: httpx.AsyncClient | None,
                    distance: str) -> tuple[Embedder, Any]:
    """One provider endpoint, asked for the decided size, and the size decision."""
    spec = model_spec(settings)
    if REGISTRY[settings.name].sized_on_load:
        inner = construct(spec, settings, None, client)
        return inner, decide(inner.spec, settings.dimensions,
                             policy=settings.dimension_policy, distance=distance,
                             send_dimensions=False, setting=settings.setting)
    decision = decide(spec, settings.dimensions, policy=settings.dimension_policy,
                      distance=distance, send_dimensions=settings.send_dimensions,
                      setting=settings.setting)
    return construct(spec, settings, decision.ask, client), decision
