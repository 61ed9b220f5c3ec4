from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from migrator import ConfigError, ProviderSettings
from migrator.embedding import construct, model_spec


def embedder(model: str = "hash-ngrams-v1", dims: int | None = None):  # type: ignore[no-untyped-def]
    """The provider itself, without the layers `build_embedder` puts on it."""
    settings = ProviderSettings(name="hashing", model=model, dimensions=dims)
    return construct(model_spec(settings), settings, dims, None)


def test_unit_length_any_dimension_and_deterministic() -> None:
    for dims in (8, 100, 1024):
        vectors = embedder(dims=dims).embed_sync(["the tide comes in", "bread dough"])
        assert vectors.shape == (2, dims) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    again = embedder(dims=100).embed_sync(["the tide comes in"])
    np.testing.assert_array_equal(again[0], embedder(dims=100).embed_sync(["the tide comes in"])[0])


def test_stable_across_processes() -> None:
    code = ("from migrator.embedding import construct, model_spec;"
            "from migrator import ProviderSettings;"
            "s = ProviderSettings(name='hashing', model='hash-words-v1');"
            "e = construct(model_spec(s), s, None, None);"
            "print(e.embed_sync(['salt in the sea'])[0][:4].tolist())")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={"PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2")}
    assert len(outputs) == 1


def test_shared_words_score_higher_than_unrelated_text() -> None:
    e = embedder()
    query, near, far = e.embed_sync(["salty sea water", "why the sea is salty",
                                     "guitar chords for beginners"])
    assert float(query @ near) > float(query @ far) + 0.2


def test_ngrams_model_matches_inflections_the_words_model_misses() -> None:
    words, ngrams = embedder("hash-words-v1", 256), embedder("hash-ngrams-v1", 256)
    a, b = "migrating collections", "migration of a collection"
    wa, wb = words.embed_sync([a, b])
    na, nb = ngrams.embed_sync([a, b])
    assert float(na @ nb) > float(wa @ wb) + 0.2


def test_models_differ_and_unknown_models_are_refused() -> None:
    a = embedder("hash-words-v1", 64).embed_sync(["x y z"])[0]
    b = embedder("hash-ngrams-v1", 64).embed_sync(["x y z"])[0]
    assert not np.allclose(a, b)
    with pytest.raises(ConfigError, match="Unknown hashing model 'hash-v9'"):
        embedder("hash-v9")


def test_async_embed_reports_estimated_tokens() -> None:
    result = asyncio.run(embedder().embed(["abcdef", "abc"]))
    assert result.tokens_estimated and result.tokens == 3
