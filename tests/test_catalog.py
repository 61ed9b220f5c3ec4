from __future__ import annotations

from migrator.catalog import lookup, models_for


def test_openai_models_and_output_dims() -> None:
    small = lookup("openai", "text-embedding-3-small")
    assert small is not None
    assert (small.dims, small.max_inputs, small.max_tokens_per_request) == (1536, 2048, 300_000)
    assert small.accepts_dims(512) and not small.accepts_dims(2048)
    ada = lookup("openai", "text-embedding-ada-002")
    assert ada is not None and not ada.supports_output_dims and not ada.accepts_dims(512)


def test_azure_and_compatible_servers_share_openai_specs() -> None:
    spec = lookup("azure", "text-embedding-3-large")
    assert spec is not None and spec.provider == "azure" and spec.dims == 3072
    assert lookup("openai-compatible", "bge-m3") is None


def test_fixed_choice_output_dims_and_costs() -> None:
    cohere = lookup("cohere", "embed-v4.0")
    assert cohere is not None and cohere.accepts_dims(512) and not cohere.accepts_dims(500)
    assert cohere.cost(2_000_000) == 0.24
    assert lookup("nobody", "nothing") is None


def test_every_entry_is_sane() -> None:
    specs = models_for()
    assert len({(s.provider, s.model) for s in specs}) == len(specs)
    for spec in specs:
        assert spec.dims > 0 and spec.max_inputs > 0 and spec.max_tokens_per_input > 0
        assert spec.accepts_dims(spec.dims)


def test_the_catalog_and_the_providers_agree_on_input_types() -> None:
    """Whether queries and documents share a cached vector is decided by the provider's
    request (an `input_type` or not), and the catalog says the same of each model."""
    import importlib

    from migrator.catalog import MODELS, REGISTRY

    for spec in MODELS:
        module, _, name = REGISTRY[spec.provider].embedder.partition(":")
        cls = getattr(importlib.import_module(f"migrator.embedding.{module}"), name)
        differ = cls.kinds_differ  # a class attribute, or the protocol's default property
        if isinstance(differ, property):
            differ = differ.fget(None)  # type: ignore[misc]
        assert differ is spec.query_document_types, (spec.provider, spec.model)
