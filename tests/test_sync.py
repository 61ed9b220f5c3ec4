"""Catch-up: new, changed, payload-only and deleted points, by merge-join."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models as qm

from migrator import (
    CollectionSettings,
    DataError,
    MigrationSettings,
    ProviderSettings,
    SchemaMismatch,
    Settings,
    StoreError,
    migrate,
    status,
    sync,
)
from migrator.status_report import status as render
from migrator.store import QdrantStore, id_order

from .conftest import make_collection
from .loopback import LoopbackServer, vector_for


def config(tmp_path: Path, url: str) -> Settings:
    return Settings(
        provider=ProviderSettings(name="openai-compatible", model="loop", base_url=url,
                                  batch_size=8),
        collections=[CollectionSettings(name="docs", vector="dense")],
        migration=MigrationSettings(state_dir=tmp_path / "state", page_size=8,
                                    missing_text="skip"),
    )


def target_points(store: QdrantStore, name: str) -> dict[object, qm.Record]:
    points, _ = store.client.scroll(name, limit=10_000, with_vectors=True)
    return {p.id: p for p in points}


def test_sync_brings_the_target_up_to_date(store: QdrantStore, tmp_path: Path) -> None:
    ids = make_collection(store.client, "docs", n=40, named=True, uuid_ids=True)
    client = store.client
    with LoopbackServer(dims=8) as server:
        first = migrate(config(tmp_path, server.url), source_store=store)
        target = first.collections[0].target
        # new (an int id and a UUID), changed text, payload-only change, deleted, no text
        client.upsert("docs", points=[
            qm.PointStruct(id=1000, vector={"dense": [1.0] * 8, "image": [0, 0, 0, 1.0]},
                           payload={"text": "a brand new point"}),
            qm.PointStruct(id=str(uuid.UUID(int=999)), vector={"dense": [1.0] * 8,
                                                              "image": [0, 0, 1.0, 0]},
                           payload={"text": "new with a uuid"}),
        ])
        client.set_payload("docs", {"text": "rewritten text"}, points=[ids[2]])
        client.set_payload("docs", {"n": -5}, points=[ids[4]])
        client.update_vectors("docs", points=[qm.PointVectors(
            id=ids[6], vector={"image": [9.0, 9.0, 9.0, 9.0]})])
        client.delete("docs", points_selector=qm.PointIdsList(points=[ids[8], ids[9]]))
        client.overwrite_payload("docs", {"other": "no text now"}, points=[ids[10]])
        sent = server.texts
        result = sync(config(tmp_path, server.url), source_store=store)
        embedded_by_sync = server.texts - sent
    stats = result.collections[0].sync
    assert stats is not None
    assert (stats.new, stats.changed, stats.updated, stats.deleted, stats.without_text) == (
        2, 1, 2, 3, 1)
    # the three texts that are new or changed (the probe's come from the cache)
    assert embedded_by_sync == 3
    source = target_points(store, "docs")
    migrated = target_points(store, target)
    assert set(migrated) == set(source) - {ids[10]}
    for pid, point in migrated.items():
        assert point.payload == source[pid].payload
        assert point.vector["image"] == source[pid].vector["image"]
        np.testing.assert_allclose(point.vector["dense"], vector_for(point.payload["text"], 8),
                                   atol=1e-6)
    assert result.collections[0].target_count == 40 + 2 - 2 - 1


def test_status_after_a_sync_shows_what_the_target_holds_and_what_the_sync_paid(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """After a sync, `status` still showed the backfill's `20/20` though the target held 21
    of 21 points, and the tokens without the sync's: stale lines about the store."""
    make_collection(memory_store.client, "docs", n=20, named=True)
    settings = config(tmp_path, "")
    with LoopbackServer(dims=8) as server:
        settings.provider.base_url = server.url
        migrate(settings, source_store=memory_store)
        before = status(settings, store=memory_store).migrations[0].counters
        memory_store.client.upsert("docs", points=[qm.PointStruct(
            id=1000, vector={"dense": [1.0] * 8, "image": [0, 0, 0, 1.0]},
            payload={"text": "a brand new point with words"})])
        billed = server.billed_tokens
        sync(settings, source_store=memory_store)
        billed = server.billed_tokens - billed
    (record,) = status(settings, store=memory_store).migrations
    assert (record.held, record.total) == (21, 21)
    assert record.counters["tokens"] == before["tokens"] + billed > before["tokens"]
    assert record.counters["embedded"] == before["embedded"] + 1
    shown = render(status(settings, store=memory_store))
    assert " 21/21 " in shown and " 20/20 " not in shown


