"""Embedding providers behind one async protocol, and the registry that builds them."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ..catalog import ModelSpec, lookup
from ..errors import ConfigError
from ..settings import ProviderSettings
from .base import Embedder, Embedding, InputKind

__all__ = ["Embedder", "Embedding", "InputKind", "PROVIDERS", "build_embedder", "model_spec"]


def _hashing(spec: ModelSpec, settings: ProviderSettings, client: httpx.AsyncClient | None
             ) -> Embedder:
    from .hashing import HashingEmbedder

    return HashingEmbedder(spec, dims=settings.dimensions,
                           batch_size=settings.batch_size or spec.max_inputs)


def _openai(spec: ModelSpec, settings: ProviderSettings, client: httpx.AsyncClient | None
            ) -> Embedder:
    from .openai import OpenAIEmbedder

    return OpenAIEmbedder(spec, settings, client=client)


def _local(spec: ModelSpec, settings: ProviderSettings, client: httpx.AsyncClient | None
           ) -> Embedder:
    from .local import LocalEmbedder

    if settings.dimensions is not None and settings.dimensions != spec.dims and spec.dims:
        raise ConfigError(
            f"Local model {spec.model!r} produces {spec.dims} dimensions, not "
            f"{settings.dimensions}; remove provider.dimensions."
        )
    return LocalEmbedder(spec, batch_size=settings.batch_size)


Factory = Callable[[ModelSpec, ProviderSettings, "httpx.AsyncClient | None"], Embedder]

PROVIDERS: dict[str, Factory] = {
    "hashing": _hashing,
    "openai": _openai,
    "azure": _openai,
    "openrouter": _openai,
    "openai-compatible": _openai,
    "local": _local,
}


def model_spec(settings: ProviderSettings) -> ModelSpec:
    """The catalog entry for the configured model, or a stub for a model it lacks.

    A stub has `dims=0` (unknown until the first response) and generic limits.
    """
    spec = lookup(settings.name, settings.model)
    if spec is not None:
        return spec
    if settings.name in ("openai", "hashing"):
        from ..catalog import models_for

        known = ", ".join(s.model for s in models_for([settings.name]))
        raise ConfigError(
            f"Unknown {settings.name} model {settings.model!r}. Known models: {known}. "
            "Run `migrator models` to list every model migrator knows."
        )
    return ModelSpec(
        provider=settings.name,
        model=settings.model,
        dims=settings.dimensions or 0,
        max_inputs=settings.batch_size or 256,
        max_tokens_per_input=8192,
        notes="not in migrator's catalog: size probed, no price known",
    )


def build_embedder(settings: ProviderSettings, *, client: httpx.AsyncClient | None = None
                   ) -> Embedder:
    """Build the embedder the settings describe.

    Raises:
        ConfigError: unknown provider or model, missing API key, impossible dimensions.
    """
    factory = PROVIDERS.get(settings.name)
    if factory is None:  # settings validation normally catches this first
        raise ConfigError(f"Unknown provider {settings.name!r}; choose one of "
                          f"{', '.join(sorted(PROVIDERS))}.")
    return factory(model_spec(settings), settings, client)
