"""Catch-up: new, changed, payload-only and deleted points, by merge-join."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models as qm

from migrator import (
    CollectionSettings,
    MigrationSettings,
    ProviderSettings,
    Settings,
    StoreError,
    migrate,
    sync,
)
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


def test_id_order_matches_qdrant_scroll_order(memory_store: QdrantStore) -> None:
    ids = make_collection(memory_store.client, "docs", n=30, uuid_ids=True)
    scrolled = [p.id for p in memory_store.scroll("docs", limit=100, vectors=False).points]
    assert scrolled == sorted(ids, key=id_order)