def test_migrate_catches_up_before_it_swaps(memory_store: QdrantStore,
                                            tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=20, named=True)
    settings = config(tmp_path, "")
    settings.collections[0].alias = "live"
    with LoopbackServer(dims=8) as server:
        settings.provider.base_url = server.url
        migrate(settings, source_store=memory_store)
        memory_store.client.delete("docs", points_selector=qm.PointIdsList(points=[1, 2]))
        again = migrate(settings, source_store=memory_store)
    outcome = again.collections[0]
    assert outcome.sync is not None and outcome.sync.deleted == 2
    assert outcome.target_count == 18 and outcome.swapped


def test_sync_needs_an_existing_target(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=3, named=True)
    with LoopbackServer(dims=8) as server, pytest.raises(StoreError,
                                                         match="run `migrator migrate` first"):
        sync(config(tmp_path, server.url), source_store=memory_store)


def test_a_collection_migrated_through_its_alias_is_synced_by_that_name(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """Each name is a migration of its own; told "run migrate first", a user would have
    paid for a second copy of what the alias already served."""
    make_collection(memory_store.client, "docs", n=10, named=True)
    memory_store.client.update_collection_aliases(change_aliases_operations=[
        qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name="docs",
                                                            alias_name="articles"))])
    with LoopbackServer(dims=8) as server:
        settings = config(tmp_path, server.url)
        settings.collections[0].name = "articles"
        target = migrate(settings, source_store=memory_store).collections[0].target
        settings.collections[0].name = "docs"
        with pytest.raises(StoreError) as refused:
            sync(settings, source_store=memory_store)
    assert (f"the migration of 'docs' with these settings was run as 'articles' (target "
            f"{target!r}): give --collection articles.") in str(refused.value)


