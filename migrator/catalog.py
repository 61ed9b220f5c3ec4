"""Known embedding models: native size, output-dimension support, request limits, price.

Figures come from ../shared/PROVIDERS.md (mid-2026 snapshots). Prices are list prices in
US dollars per million input tokens; check them again before budgeting a large run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["BATCH", "BatchTerms", "lookup", "MODELS", "models_for", "ModelSpec",
           "open_providers", "Provider", "REGISTRY"]


@dataclass(frozen=True)
class Provider:
    """One provider in the registry: all migrator needs to know of it besides its models.
    Adding a provider is its module in `migrator/embedding/` plus one line in `REGISTRY`."""

    name: str
    embedder: str  # "module:Class" in migrator.embedding; the class has `from_settings`
    key_env: str | None = None  # the variable holding the API key, unless configured
    key_required: bool = False  # False: self-hosted servers often have no key
    catalog_only: bool = False  # a model the catalog lacks is refused (a closed list)
    sized_on_load: bool = False  # the size is known once the model is loaded (local)
    # runs on the user's own machines: asking it again costs nothing, and the name it is
    # given does not pin the model it serves (a server restarted with another model)
    self_hosted: bool = False


@dataclass(frozen=True)
class BatchTerms:
    """A provider's batch API as migrator speaks it: its price as a share of the
    synchronous one, and the window within which it answers."""

    price_factor: float
    window_hours: float


# providers whose batch API migrator speaks (docs/batch-apis.md)
BATCH: dict[str, BatchTerms] = {"openai": BatchTerms(0.5, 24), "gemini": BatchTerms(0.5, 24)}

REGISTRY: dict[str, Provider] = {p.name: p for p in (
    Provider("hashing", "hashing:HashingEmbedder", catalog_only=True),
    Provider("openai", "openai:OpenAIEmbedder", "OPENAI_API_KEY", True, catalog_only=True),
    Provider("azure", "openai:OpenAIEmbedder", "AZURE_OPENAI_API_KEY", True),
    Provider("openrouter", "openai:OpenAIEmbedder", "OPENROUTER_API_KEY", True),
    Provider("openai-compatible", "openai:OpenAIEmbedder", "OPENAI_COMPATIBLE_API_KEY"),
    Provider("local", "local:LocalEmbedder", sized_on_load=True, self_hosted=True),
    Provider("cohere", "cohere:CohereEmbedder", "CO_API_KEY", True, catalog_only=True),
    Provider("voyage", "voyage:VoyageEmbedder", "VOYAGE_API_KEY", True, catalog_only=True),
    Provider("mistral", "mistral:MistralEmbedder", "MISTRAL_API_KEY", True, catalog_only=True),
    Provider("gemini", "gemini:GeminiEmbedder", "GEMINI_API_KEY", True, catalog_only=True),
    Provider("ollama", "ollama:OllamaEmbedder", "OLLAMA_API_KEY", self_hosted=True),
    Provider("tei", "tei:TEIEmbedder", "TEI_API_KEY", self_hosted=True),
)}

# Providers that serve OpenAI's models under the same names; they share OpenAI's specs.
_OPENAI_ALIASES = {"azure": "openai", "openai-compatible": "openai"}


@dataclass(frozen=True)
class ModelSpec:
    """What migrator knows about one model as served by one provider.

    `output_dims_range` (inclusive) or `output_dims` (an explicit list) say which sizes the
    provider can be asked for natively; both empty means the size is fixed at `dims`.
    """

    provider: str
    model: str
    dims: int
    max_inputs: int
    max_tokens_per_input: int
    max_tokens_per_request: int | None = None
    price_per_mtok: float | None = None
    normalized: bool = True
    output_dims: tuple[int, ...] = ()
    output_dims_range: tuple[int, int] | None = None
    matryoshka: bool = False
    query_document_types: bool = False
    notes: str = ""

    @property
    def supports_output_dims(self) -> bool:
        return bool(self.output_dims) or self.output_dims_range is not None

    def accepts_dims(self, dims: int) -> bool:
        """True when the provider can be asked for `dims` natively (or it is the native size)."""
        if dims == self.dims:
            return True
        if dims in self.output_dims:
            return True
        low_high = self.output_dims_range
        return low_high is not None and low_high[0] <= dims <= low_high[1]

    def describe_dims(self) -> str:
        if self.output_dims:
            return ", ".join(str(d) for d in self.output_dims)
        if self.output_dims_range:
            return f"{self.output_dims_range[0]}-{self.output_dims_range[1]}"
        return str(self.dims)

    def cost(self, tokens: int) -> float | None:
        if self.price_per_mtok is None:
            return None
        return tokens * self.price_per_mtok / 1_000_000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _openai(model: str, dims: int, price: float, *, matryoshka: bool) -> ModelSpec:
    return ModelSpec(
        provider="openai",
        model=model,
        dims=dims,
        max_inputs=2048,
        max_tokens_per_input=8192,
        max_tokens_per_request=300_000,
        price_per_mtok=price,
        output_dims_range=(1, dims) if matryoshka else None,
        matryoshka=matryoshka,
    )


_OPENAI_MODELS = [
    _openai("text-embedding-3-small", 1536, 0.02, matryoshka=True),
    _openai("text-embedding-3-large", 3072, 0.13, matryoshka=True),
    _openai("text-embedding-ada-002", 1536, 0.10, matryoshka=False),
]

MODELS: list[ModelSpec] = [
    *_OPENAI_MODELS,
    *(
        ModelSpec(**{**spec.to_dict(), "provider": "openrouter", "model": f"openai/{spec.model}"})
        for spec in _OPENAI_MODELS
    ),
    ModelSpec("openrouter", "google/gemini-embedding-001", 3072, 100, 2048, None, 0.15,
              normalized=False, output_dims_range=(128, 3072), matryoshka=True),
    ModelSpec("cohere", "embed-v4.0", 1536, 96, 128_000, None, 0.12,
              output_dims=(256, 512, 1024, 1536), matryoshka=True, query_document_types=True),
    ModelSpec("cohere", "embed-english-v3.0", 1024, 96, 512, None, 0.10,
              query_document_types=True),
    ModelSpec("cohere", "embed-multilingual-v3.0", 1024, 96, 512, None, 0.10,
              query_document_types=True),
    ModelSpec("cohere", "embed-english-light-v3.0", 384, 96, 512, None, 0.10,
              query_document_types=True),
    *(
        ModelSpec("voyage", name, 1024, 1000, 32_000, cap, price,
                  output_dims=(256, 512, 1024, 2048), matryoshka=True, query_document_types=True)
        for name, cap, price in [
            ("voyage-4", 320_000, 0.06),
            ("voyage-4-lite", 1_000_000, 0.02),
            ("voyage-4-large", 120_000, 0.12),
            ("voyage-3.5", 320_000, 0.06),
            ("voyage-3.5-lite", 1_000_000, 0.02),
            ("voyage-3-large", 120_000, 0.18),
            ("voyage-code-3", 120_000, 0.18),
        ]
    ),
    ModelSpec("voyage", "voyage-3", 1024, 1000, 32_000, 320_000, 0.06, query_document_types=True),
    ModelSpec("voyage", "voyage-3-lite", 512, 1000, 32_000, 1_000_000, 0.02,
              query_document_types=True),
    ModelSpec("mistral", "mistral-embed", 1024, 256, 8192, 16_384, 0.10),
    ModelSpec("mistral", "codestral-embed", 1536, 256, 8192, 16_384, 0.15,
              output_dims_range=(1, 3072), matryoshka=True),
    ModelSpec("gemini", "gemini-embedding-001", 3072, 100, 2048, None, 0.15, normalized=False,
              output_dims_range=(128, 3072), matryoshka=True, query_document_types=True,
              notes="only the 3072-d output is normalised; migrator normalises the others"),
    ModelSpec("local", "sentence-transformers/all-MiniLM-L6-v2", 384, 64, 256, None, 0.0,
              notes="runs on this machine; install the 'local' extra"),
    ModelSpec("hashing", "hash-words-v1", 256, 1024, 100_000, None, 0.0,
              output_dims_range=(8, 65_536),
              notes="offline lexical baseline: word uni- and bigrams; not a semantic model"),
    ModelSpec("hashing", "hash-ngrams-v1", 384, 1024, 100_000, None, 0.0,
              output_dims_range=(8, 65_536),
              notes="offline lexical baseline: words, bigrams and character 3-5-grams"),
]

_INDEX = {(spec.provider, spec.model): spec for spec in MODELS}


def lookup(provider: str, model: str) -> ModelSpec | None:
    """The spec for `model` as served by `provider`, or None when migrator does not know it.

    Azure and OpenAI-compatible servers that serve an OpenAI model name get OpenAI's spec.
    """
    spec = _INDEX.get((provider, model))
    if spec is None and provider == "local" and "/" not in model:  # the hub's short name
        spec = _INDEX.get((provider, f"sentence-transformers/{model}"))
        if spec is not None:
            spec = ModelSpec(**{**spec.to_dict(), "model": model})
    if spec is None and provider in _OPENAI_ALIASES:
        base = _INDEX.get((_OPENAI_ALIASES[provider], model))
        if base is not None:
            spec = ModelSpec(**{**base.to_dict(), "provider": provider})
    return spec


def models_for(providers: Iterable[str] | None = None) -> list[ModelSpec]:
    """Every known model, optionally only those of the given providers (Azure's and an
    OpenAI-compatible server's include the OpenAI models they may serve under their names)."""
    if providers is None:
        return list(MODELS)
    wanted = set(providers)
    specs = [spec for spec in MODELS if spec.provider in wanted]
    for provider in sorted(wanted & set(_OPENAI_ALIASES)):
        specs += [replace(spec, provider=provider) for spec in MODELS
                  if spec.provider == _OPENAI_ALIASES[provider]]
    return specs


def open_providers(providers: Iterable[str]) -> list[str]:
    """The providers among `providers` that serve models the catalog does not list."""
    return [name for name in providers if not REGISTRY[name].catalog_only]
