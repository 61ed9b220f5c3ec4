"""A self-hosted server restarted with another model under the same name: the cache holds
the first model's vectors, and a run resumed (or run again) would mix them with the second
model's in one collection. The cache asks the server one text again before that."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from migrator import (
    CollectionSettings,
    ConfigError,
    MigrationSettings,
    ProviderSettings,
    Settings,
    ingest,
    migrate,
)
from migrator.comparison import compare
from migrator.comparison.candidates import Candidate
from migrator.comparison.datasets import load_texts
from migrator.embedding import build_embedder
from migrator.store import QdrantStore
from migrator.vector_cache import EmbeddingCache

from .conftest import make_collection


class TEI:
    """A text-embeddings-inference double: `/embed` answers each text with a unit vector
    drawn from the text and from `model` (change it: the server serves another model)."""

    def __init__(self) -> None:
        self.model, self.dims = 1, 16
        self.texts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["inputs"]
        self.texts += len(inputs)
        rows = []
        for text in inputs:
            vector = np.random.default_rng([self.model, zlib.crc32(text.encode())]
                                           ).standard_normal(self.dims)
            rows.append((vector / np.linalg.norm(vector)).tolist())
        return httpx.Response(200, json=rows, headers={"x-compute-tokens": str(len(inputs))})

    def embedder(self) -> Any:
        provider = ProviderSettings(name="tei", model="served", base_url="http://tei")
        return build_embedder(provider, client=httpx.AsyncClient(
            transport=httpx.MockTransport(self)))


def settings(tmp_path: Path, target: str) -> Settings:
    return Settings(
        provider=ProviderSettings(name="tei", model="served", base_url="http://tei"),
        collections=[CollectionSettings(name="docs", target=target)],
        migration=MigrationSettings(state_dir=tmp_path / "state", page_size=16))


@pytest.mark.parametrize(("dims", "unlike"), [(16, "cosine "), (24, "24 values, not the 16")])
def test_a_migration_on_a_server_that_changed_its_model_stops_before_writing(
        memory_store: QdrantStore, tmp_path: Path, dims: int, unlike: str) -> None:
    make_collection(memory_store.client, "docs", n=40)
    server = TEI()
    migrate(settings(tmp_path, "first"), source_store=memory_store, embedder=server.embedder())
    sent = server.texts
    migrate(settings(tmp_path, "again"), source_store=memory_store, embedder=server.embedder())
    assert server.texts == sent + 1  # the same model: one text asked again, all else cached
    server.model, server.dims = 2, dims
    with pytest.raises(ConfigError) as refused:
        migrate(settings(tmp_path, "mixed"), source_store=memory_store,
                embedder=server.embedder())
    assert "tei (served) no longer answers what the embedding cache holds for it" in str(
        refused.value)
    assert "Give the model a name of its own" in str(refused.value)
    assert f"the same text gets another vector now ({unlike}" in str(refused.value)
    assert not memory_store.exists("mixed")


def test_ingest_on_a_server_that_changed_its_model_stops_before_writing(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"note {i}"}) + "\n"
                            for i in range(20)))
    server = TEI()
    config = settings(tmp_path, "unused")
    ingest(path, "notes", config, store=memory_store, embedder=server.embedder())
    server.model = 2
    with pytest.raises(ConfigError, match="no longer answers what the embedding cache holds"):
        ingest(path, "notes", config, store=memory_store, embedder=server.embedder())
    assert memory_store.count("notes") == 20  # the first run's collection, untouched


def test_ingest_checks_the_text_as_prepared_when_the_first_is_cut(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """The first record over the model's limit is cut under long_input: truncate, and the
    cache holds the cut text: asked with the whole one, the check found nothing to compare."""
    path = tmp_path / "notes.jsonl"
    long = " ".join(f"word{i}" for i in range(40_000))
    path.write_text("".join(json.dumps({"id": i, "text": long if i == 0 else f"note {i}"})
                            + "\n" for i in range(10)))
    server = TEI()
    config = settings(tmp_path, "unused")
    config.provider.long_input = "truncate"
    ingest(path, "notes", config, store=memory_store, embedder=server.embedder())
    server.model = 2
    with pytest.raises(ConfigError, match="no longer answers what the embedding cache holds"):
        ingest(path, "notes", config, store=memory_store, embedder=server.embedder())


def test_compare_on_a_server_that_changed_its_model_fails_that_candidate(
        tmp_path: Path) -> None:
    """A comparison read the first model's vectors from the cache and scored them as the
    second's: its figures would describe a model the server no longer serves."""
    path = tmp_path / "notes.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "text": f"note {i} on tides"})
                              for i in range(30)))
    dataset = load_texts(path, queries=5)
    server = TEI()
    candidate = Candidate("tei:served", ProviderSettings(name="tei", model="served",
                                                         base_url="http://tei"))
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    with EmbeddingCache(tmp_path / "state") as cache:
        assert compare(dataset, [candidate], cache=cache, client=client).candidates[0].ok
        server.model = 2
        refused = compare(dataset, [candidate], cache=cache, client=client).candidates[0]
    assert not refused.ok
    assert "no longer answers what the embedding cache holds" in (refused.error or "")