def test_a_sync_with_other_settings_lists_the_migrations_recorded(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """Provider flags left out: told "run migrate first", the user would have migrated the
    collection again with the default model."""
    make_collection(memory_store.client, "docs", n=10, named=True)
    with LoopbackServer(dims=8) as server:
        target = migrate(config(tmp_path, server.url), source_store=memory_store
                         ).collections[0].target
    settings = config(tmp_path, "")
    settings.provider = ProviderSettings(name="hashing", model="hash-words-v1")
    with pytest.raises(StoreError) as refused:
        sync(settings, source_store=memory_store)
    assert ("this run has hashing hash-words-v1 at 256 dims from field 'text', and the "
            "migrations of 'docs' recorded are: openai-compatible loop at 8 dims from field "
            f"'text' (target {target!r}). Give the settings of the one to catch up."
            ) in str(refused.value)


def test_a_vector_added_to_the_source_since_is_named_not_written(memory_store: QdrantStore,
                                                                  tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=6, named=True)
    with LoopbackServer(dims=8) as server:
        target = migrate(config(tmp_path, server.url), source_store=memory_store
                         ).collections[0].target
        memory_store.add_vector("docs", "later", size=4, distance="Cosine")
        before = target_points(memory_store, target)
        with pytest.raises(SchemaMismatch, match=f"{target!r} lacks the source's vector\\(s\\) "
                                                 "'later'.*Nothing was written"):
            sync(config(tmp_path, server.url), source_store=memory_store)
    assert target_points(memory_store, target) == before


def test_a_catch_up_that_would_empty_what_an_alias_serves_is_refused(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    ids = make_collection(memory_store.client, "docs", n=10, named=True)
    settings_ = config(tmp_path, "http://unused")
    settings_.collections[0].alias = "live"
    with LoopbackServer(dims=8) as server:
        settings_.provider.base_url = server.url
        target = migrate(settings_, source_store=memory_store).collections[0].target
        memory_store.client.delete("docs", points_selector=qm.PointIdsList(points=ids[:6]))
        with pytest.raises(DataError, match="would delete 60% of what the alias serves "
                                            "\\(sync.max_delete is 50%\\).*Nothing was deleted"):
            sync(settings_, source_store=memory_store)
        assert memory_store.count(target) == 10
        settings_.sync.max_delete = 1.0  # the source really lost them
        assert sync(settings_, source_store=memory_store).collections[0].sync.deleted == 6
    assert memory_store.count(target) == 4


def test_id_order_matches_qdrant_scroll_order(memory_store: QdrantStore) -> None:
    ids = make_collection(memory_store.client, "docs", n=30, uuid_ids=True)
    scrolled = [p.id for p in memory_store.scroll("docs", limit=100, vectors=False).points]
    assert scrolled == sorted(ids, key=id_order)


@pytest.mark.parametrize("form", ["seconds", "milliseconds", "datetime"])
def test_an_updated_field_catch_up_reads_only_what_changed(store: QdrantStore, tmp_path: Path,
                                                           form: str) -> None:
    """With `sync.updated_field`, the points written since the last catch-up began are
    compared, and the ids of the rest: a change the application did not stamp is not seen
    (the price of reading less), a new point or a deletion is, stamped or not."""
    import datetime
    import time

    def stamp(at: float) -> object:
        if form == "datetime":
            return datetime.datetime.fromtimestamp(at, tz=datetime.timezone.utc).isoformat()
        return at * 1000 if form == "milliseconds" else at

    long_ago = time.time() - 86_400
    ids = make_collection(store.client, "docs", n=40, named=True,
                          payload=lambda i, text: {"text": text, "n": i,
                                                   "updated_at": stamp(long_ago)})
    client = store.client
    settings = config(tmp_path, "")
    with LoopbackServer(dims=8) as server:
        settings.provider.base_url = server.url
        settings.sync.updated_field = "updated_at"
        first = migrate(settings, source_store=store)
        assert first.collections[0].sync is not None
        assert first.collections[0].sync.since is not None  # the first catch-up read less
        now = stamp(time.time())
        client.set_payload("docs", {"text": "rewritten text", "updated_at": now},
                           points=[ids[2]])
        client.set_payload("docs", {"n": -5, "updated_at": now}, points=[ids[4]])
        client.set_payload("docs", {"n": -7}, points=[ids[5]])  # not stamped: not seen
        client.upsert("docs", points=[qm.PointStruct(
            id=1000, vector={"dense": [1.0] * 8, "image": [0, 0, 0, 1.0]},
            payload={"text": "new, never stamped"})])
        client.delete("docs", points_selector=qm.PointIdsList(points=[ids[8]]))
        sent = server.texts
        result = sync(settings, source_store=store)
        embedded = server.texts - sent
    stats = result.collections[0].sync
    assert stats is not None and stats.since is not None
    assert (stats.new, stats.changed, stats.updated, stats.deleted, stats.unchanged) == (
        1, 1, 1, 1, 0)
    assert embedded == 2
    migrated = target_points(store, first.collections[0].target)
    assert migrated[ids[4]].payload["n"] == -5 and migrated[ids[5]].payload["n"] == 5
    assert 1000 in migrated and ids[8] not in migrated
    assert result.collections[0].target_count == 40


def test_the_clock_skew_allowance_reads_changes_stamped_a_little_before(
        store: QdrantStore, tmp_path: Path) -> None:
    import time

    ids = make_collection(store.client, "docs", n=10,
                          payload=lambda i, text: {"text": text, "updated_at": 0.0})
    settings = config(tmp_path, "")
    settings.collections = [CollectionSettings(name="docs")]
    settings.sync.updated_field = "updated_at"
    with LoopbackServer(dims=8) as server:
        settings.provider.base_url = server.url
        migrate(settings, source_store=store)
        # written now by a machine whose clock is 100 s behind this one's
        store.client.set_payload("docs", {"text": "late clock", "updated_at": time.time() - 100},
                                 points=[ids[1]])
        stats = sync(settings, source_store=store).collections[0].sync
        assert stats is not None and stats.changed == 1
        store.client.set_payload("docs", {"text": "later", "updated_at": time.time() - 100},
                                 points=[ids[2]])
        settings.sync.clock_skew = 10
        stats = sync(settings, source_store=store).collections[0].sync
        assert stats is not None and stats.changed == 0  # outside the allowance: missed


def test_the_updated_field_must_hold_a_time_and_have_an_index_on_a_server(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    from migrator import ConfigError

    client = memory_store.client
    make_collection(client, "docs", n=3, payload=lambda i, text: {
        "text": text, "at": f"x{i}", "when": (i + 1) * 1e12, "iso": "2026-11-28T10:00:00Z"})
    assert memory_store.time_form("docs", "when") == "milliseconds"
    assert memory_store.time_form("docs", "iso") == "datetime"
    assert memory_store.time_form("docs", "missing") is None
    with pytest.raises(ConfigError, match="'at' of point 1 in 'docs' holds 'x0', not a time"):
        memory_store.time_form("docs", "at")
    server_like = QdrantStore(client, location="http://qdrant:6333", local=False)
    with pytest.raises(ConfigError, match="'when' has no range index in collection 'docs' "
                                          "\\(it has none\\): create a datetime"):
        server_like.time_form("docs", "when")


def test_a_kept_vector_the_store_normalised_again_is_not_a_change(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """Qdrant normalises a cosine vector as it stores it; an already unit-length vector
    copied to the target comes back a float32 ulp away for some points, and the catch-up
    right after the backfill counted each of them as "updated without re-embedding" (24 of
    the demo's 320) and wrote it again."""
    client = memory_store.client
    client.create_collection("docs", vectors_config={
        "dense": qm.VectorParams(size=8, distance=qm.Distance.COSINE),
        "image": qm.VectorParams(size=64, distance=qm.Distance.COSINE)})
    rng = np.random.default_rng(7)
    image = rng.standard_normal((200, 64)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    client.upsert("docs", points=[qm.PointStruct(
        id=i, vector={"dense": [1.0] * 8, "image": image[i].tolist()},
        payload={"text": f"text number {i}"}) for i in range(200)])
    settings = Settings(provider=ProviderSettings(name="hashing", model="hash-words-v1",
                                                  dimensions=16),
                        collections=[CollectionSettings(name="docs", vector="dense")],
                        migration=MigrationSettings(state_dir=tmp_path / "state"))
    result = migrate(settings, source_store=memory_store)
    stats = result.collections[0].sync
    assert stats is not None and (stats.updated, stats.unchanged) == (0, 200)
    # a real change of a kept vector is still one
    client.update_vectors("docs", points=[qm.PointVectors(id=3, vector={"image": [0.125] * 64})])
    stats = sync(settings, source_store=memory_store).collections[0].sync
    assert stats is not None and (stats.updated, stats.unchanged) == (1, 199)


def test_a_sync_cut_short_by_a_signal_does_not_speak_of_a_swap(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """A signal before a sync could stop gracefully said "Nothing was swapped; run the same
    command again to resume": a sync swaps nothing and resumes nothing."""
    import os
    import signal
    import threading

    from migrator.errors import Interrupted

    make_collection(memory_store.client, "docs", n=20, named=True)
    with LoopbackServer(dims=8) as server:
        migrate(config(tmp_path, server.url), source_store=memory_store)
        server.latency = 5.0  # the probe's request is in flight when the signal comes
        signal_soon = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        signal_soon.start()
        try:
            with pytest.raises(Interrupted) as stopped:
                sync(config(tmp_path, server.url).model_copy(update={"migration": MigrationSettings(
                    state_dir=tmp_path / "state", page_size=8, missing_text="skip",
                    cache=False)}), source_store=memory_store)
        finally:
            signal_soon.cancel()
            server.latency = 0.0
    message = str(stopped.value)
    assert "swapped" not in message and "catch up the rest" in message


def test_a_sync_without_the_migrations_distance_says_to_give_it(memory_store: QdrantStore,
                                                                 tmp_path: Path) -> None:
    """It said to give another --target, "or delete that collection if it is a leftover":
    the live target of the migration being caught up."""
    make_collection(memory_store.client, "docs", n=30)
    with LoopbackServer(dims=1536) as server:
        settings = config(tmp_path, server.url)
        settings.provider = ProviderSettings(
            name="openai-compatible", model="text-embedding-ada-002", base_url=server.url,
            dimensions=4, dimension_policy="truncate")  # not renormalised under Euclid
        settings.collections = [CollectionSettings(name="docs", distance="Euclid")]
        target = migrate(settings, source_store=memory_store).collections[0].target
        memory_store.client.upsert("docs", points=[qm.PointStruct(
            id=500, vector=[1.0] * 8, payload={"text": "a brand new point"})])
        settings.collections = [CollectionSettings(name="docs")]
        with pytest.raises(SchemaMismatch) as refused:
            sync(settings, source_store=memory_store)
        message = str(refused.value)
        assert "compared by Euclid distance; this run's is Cosine (the source's, as no " in (
            message)
        assert "Give --distance euclid" in message and "delete" not in message
        settings.collections = [CollectionSettings(name="docs", distance="euclid")]
        sync(settings, source_store=memory_store)
    (added,) = memory_store.client.retrieve(target, [500], with_vectors=True)
    stored = np.asarray(added.vector)
    assert np.allclose(stored, vector_for("a brand new point", 1536)[:4], atol=1e-6)
