"""End-to-end migrations on the embedded store (memory and path)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models as qm

from migrator import (
    CollectionNotFound,
    CollectionSettings,
    ConfigError,
    MigrationSettings,
    MissingText,
    ProviderSettings,
    SchemaMismatch,
    Settings,
    demo,
    migrate,
    plan,
    sync,
)
from migrator.embedding import construct, model_spec
from migrator.store import QdrantStore

from .conftest import make_collection
from .loopback import LoopbackServer, vector_for


def settings(tmp_path: Path, *collections: CollectionSettings, **provider: object) -> Settings:
    return Settings(
        provider=ProviderSettings(**{"name": "hashing", "model": "hash-ngrams-v1",
                                     "dimensions": 32, **provider}),
        collections=list(collections),
        migration=MigrationSettings(state_dir=tmp_path / "state", page_size=16),
    )


def records(store: QdrantStore, collection: str) -> dict[object, object]:
    points, _ = store.client.scroll(collection, limit=10_000, with_vectors=True)
    return {p.id: p for p in points}


def expected_hashing(text: str, dims: int = 32) -> np.ndarray:
    settings = ProviderSettings(name="hashing", model="hash-ngrams-v1", dimensions=dims)
    embedder = construct(model_spec(settings), settings, dims, None)
    return embedder.embed_sync([text])[0]  # type: ignore[attr-defined]


def test_unnamed_vector_every_point_same_ids_and_payloads(store: QdrantStore,
                                                          tmp_path: Path) -> None:
    ids = make_collection(store.client, "docs", n=70, uuid_ids=True)
    result = migrate(settings(tmp_path, CollectionSettings(name="docs")), source_store=store)

    target = result.collections[0].target
    assert target == "docs__hash-ngrams-v1-32"
    assert result.collections[0].stats.written == 70
    source, migrated = records(store, "docs"), records(store, target)
    assert set(migrated) == set(ids) == set(source)
    for pid, point in migrated.items():
        assert point.payload == source[pid].payload
        assert len(point.vector) == 32
        np.testing.assert_allclose(point.vector, expected_hashing(point.payload["text"]),
                                   atol=1e-5)
    assert store.describe(target).vectors[""].size == 32


def test_named_vectors_only_the_configured_one_replaced_and_sparse_copied(
        store: QdrantStore, tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=30, named=True, sparse=True)
    result = migrate(settings(tmp_path, CollectionSettings(name="docs", vector="dense")),
                     source_store=store)

    target = result.collections[0].target
    schema = store.describe(target)
    assert schema.vectors["dense"].size == 32
    assert schema.vectors["image"].size == 4 and schema.vectors["image"].distance == "Dot"
    assert schema.sparse_vectors == ["keywords"]
    source = records(store, "docs")
    for pid, point in records(store, target).items():
        assert len(point.vector["dense"]) == 32
        assert point.vector["image"] == source[pid].vector["image"]
        assert point.vector["keywords"] == source[pid].vector["keywords"]


def test_unnamed_vector_with_sparse_vectors(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=20, sparse=True)
    result = migrate(settings(tmp_path, CollectionSettings(name="docs")),
                     source_store=memory_store)
    migrated = records(memory_store, result.collections[0].target)
    assert len(migrated) == 20
    assert all(len(p.vector[""]) == 32 and "keywords" in p.vector for p in migrated.values())


def test_several_named_vectors_need_a_choice(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=5, named=True)
    with pytest.raises(ConfigError, match="several dense vectors \\('dense', 'image'\\); "
                                          "name one with --vector NAME"):  # not "to migrate"
        migrate(settings(tmp_path, CollectionSettings(name="docs")), source_store=memory_store)
    assert memory_store.collection_names() == ["docs"]


def test_a_collection_with_no_dense_vector_says_so(memory_store: QdrantStore,
                                                   tmp_path: Path) -> None:
    """It said "several dense vectors (); name one with --vector"."""
    memory_store.client.create_collection("sparse", vectors_config={}, sparse_vectors_config={
        "keywords": qm.SparseVectorParams()})
    with pytest.raises(ConfigError, match=r"Collection 'sparse' has no dense vector \(sparse "
                                          r"vectors: 'keywords'\): migrator re-embeds"):
        migrate(settings(tmp_path, CollectionSettings(name="sparse")), source_store=memory_store)
    assert memory_store.collection_names() == ["sparse"]


def test_nested_text_path(store: QdrantStore, tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=12,
                    payload=lambda i, t: {"metadata": {"content": t}, "n": i})
    result = migrate(settings(tmp_path, CollectionSettings(name="docs",
                                                           text_field="metadata.content")),
                     source_store=store)
    for point in records(store, result.collections[0].target).values():
        np.testing.assert_allclose(point.vector,
                                   expected_hashing(point.payload["metadata"]["content"]),
                                   atol=1e-5)


def test_text_template(store: QdrantStore, tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=12,
                    payload=lambda i, t: {"title": f"Title {i}", "body": t})
    result = migrate(settings(tmp_path, CollectionSettings(
        name="docs", text_template="{title}\n\n{body}")), source_store=store)
    for point in records(store, result.collections[0].target).values():
        text = f"{point.payload['title']}\n\n{point.payload['body']}"
        np.testing.assert_allclose(point.vector, expected_hashing(text), atol=1e-5)


def _some_without_text(i: int, text: str) -> dict[str, object]:
    if i in (3, 7):
        return {"other": text}
    if i == 9:
        return {"text": "   "}
    return {"text": text}


def test_missing_text_fail_lists_ids_and_moves_no_alias(store: QdrantStore,
                                                        tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=20, payload=_some_without_text)
    store.swap_alias("live", "docs")
    config = settings(tmp_path, CollectionSettings(name="docs", alias="live"))
    with pytest.raises(MissingText) as caught:
        migrate(config, source_store=store)

    assert caught.value.point_ids == [4, 8, 10]
    assert "3 points of" in str(caught.value) and "--missing-text skip" in str(caught.value)
    listed = [json.loads(line) for line in Path(caught.value.skip_file or "").read_text()
              .splitlines()]
    assert [r["id"] for r in listed] == [4, 8, 10]
    assert listed[2]["reason"] == "payload field 'text' is empty"
    assert store.aliases() == {"live": "docs"}


def test_missing_text_skip_migrates_the_rest(store: QdrantStore, tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=20, payload=_some_without_text)
    config = settings(tmp_path, CollectionSettings(name="docs", alias="live"))
    config.migration.missing_text = "skip"
    result = migrate(config, source_store=store)

    outcome = result.collections[0]
    assert (outcome.stats.skipped, outcome.target_count, outcome.swapped) == (3, 17, True)
    assert 4 not in records(store, outcome.target)
    assert outcome.skip_file is not None and Path(outcome.skip_file).is_file()
    assert store.aliases() == {"live": outcome.target}


def test_dimension_change_creates_a_collection_of_the_new_size(memory_store: QdrantStore,
                                                               tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=10, dims=8)
    result = migrate(settings(tmp_path, CollectionSettings(name="docs"), dimensions=100),
                     source_store=memory_store)
    assert result.dims == 100
    assert memory_store.describe(result.collections[0].target).vectors[""].size == 100


def test_two_collections_in_one_run_share_the_provider(store: QdrantStore,
                                                       tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=25)
    make_collection(store.client, "notes", n=15,
                    payload=lambda i, t: {"body": t})
    config = settings(tmp_path,
                      CollectionSettings(name="docs", alias="docs_live"),
                      CollectionSettings(name="notes", text_field="body", target="notes_v2",
                                         alias="notes_live"))
    result = migrate(config, source_store=store)
    assert [c.stats.written for c in result.collections] == [25, 15]
    assert store.aliases() == {"docs_live": "docs__hash-ngrams-v1-32",
                                      "notes_live": "notes_v2"}
    assert result.written == 40


def test_alias_moves_from_the_old_collection(store: QdrantStore, tmp_path: Path) -> None:
    make_collection(store.client, "docs_v1", n=10)
    store.swap_alias("docs", "docs_v1")
    result = migrate(settings(tmp_path, CollectionSettings(name="docs", alias="docs")),
                     source_store=store)
    outcome = result.collections[0]
    assert outcome.source_collection == "docs_v1"
    assert outcome.previous_alias_target == "docs_v1"
    assert store.aliases() == {"docs": "docs__hash-ngrams-v1-32"}
    assert store.count("docs_v1") == 10  # the old collection is kept


def test_alias_that_names_a_collection_is_refused_before_anything(store: QdrantStore,
                                                                  tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=10)
    make_collection(store.client, "live", n=1)
    with pytest.raises(ConfigError, match="Alias 'live' is the name of an existing collection"):
        migrate(settings(tmp_path, CollectionSettings(name="docs", alias="live")),
                source_store=store)
    assert store.collection_names() == ["docs", "live"]
    assert store.aliases() == {}


def test_missing_collection(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=1)
    with pytest.raises(CollectionNotFound,
                       match="'nope' does not exist.*Existing collections: docs\\.$"):
        migrate(settings(tmp_path, CollectionSettings(name="nope")), source_store=memory_store)
    memory_store.swap_alias("docs_live", "docs")  # an alias is a name one may give, too
    with pytest.raises(CollectionNotFound, match="collections: docs; aliases: docs_live\\.$"):
        migrate(settings(tmp_path, CollectionSettings(name="nope")), source_store=memory_store)


def test_existing_target_of_the_wrong_size_is_refused(memory_store: QdrantStore,
                                                      tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=5)
    make_collection(memory_store.client, "docs_new", n=1, dims=7)
    with pytest.raises(SchemaMismatch, match="'docs_new' already exists.*size 7"):
        migrate(settings(tmp_path, CollectionSettings(name="docs", target="docs_new")),
                source_store=memory_store)


def test_rerun_into_existing_target_is_idempotent(memory_store: QdrantStore,
                                                  tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=30)
    config = settings(tmp_path, CollectionSettings(name="docs", alias="live"))
    first = migrate(config, source_store=memory_store)
    second = migrate(config, source_store=memory_store)
    assert first.collections[0].created and not second.collections[0].created
    assert second.collections[0].target_count == 30


def test_target_on_another_store(memory_store: QdrantStore, path_store: QdrantStore,
                                 tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=40)
    result = migrate(settings(tmp_path, CollectionSettings(name="docs", alias="docs")),
                     source_store=memory_store, target_store=path_store)
    assert path_store.count(result.collections[0].target) == 40
    assert path_store.aliases() == {"docs": result.collections[0].target}
    assert memory_store.collection_names() == ["docs"]


def test_persisted_store_keeps_the_result(tmp_path: Path) -> None:
    from migrator import open_store
    from migrator.settings import StoreSettings

    where = StoreSettings(path=tmp_path / "q")
    store = open_store(where, create=True)
    make_collection(store.client, "docs", n=20)
    store.close()
    config = settings(tmp_path, CollectionSettings(name="docs", alias="live"))
    config.source = where
    migrate(config)
    reopened = open_store(where)
    try:
        assert reopened.aliases() == {"live": "docs__hash-ngrams-v1-32"}
        assert reopened.count("live") == 20
    finally:
        reopened.close()


def test_openai_compatible_server_end_to_end(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=90)
    with LoopbackServer(dims=24, shuffle=True) as server:
        config = settings(tmp_path, CollectionSettings(name="docs", alias="live"),
                          name="openai-compatible", model="my-embedder", dimensions=None,
                          base_url=server.url, batch_size=10, concurrency=3)
        config.verify.enabled = False  # its queries would count too
        result = migrate(config, source_store=memory_store)
        assert server.texts == 90  # every text once: the probe's batch is reused
    assert result.dims == 24
    assert result.collections[0].target == "docs__my-embedder-24"
    for point in records(memory_store, "docs__my-embedder-24").values():
        np.testing.assert_allclose(point.vector, vector_for(point.payload["text"], 24),
                                   atol=1e-6)
    assert result.tokens == sum(len(p.payload["text"].split())
                                for p in records(memory_store, "docs").values())
    assert result.bill.usage.phases["probe"].tokens > 0


def test_identical_texts_are_embedded_once_per_run(memory_store: QdrantStore,
                                                    tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=32, payload=lambda i, t: {"text": "same"})
    result = migrate(settings(tmp_path, CollectionSettings(name="docs")),
                     source_store=memory_store)
    stats = result.collections[0].stats
    # hashing is cheaper to compute than to cache: each page sends its one text once
    assert (stats.written, stats.embedded, stats.cached) == (32, 2, 0)


@pytest.mark.parametrize("cache", [True, False])
def test_a_provider_failure_mid_run_says_what_was_left(memory_store: QdrantStore,
                                                       tmp_path: Path, cache: bool) -> None:
    from migrator import ProviderResponseError
    from tests.loopback import Fault

    make_collection(memory_store.client, "docs", n=60)
    with LoopbackServer(dims=8) as server:
        config = settings(tmp_path, CollectionSettings(name="docs", alias="live"),
                          name="openai-compatible", model="m", dimensions=None,
                          base_url=server.url, batch_size=16, concurrency=1)
        config.migration.page_size = 16
        config.migration.cache = cache
        empty = Fault(200, {"object": "list", "data": []})
        # the probe's two requests, then the same bad answer every time it is asked
        server.faults.extend([Fault(0), Fault(0), empty, empty, empty])
        with pytest.raises(ProviderResponseError) as caught:
            migrate(config, source_store=memory_store)
        billed = server.billed_tokens
    message = str(caught.value)
    assert "returned 0 embeddings for 16 inputs" in message
    assert re.search(r"stopped with \d+ of 60 points written; no alias was moved", message)
    assert "resumes from the last checkpoint" in message
    # what it paid for: the probe's two answers (the bad ones billed nothing), and whether
    # the resume pays again (the message said they came from the cache under --no-cache too)
    kept = ("they are in the cache: the next run does not pay for them again" if cache else
            "the cache is off (--no-cache): those not written before the last checkpoint are "
            "paid for again")
    assert f"This run paid for 16 texts in 2 requests ({billed} tokens); {kept}." in message
    assert memory_store.aliases() == {}


def test_an_alias_is_refused_as_the_target(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=5)
    make_collection(memory_store.client, "other", n=5)
    memory_store.swap_alias("live", "other")
    with pytest.raises(ConfigError, match="target 'live' of 'docs' is an alias"):
        migrate(settings(tmp_path, CollectionSettings(name="docs", target="live")),
                source_store=memory_store)
    assert memory_store.count("other") == 5
    assert memory_store.exists("other") and not memory_store.exists("live")


def test_one_http_embedder_serves_several_migrate_calls(memory_store: QdrantStore,
                                                        tmp_path: Path) -> None:
    """Each `migrate()` runs its own event loop: the embedder's connections, limiter and
    concurrency waits are made again on the next one (was: 'Event loop is closed')."""
    from migrator.embedding import build_embedder
    from migrator.settings import VerifySettings

    make_collection(memory_store.client, "docs", n=40)
    make_collection(memory_store.client, "more", n=40)
    with LoopbackServer(dims=8, latency=0.01) as server:
        provider = ProviderSettings(name="openai-compatible", model="m", base_url=server.url,
                                    dimensions=8, batch_size=4, concurrency=2,
                                    requests_per_minute=100_000, tokens_per_minute=10_000_000)
        embedder = build_embedder(provider)
        for name in ("docs", "more", "docs"):
            config = Settings(provider=provider, collections=[CollectionSettings(name=name)],
                              migration=MigrationSettings(state_dir=tmp_path / name,
                                                          page_size=8),
                              verify=VerifySettings(enabled=False))
            result = migrate(config, source_store=memory_store, embedder=embedder)
            assert result.collections[0].target_count == 40
        asyncio.run(embedder.aclose())
    for point in records(memory_store, result.collections[0].target).values():
        np.testing.assert_allclose(point.vector, vector_for(point.payload["text"], 8),
                                   atol=1e-6)


def test_the_blocking_api_inside_an_event_loop_says_what_to_call(
        store: QdrantStore, tmp_path: Path) -> None:
    """In a Jupyter notebook `migrate()` raised asyncio's "asyncio.run() cannot be called
    from a running event loop" and warned that `amigrate` was never awaited."""
    make_collection(store.client, "docs", n=20)
    config = settings(tmp_path, CollectionSettings(name="docs"))

    async def in_a_notebook() -> None:
        with pytest.raises(RuntimeError, match=r"use `await amigrate\(\.\.\.\)`"):
            migrate(config, source_store=store)
        with pytest.raises(RuntimeError, match=r"`await asyncio.to_thread\(sync, \.\.\.\)`"):
            sync(config, source_store=store)
        with pytest.raises(RuntimeError, match="Nothing was done"):
            demo(tmp_path / "demo")
        assert not (tmp_path / "demo").exists()
        # what the message advises works
        done = await asyncio.to_thread(migrate, config, source_store=store)
        assert done.collections[0].stats.written == 20

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(in_a_notebook())
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_a_template_field_no_point_has_is_warned_of(store: QdrantStore, tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=20)
    make_collection(store.client, "more", n=20)
    config = settings(tmp_path, CollectionSettings(name="docs", text_template="{text} {txet}"),
                      CollectionSettings(name="more", text_template="{text} {nme}"))
    result = migrate(config, source_store=store)
    assert [w for w in result.warnings if "A typo?" in w] == [
        "The text template of 'docs' has {txet}, which none of its first 20 points has: it "
        "renders empty in every text. A typo?",
        "The text template of 'more' has {nme}, which none of its first 20 points has: it "
        "renders empty in every text. A typo?"]
    planned = plan(config, source_store=store)
    assert any("{txet}" in w for w in planned.collections[0].warnings)
