"""Embedding providers behind one async protocol, and the registry that builds them."""

from __future__ import annotations

import importlib
from typing import Any

import httpx

from ..catalog import REGISTRY, ModelSpec, lookup, models_for
from ..errors import ConfigError
from ..settings import ProviderSettings
from .base import Embedder, Embedding, InputKind
from .fallback import FallbackEmbedder, check_same_model
from .sizing import AdaptedEmbedder, decide

__all__ = ["Embedder", "Embedding", "InputKind", "build_embedder", "construct", "model_spec"]


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
    """The catalog entry for the configured model, or a stub for a model it lacks.

    A stub has `dims=0` (unknown until the first response) and generic limits.
    """
    spec = lookup(settings.name, settings.model)
    if spec is not None:
        return spec
    if REGISTRY[settings.name].catalog_only:
        known = ", ".join(s.model for s in models_for([settings.name]))
        raise ConfigError(
            f"Unknown {settings.name} model {settings.model!r}. Known models: {known}. "
            "Run `migrator models` to list every model migrator knows."
        )
    return ModelSpec(
        provider=settings.name,
        model=settings.model,
        dims=0,
        max_inputs=settings.batch_size or 256,
        max_tokens_per_input=8192,
        price_per_mtok=0.0 if settings.name == "local" else None,  # runs on this machine
        notes="not in migrator's catalog: size probed" + (
            "" if settings.name == "local" else ", no price known"),
    )


def build_embedder(settings: ProviderSettings, *, client: httpx.AsyncClient | None = None,
                   distance: str = "Cosine") -> Embedder:
    """Build the embedder the settings describe, at the size the settings ask for.

    The size is decided by `migrator.dims.decide`: asked of the model when it can produce
    it, else truncated or padded under `provider.dimension_policy`, else refused.

    Raises:
        ConfigError: unknown provider or model, missing API key, impossible dimensions.
    """
    inner, decision = _build_endpoint(settings, client, distance)
    if settings.fallbacks:
        check_same_model(settings, settings.fallbacks)
        inner = FallbackEmbedder([inner, *(_build_endpoint(f, client, distance)[0]
                                           for f in settings.fallbacks)])
    if decision.action in ("truncate", "pad") or (decision.action == "probed"
                                                  and decision.target):
        return AdaptedEmbedder(inner, decision)  # a probed one settles on the first answer
    return inner


def _build_endpoint(settings: ProviderSettings, client: httpx.AsyncClient | None,
                    distance: str) -> tuple[Embedder, Any]:
    """One provider endpoint, asked for the decided size, and the size decision."""
    spec = model_spec(settings)
    if REGISTRY[settings.name].sized_on_load:
        inner = construct(spec, settings, None, client)
        return inner, decide(inner.spec, settings.dimensions,
                             policy=settings.dimension_policy, distance=distance,
                             send_dimensions=False)
    decision = decide(spec, settings.dimensions, policy=settings.dimension_policy,
                      distance=distance, send_dimensions=settings.send_dimensions)
    return construct(spec, settings, decision.ask, client), decision
