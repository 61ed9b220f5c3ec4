"""A model of the caller's own, passed as `embedder=` (README, Python API): it gets the meter
and the cache like a provider, and what it gets wrong is named before anything is created."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from migrator import (
    CollectionSettings,
    Embedder,
    Embedding,
    MigrationSettings,
    ModelSpec,
    Settings,
    ingest,
    migrate,
)
from migrator.embedding import InputKind
from migrator.store import QdrantStore

from .conftest import make_collection

N = 60


class Hashed(Embedder):
    """A deterministic model of the caller's: a vector seeded by each text's digest."""

    spec = ModelSpec(provider="mine", model="m1", dims=32, max_inputs=16,
                     max_tokens_per_input=512)
    dims = 32
    batch_size = 16

    def __init__(self) -> None:
        self.texts = 0

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Any:
        self.texts += len(texts)
        rows = [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8]))
                .standard_normal(32) for t in texts]
        vectors = np.asarray(rows, dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return Embedding(vectors, tokens=sum(len(t.split()) for t in texts))

    async def aclose(self) -> None:
        pass


class NamedByString(Hashed):
    spec = "mine/m1"  # type: ignore[assignment]


class ReturnsAMatrix(Hashed):
    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Any:
        return (await super().embed(texts, kind=kind)).vectors


class DropsARow(Hashed):
    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Any:
        answer = await super().embed(texts, kind=kind)
        return Embedding(answer.vectors[1:], tokens=answer.tokens)


def settings(tmp_path: Path) -> Settings:
    return Settings(collections=[CollectionSettings(name="docs", alias="live")],
                    migration=MigrationSettings(state_dir=tmp_path / "state", page_size=16))


def test_the_callers_model_migrates_is_verified_and_cached(memory_store: QdrantStore,
                                                            tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=N)
    model = Hashed()
    result = migrate(settings(tmp_path), source_store=memory_store, embedder=model)
    target = result.collections[0].target
    assert memory_store.count(target) == N and memory_store.aliases()["live"] == target
    assert model.texts == N  # verification's queries came from the cache
    phases = result.bill.usage.phases
    assert sum(phase.texts for phase in phases.values()) == N  # the bill is what it embedded
    assert phases["backfill"].cached == phases["probe"].texts > 0
    model.texts = 0
    again = settings(tmp_path)
    again.collections = [CollectionSettings(name="docs", target="docs_again")]
    migrate(again, source_store=memory_store, embedder=model)
    assert model.texts == 0 and memory_store.count("docs_again") == N  # all from the cache


@pytest.mark.parametrize(("model", "message"), [
    (NamedByString(), "NamedByString.spec is str, not a migrator.ModelSpec: give it one"),
    (ReturnsAMatrix(), "ReturnsAMatrix.embed returned ndarray, not a migrator.Embedding: "
                       "return Embedding(vectors="),
    (DropsARow(), "DropsARow.embed was given 8 texts and returned vectors of shape (7, 32)"),
])
def test_what_the_callers_model_gets_wrong_is_named_and_blocks_nothing(
        memory_store: QdrantStore, tmp_path: Path, model: Embedder, message: str) -> None:
    """A str for `spec` failed deep in the run with "'str' object has no attribute
    'provider'", an ndarray from `embed` with "no attribute 'cached'"."""
    make_collection(memory_store.client, "docs", n=N)
    with pytest.raises(TypeError) as refused:
        migrate(settings(tmp_path), source_store=memory_store, embedder=model)
    assert message in str(refused.value)
    assert memory_store.aliases() == {} and memory_store.collection_names() == ["docs"]
    result = migrate(settings(tmp_path), source_store=memory_store, embedder=Hashed())
    assert memory_store.count(result.collections[0].target) == N  # the retry is not blocked


def test_ingest_takes_the_callers_model(memory_store: QdrantStore, tmp_path: Path) -> None:
    records = tmp_path / "notes.jsonl"
    records.write_text("".join(f'{{"id": {i}, "text": "note {i}"}}\n' for i in range(20)))
    with pytest.raises(TypeError, match="ReturnsAMatrix.embed returned ndarray"):
        ingest(records, "notes", settings(tmp_path), store=memory_store,
               embedder=ReturnsAMatrix())
    result = ingest(records, "notes", settings(tmp_path), store=memory_store, embedder=Hashed())
    assert result.stats.written == 20 and memory_store.count("notes") == 20
