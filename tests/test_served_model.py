"""Self-hosted servers (TEI here) as they are: one restarted with another model under the
same name (the cache holds the first model's vectors, and a run resumed or run again would
mix them with the second's; the cache asks the server one text again before that), and a
model whose token limit migrator does not know."""

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
    InputTooLong,
    MigrationSettings,
    ProviderResponseError,
    ProviderSettings,
    Settings,
    ingest,
    migrate,
    sync,
    verify,
)
from migrator.comparison import compare
from migrator.comparison.candidates import Candidate
from migrator.comparison.datasets import load_texts
from migrator.comparison.report import terminal
from migrator.embedding import build_embedder
from migrator.report import sync as render_sync
from migrator.report import verify as render_verify
from migrator.store import QdrantStore
from migrator.vector_cache import EmbeddingCache

from .conftest import make_collection


class TEI:
    """A text-embeddings-inference double: `/embed` answers each text with a unit vector
    drawn from the text and from `model` (change it: the server serves another model)."""

    def __init__(self, limit: int | None = None, max_batch: int | None = None,
                 info: bool = False) -> None:
        self.model, self.dims = 1, 16
        self.texts = 0
        self.limit = limit  # the model's tokens (words, here) per input
        self.max_batch = max_batch  # --max-client-batch-size
        self.info = info  # whether GET /info says what the limits are
        self.truncated: set[bool] = set()  # what requests asked of `truncate`
        self.longest_sent = 0  # characters
        self.largest_batch = 0
        self.refused = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            if request.url.path != "/info" or not self.info:
                return httpx.Response(404)
            return httpx.Response(200, json={
                "model_id": "BAAI/bge-small-en-v1.5", "max_input_length": self.limit or 512,
                "max_client_batch_size": self.max_batch or 32, "max_batch_tokens": 16384})
        body = json.loads(request.content)
        inputs = body["inputs"]
        if self.max_batch is not None and len(inputs) > self.max_batch:
            self.refused += 1
            return httpx.Response(422, json={
                "error": f"batch size {len(inputs)} > maximum allowed batch size "
                         f"{self.max_batch}", "error_type": "Validation"})
        self.largest_batch = max(self.largest_batch, len(inputs))
        self.truncated.add(body["truncate"])
        self.longest_sent = max(self.longest_sent, *map(len, inputs))
        if self.limit is not None:
            longest = max(len(text.split()) for text in inputs)
            if longest > self.limit and not body["truncate"]:
                self.refused += 1
                return httpx.Response(422, json={
                    "error": f"Input validation error: `inputs` must have less than "
                             f"{self.limit + 1} tokens. Given: {longest}",
                    "error_type": "Validation"})
            inputs = [" ".join(text.split()[:self.limit]) for text in inputs]
        self.texts += len(inputs)
        rows = []
        for text in inputs:
            vector = np.random.default_rng([self.model, zlib.crc32(text.encode())]
                                           ).standard_normal(self.dims)
            rows.append((vector / np.linalg.norm(vector)).tolist())
        return httpx.Response(200, json=rows, headers={"x-compute-tokens": str(len(inputs))})

    def embedder(self, **settings: Any) -> Any:
        provider = ProviderSettings(name="tei", model="served", base_url="http://tei",
                                    **settings)
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
        again = compare(dataset, [candidate], cache=cache, client=client).candidates[0]
        assert again.ok and again.latencies == []  # the check is no measured request
        server.model = 2
        refused = compare(dataset, [candidate], cache=cache, client=client).candidates[0]
    assert not refused.ok
    assert "no longer answers what the embedding cache holds" in (refused.error or "")


def long_texts(i: int, text: str) -> dict[str, Any]:
    return {"text": " ".join(f"w{i}x{j}" for j in range(6 if i % 2 else 40))}


