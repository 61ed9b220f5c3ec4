"""Embedding providers behind one async protocol, and the registry that builds them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from ..catalog import ModelSpec, lookup, models_for
from ..errors import ConfigError
from ..settings import ProviderSettings
from .base import Embedder, Embedding, InputKind

__all__ = ["Embedder", "Embedding", "InputKind", "PROVIDERS", "build_embedder", "model_spec"]

# (spec, settings, size to ask the provider for, injected HTTP client) -> embedder
Factory = Callable[[ModelSpec, ProviderSettings, "int | None", "httpx.AsyncClient | None"],
                   Embedder]


def _hashing(spec: ModelSpec, settings: ProviderSettings, ask: int | None,
             client: httpx.AsyncClient | None) -> Embedder:
    from .hashing import HashingEmbedder

    return HashingEmbedder(spec, dims=ask, batch_size=settings.batch_size or spec.max_inputs)


def _openai(spec: ModelSpec, settings: ProviderSettings, ask: int | None,
            client: httpx.AsyncClient | None) -> Embedder:
    from .openai import OpenAIEmbedder

    return OpenAIEmbedder(spec, settings, ask=ask, client=client)


def _local(spec: ModelSpec, settings: ProviderSettings, ask: int | None,
           client: httpx.AsyncClient | None) -> Embedder:
    from .local import LocalEmbedder

    return LocalEmbedder(spec, batch_size=settings.batch_size)


def _rest(module: str, name: str) -> Factory:
    """A factory for a `RestEmbedder` subclass, imported when first used."""
    def build(spec: ModelSpec, settings: ProviderSettings, ask: int | None,
              client: httpx.AsyncClient | None) -> Embedder:
        import importlib

        cls = getattr(importlib.import_module(f".{module}", __name__), name)
        embedder: Embedder = cls(spec, settings, ask=ask, client=client)
        return embedder
    return build


PROVIDERS: dict[str, Factory] = {
    "cohere": _rest("cohere", "CohereEmbedder"),
    "voyage": _rest("voyage", "VoyageEmbedder"),
    "mistral": _rest("mistral", "MistralEmbedder"),
    "gemini": _rest("gemini", "GeminiEmbedder"),
    "ollama": _rest("ollama", "OllamaEmbedder"),
    "tei": _rest("tei", "TEIEmbedder"),
    "hashing": _hashing,
    "openai": _openai,
    "azure": _openai,
    "openrouter": _openai,
    "openai-compatible": _openai,
    "local": _local,
}
# Providers whose size is known only once the model is loaded: decide after building.
_SIZED_ON_LOAD = {"local"}


def model_spec(settings: ProviderSettings) -> ModelSpec:
    """The catalog entry for the configured model, or a stub for a model it lacks.

    A stub has `dims=0` (unknown until the first response) and generic limits.
    """
    spec = lookup(settings.name, settings.model)
    if spec is not None:
        return spec
    if settings.name in ("openai", "hashing", "cohere", "voyage", "mistral", "gemini"):
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
    from .sizing import AdaptedEmbedder

    inner, decision = _build_endpoint(settings, client, distance)
    if settings.fallbacks:
        from .fallback import FallbackEmbedder, check_same_model

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
    from .sizing import decide

    factory = PROVIDERS.get(settings.name)
    if factory is None:  # settings validation normally catches this first
        raise ConfigError(f"Unknown provider {settings.name!r}; choose one of "
                          f"{', '.join(sorted(PROVIDERS))}.")
    spec = model_spec(settings)
    if settings.name in _SIZED_ON_LOAD:
        inner = factory(spec, settings, None, client)
        return inner, decide(inner.spec, settings.dimensions,
                             policy=settings.dimension_policy, distance=distance,
                             send_dimensions=False)
    decision = decide(spec, settings.dimensions, policy=settings.dimension_policy,
                      distance=distance, send_dimensions=settings.send_dimensions)
    return factory(spec, settings, decision.ask, client), decision
