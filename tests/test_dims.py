"""Dimension policy, the preflight probe, and truncation fidelity."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from migrator import (
    CollectionSettings,
    ConfigError,
    DimensionMismatch,
    MigrationSettings,
    ProviderSettings,
    SchemaMismatch,
    Settings,
    migrate,
)
from migrator.catalog import lookup
from migrator.embedding import build_embedder
from migrator.embedding.adapter import AdaptedEmbedder
from migrator.embedding.http import SAME_WRONG_ANSWERS
from migrator.embedding.sizing import (
    DimsDecision,
    decide,
    settle,
    truncation_fidelity,
)
from migrator.store import QdrantStore

from .conftest import make_collection
from .loopback import LoopbackServer

ADA = lookup("openai", "text-embedding-ada-002")
SMALL = lookup("openai", "text-embedding-3-small")
COHERE = lookup("cohere", "embed-v4.0")
assert ADA and SMALL and COHERE


@pytest.mark.parametrize("distance", ["Cosine", "Dot", "Euclid"])
def test_truncate_keeps_the_first_values_and_renormalises_for_cosine_and_dot(
        distance: str) -> None:
    decision = decide(ADA, 4, policy="truncate", distance=distance)
    assert (decision.action, decision.ask, decision.target) == ("truncate", None, 4)
    vectors = np.array([[3.0, 0.0, 4.0, 0.0, 9.0, 9.0]], dtype=np.float32)
    out = decision.apply(vectors)
    if distance == "Euclid":
        np.testing.assert_allclose(out, [[3, 0, 4, 0]])
    else:
        np.testing.assert_allclose(out, [[0.6, 0, 0.8, 0]], rtol=1e-6)


@pytest.mark.parametrize("distance", ["Cosine", "Dot", "Euclid"])
def test_pad_appends_zeros_and_keeps_scores(distance: str) -> None:
    decision = decide(ADA, 2000, policy="pad", distance=distance)
    assert decision.action == "pad" and decision.wasted_bytes_per_vector == (2000 - 1536) * 4
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 1536)).astype(np.float32)
    pa, pb = decision.apply(np.vstack([a, b]))
    assert pa.shape == (2000,) and not pa[1536:].any()
    assert float(pa @ pb) == pytest.approx(float(a @ b), rel=1e-5)
    assert float(np.linalg.norm(pa - pb)) == pytest.approx(float(np.linalg.norm(a - b)),
                                                            rel=1e-5)


@pytest.mark.parametrize("distance", ["Cosine", "Dot", "Euclid"])
@pytest.mark.parametrize(("policy", "size"), [("error", 512), ("pad", 512), ("truncate", 2000)])
def test_what_the_policy_cannot_do_is_refused_with_the_sizes(policy: str, size: int,
                                                             distance: str) -> None:
    with pytest.raises(ConfigError, match=f"produces 1536-dimensional.*asks for {size}"):
        decide(ADA, size, policy=policy, distance=distance)  # type: ignore[arg-type]


def test_native_output_sizes_are_requested_only_where_supported() -> None:
    assert decide(SMALL, 512).action == "requested" and decide(SMALL, 512).ask == 512
    assert decide(SMALL, None).action == "native" and decide(SMALL, 1536).ask is None
    assert decide(COHERE, 512).ask == 512
    with pytest.raises(ConfigError, match="sizes it can produce: 256, 512, 1024, 1536"):
        decide(COHERE, 500)
    assert decide(COHERE, 500, policy="truncate").action == "truncate"
    assert decide(ADA, 512, send_dimensions=True).action == "requested"
    assert decide(SMALL, 512, policy="truncate", send_dimensions=False).action == "truncate"


def test_models_the_catalog_lacks() -> None:
    from migrator.catalog import ModelSpec

    stub = ModelSpec("openai-compatible", "bge", 0, 256, 8192)
    assert decide(stub, None).action == "probed"
    assert decide(stub, 256).ask == 256
    assert decide(stub, 256).describe() == (
        "256 requested from the model natively (native size not in the catalog)")  # not 0
    assert decide(stub, 256, send_dimensions=False) == DimsDecision(
        "probed", 0, None, 256, renormalize=True)
    # issue 11.7: truncate/pad learn the native size without sending `dimensions`
    cut = decide(stub, 256, policy="truncate")
    assert cut.action == "probed" and cut.ask is None and cut.policy == "truncate"
    assert settle(cut, 384).action == "truncate" and settle(cut, 384).output == 384
    assert settle(decide(stub, 512, policy="pad"), 384).action == "pad"
    assert settle(cut, 256).action == "native"
    with pytest.raises(DimensionMismatch, match="dimension_policy: pad"):
        settle(cut, 128)


def test_consequences_state_bytes() -> None:
    facts = decide(SMALL, 512).consequences()
    assert facts["bytes_per_vector"] == 2048
    assert facts["bytes_per_million_points"] == 2_048_000_000


def test_build_embedder_wraps_only_truncate_and_pad() -> None:
    hashing = build_embedder(ProviderSettings(name="hashing", model="hash-words-v1",
                                              dimensions=64))
    assert not isinstance(hashing, AdaptedEmbedder) and hashing.dims == 64


def settings(tmp_path: Path, **provider: object) -> Settings:
    return Settings(provider=ProviderSettings(**provider),  # type: ignore[arg-type]
                    collections=[CollectionSettings(name="docs", alias="live")],
                    migration=MigrationSettings(state_dir=tmp_path, page_size=32))


def test_truncating_a_non_matryoshka_model_warns_with_measured_fidelity(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=60)
    with LoopbackServer(dims=1536) as server:
        result = migrate(settings(tmp_path, name="openai-compatible",
                                  model="text-embedding-ada-002", base_url=server.url,
                                  dimensions=256, dimension_policy="truncate"),
                         source_store=memory_store)
        assert all("dimensions" not in body for body in server.bodies)
    assert result.dims == 256 and result.dims_decision is not None
    assert result.dims_decision.action == "truncate"
    assert any("not known to be trained for truncation" in w and "recall@10 = 0." in w
               for w in result.warnings)
    point = memory_store.client.scroll(result.collections[0].target, limit=1,
                                       with_vectors=True)[0][0]
    assert len(point.vector) == 256
    assert float(np.linalg.norm(point.vector)) == pytest.approx(1.0, abs=1e-4)


def test_padding_reports_the_waste(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=10)
    with LoopbackServer(dims=1536) as server:
        result = migrate(settings(tmp_path, name="openai-compatible",
                                  model="text-embedding-ada-002", base_url=server.url,
                                  dimensions=2048, dimension_policy="pad"),
                         source_store=memory_store)
    assert result.to_dict()["dims_decision"]["wasted_bytes_per_vector"] == 2048
    assert any("wastes 2048 bytes per vector" in w for w in result.warnings)


def test_probe_catches_a_server_that_ignores_dimensions(memory_store: QdrantStore,
                                                        tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=10)
    with LoopbackServer(dims=1536, honour_dimensions=False) as server:
        with pytest.raises(DimensionMismatch, match="Preflight probe.*1536 values, expected "
                                                    "512.*shortening vectors silently"):
            migrate(settings(tmp_path, name="openai-compatible",
                             model="text-embedding-3-small", base_url=server.url,
                             dimensions=512), source_store=memory_store)
        assert server.requests == SAME_WRONG_ANSWERS  # the same wrong answer: refused
    assert memory_store.collection_names() == ["docs"]


def test_probe_catches_a_server_that_cuts_vectors(memory_store: QdrantStore,
                                                  tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=10)
    cut = pytest.raises(DimensionMismatch, match="768 values, expected 1536")
    with LoopbackServer(dims=768) as server, cut:  # text-embedding-3-small gives 1536
        migrate(settings(tmp_path, name="openai-compatible", model="text-embedding-3-small",
                         base_url=server.url), source_store=memory_store)
    assert memory_store.collection_names() == ["docs"]


def test_probe_catches_unnormalised_output(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=10)
    unnormalised = pytest.raises(DimensionMismatch, match="norm 3.000-3.000.*unit length")
    with LoopbackServer(dims=1536, scale=3.0) as server, unnormalised:
        migrate(settings(tmp_path, name="openai-compatible", model="text-embedding-3-small",
                         base_url=server.url), source_store=memory_store)


def test_existing_target_with_another_distance_is_refused(memory_store: QdrantStore,
                                                          tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=5)
    config = settings(tmp_path, name="hashing", model="hash-words-v1", dimensions=8)
    config.collections[0].target = "docs_new"
    migrate(config, source_store=memory_store)
    config.collections[0].distance = "Dot"
    with pytest.raises(SchemaMismatch, match="'docs_new'.*vector \\(unnamed\\) is compared by "
                                             "Cosine distance; this run's is Dot \\(--distance\\)"
                                             ".*Give --distance cosine \\(the distance it was "
                                             "made with\\), or another --target"):
        migrate(config, source_store=memory_store)


def test_fidelity_is_one_when_the_tail_carries_nothing() -> None:
    rng = np.random.default_rng(1)
    vectors = np.hstack([rng.standard_normal((200, 16)), np.zeros((200, 48))])
    assert truncation_fidelity(vectors, 16) == 1.0
    assert truncation_fidelity(vectors, 8) < 0.8


def test_fidelity_is_near_chance_when_the_head_carries_nothing() -> None:
    rng = np.random.default_rng(2)
    vectors = np.hstack([np.ones((300, 8)), rng.standard_normal((300, 56))])
    # the first 8 values are identical everywhere: every neighbour list is a guess
    assert truncation_fidelity(vectors, 8) < 0.15
    assert truncation_fidelity(vectors, 64) == 1.0


def test_adapted_embedder_passes_tokens_through() -> None:
    inner = build_embedder(ProviderSettings(name="hashing", model="hash-words-v1",
                                            dimensions=32))
    adapted = AdaptedEmbedder(inner, DimsDecision("truncate", 32, None, 8, renormalize=True))
    result = asyncio.run(adapted.embed(["abc def"]))
    assert result.vectors.shape == (1, 8) and result.tokens == 3