def test_texts_over_a_tei_models_limit_are_cut_by_the_server_under_truncate(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """TEI was always sent `truncate: false`, and migrator cuts a model it does not know at
    a guessed 8,192 tokens: a 512-token model refused every long text, whatever
    long_input said, and nothing told the user what to set."""
    make_collection(memory_store.client, "docs", n=20, payload=long_texts)
    server = TEI(limit=16)
    with pytest.raises(ProviderResponseError) as refused:
        migrate(settings(tmp_path, "refused"), source_store=memory_store,
                embedder=server.embedder())
    assert ("A text is longer than the model takes: set provider.max_tokens_per_input to its "
            "limit (17) and --long-input to truncate or chunk-mean") in str(refused.value)
    config = settings(tmp_path, "cut")
    config.provider.long_input = "truncate"
    cutting = TEI(limit=16)
    result = migrate(config, source_store=memory_store, embedder=cutting.embedder(
        long_input="truncate"))
    assert result.collections[0].target_count == 20 and cutting.truncated == {True}
    assert not memory_store.exists("refused")
    # a limit given still cuts the texts first (a request stays within the server's payload
    # limit, whatever the documents hold); the server cuts the rest exactly
    config = settings(tmp_path, "both")
    config.provider.long_input, config.provider.max_tokens_per_input = "truncate", 20
    both = TEI(limit=16)
    migrate(config, source_store=memory_store, embedder=both.embedder(
        long_input="truncate", max_tokens_per_input=20))
    assert both.truncated == {True} and both.longest_sent <= 20 * 4


def test_a_limit_given_lists_the_texts_over_it_instead_of_sending_them(memory_store: QdrantStore,
                                                              tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=20, payload=long_texts)
    server = TEI(limit=16)
    config = settings(tmp_path, "listed")
    config.provider.max_tokens_per_input = 16
    with pytest.raises(InputTooLong):
        migrate(config, source_store=memory_store, embedder=server.embedder(
            max_tokens_per_input=16))
    assert server.truncated == {False}


def test_a_tei_servers_own_limits_are_read_from_it(memory_store: QdrantStore,
                                                   tmp_path: Path) -> None:
    """A TEI server says in `GET /info` how many texts a request (--max-client-batch-size)
    and how many tokens a text (the model's) it takes. Unread, a batch size above the
    server's had every request refused, and a model migrator does not know was taken to
    accept 8,192 tokens: its long texts were sent, and refused, instead of listed."""
    make_collection(memory_store.client, "docs", n=20, payload=long_texts)
    server = TEI(limit=16, max_batch=8, info=True)
    config = settings(tmp_path, "listed")
    with pytest.raises(InputTooLong) as listed:  # long_input: fail lists them, sends none
        migrate(config, source_store=memory_store, embedder=server.embedder())
    assert "10 points of 'docs' have a text longer than" in str(listed.value)
    assert server.refused == 0
    assert server.largest_batch <= 8

    cutting = TEI(limit=16, max_batch=8, info=True)
    config = settings(tmp_path, "cut")
    config.provider.long_input, config.provider.batch_size = "truncate", 32
    embedder = cutting.embedder(long_input="truncate", batch_size=32)
    result = migrate(config, source_store=memory_store, embedder=embedder)
    assert result.collections[0].target_count == 20 and cutting.refused == 0
    assert (embedder.batch_size, embedder.spec.max_tokens_per_input) == (8, 16)
    assert cutting.largest_batch <= 8 and cutting.longest_sent <= 16 * 4
    assert ("tei (served) takes at most 8 texts a request (its /info): provider.batch_size "
            "32 is lowered to 8.") in result.warnings


def test_every_command_that_embeds_says_when_it_lowered_a_limit(memory_store: QdrantStore,
                                                                 tmp_path: Path) -> None:
    """Only migrate printed the note: sync, ingest, verify and compare sent smaller requests
    than configured without a word."""
    make_collection(memory_store.client, "docs", n=20)
    server = TEI(max_batch=8, info=True)
    config = settings(tmp_path, "docs_tei")
    config.provider.batch_size = 32
    note = ("tei (served) takes at most 8 texts a request (its /info): provider.batch_size "
            "32 is lowered to 8.")
    migrate(config, source_store=memory_store, embedder=server.embedder(batch_size=32))
    synced = sync(config, source_store=memory_store, embedder=server.embedder(batch_size=32))
    assert note in synced.warnings and f"warning: {note}" in render_sync(synced)
    verified = verify(config, source_store=memory_store,
                      embedder=server.embedder(batch_size=32))
    assert verified.warnings == [note] and f"warning: {note}" in render_verify(verified)
    path = tmp_path / "notes.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "text": f"note {i}"}) for i in range(20)))
    ingested = ingest(path, "notes", config, store=memory_store,
                      embedder=server.embedder(batch_size=32))
    assert note in ingested.warnings
    candidate = Candidate("tei:served", ProviderSettings(
        name="tei", model="served", base_url="http://tei", batch_size=32))
    compared = compare(load_texts(path, queries=5), [candidate],
                       client=httpx.AsyncClient(transport=httpx.MockTransport(server)))
    assert compared.candidates[0].warnings == [note]
    assert f"warning: tei:served: {note}" in terminal(compared)
    assert server.refused == 0


def test_a_server_that_does_not_say_its_limits_is_sent_what_was_configured(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=20)
    server = TEI(info=False)
    config = settings(tmp_path, "plain")
    config.provider.batch_size = 12
    embedder = server.embedder(batch_size=12)
    result = migrate(config, source_store=memory_store, embedder=embedder)
    assert result.collections[0].target_count == 20
    assert (embedder.batch_size, embedder.spec.max_tokens_per_input) == (12, 8192)
    assert not any("takes at most" in warning for warning in result.warnings)


def test_verify_of_several_collections_says_a_lowered_limit_once(memory_store: QdrantStore,
                                                                 tmp_path: Path) -> None:
    """The note was a warning of every collection's report: said once per collection."""
    for name in ("docs", "faq"):
        make_collection(memory_store.client, name, n=20)
    server = TEI(max_batch=8, info=True)
    config = settings(tmp_path, "unused")
    config.collections = [CollectionSettings(name="docs", target="docs_tei"),
                          CollectionSettings(name="faq", target="faq_tei")]
    config.provider.batch_size = 32
    migrate(config, source_store=memory_store, embedder=server.embedder(batch_size=32))
    verified = verify(config, source_store=memory_store,
                      embedder=server.embedder(batch_size=32))
    assert len(verified.reports) == 2 and all(not r.warnings for r in verified.reports)
    assert render_verify(verified).count("takes at most 8 texts a request") == 1
    assert verified.to_dict()["warnings"] == verified.warnings != []
