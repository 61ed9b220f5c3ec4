"""Checkpoints, resume, the embedding cache, restart, and the state file."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import models as qm

from migrator import (
    CollectionSettings,
    MigrationResult,
    MigrationSettings,
    ProviderResponseError,
    ProviderSettings,
    Settings,
    StateError,
    migrate,
    status,
    sync,
)
from migrator.embedding.cache import cache_clear, cache_stats
from migrator.errors import ConfigError, StoreError
from migrator.settings import VerifySettings
from migrator.state import STATE_SCHEMA, State
from migrator.store import QdrantStore

from .conftest import held_by_a_child, make_collection
from .loopback import Fault, LoopbackServer, vector_for


def config(tmp_path: Path, url: str, alias: str | None = "live",
           **migration: object) -> Settings:
    return Settings(
        provider=ProviderSettings(name="openai-compatible", model="loop", base_url=url,
                                  batch_size=10, concurrency=2),
        collections=[CollectionSettings(name="docs", alias=alias)],
        migration=MigrationSettings(**{"state_dir": tmp_path / "state", "page_size": 10,
                                       **migration}),  # type: ignore[arg-type]
        verify=VerifySettings(enabled=False),  # these tests count what the provider sees
    )


def vectors_are_right(store: QdrantStore, collection: str, dims: int) -> None:
    points, _ = store.client.scroll(collection, limit=10_000, with_vectors=True)
    for point in points:
        np.testing.assert_allclose(point.vector, vector_for(point.payload["text"], dims),
                                   atol=1e-6)


def test_a_failed_run_resumes_from_its_checkpoint(store: QdrantStore, tmp_path: Path) -> None:
    make_collection(store.client, "docs", n=200)
    with LoopbackServer(dims=8) as server:
        # the probe, then 6 pages, then the provider breaks
        server.faults.extend([Fault(0)] * 7 + [Fault(400, {"error": {"message": "boom"}})])
        with pytest.raises(ProviderResponseError, match="boom"):
            migrate(config(tmp_path, server.url), source_store=store)
        record = State(tmp_path / "state").all()[0]
        assert record.phase == "failed" and not record.finished
        # what the writer finished before the failure: whole pages, below the failed one
        written = record.counters.get("written", 0)
        assert written <= 70 and written % 10 == 0  # 6 paid pages and the probe's, free
        assert (record.checkpoint is None) == (written == 0)
        assert store.aliases() == {}

        sent_before = server.texts
        result = migrate(config(tmp_path, server.url), source_store=store)
        outcome = result.collections[0]
        assert outcome.resumed and outcome.resumed_written == record.counters.get("written", 0)
        # the second run sends the probe's texts and what was never embedded; pages that
        # were in flight at the failure come from the cache
        sent = server.texts - sent_before
        assert sent <= 10 + 200 - record.counters.get("written", 0)
        assert outcome.stats.cached >= 0
    assert outcome.target_count == 200 and store.aliases() == {"live": outcome.target}
    vectors_are_right(store, outcome.target, 8)


def test_a_second_run_pays_for_nothing(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=60)
    with LoopbackServer(dims=8) as server:
        first = migrate(config(tmp_path, server.url), source_store=memory_store)
        memory_store.delete_collection(first.collections[0].target)
        requests = server.requests
        second = migrate(config(tmp_path, server.url), source_store=memory_store,
                         restart=True)
        assert server.requests == requests  # not even the probe: it is checked from cache
    stats = second.collections[0].stats
    assert (stats.cached, stats.requests, stats.tokens) == (60, 0, 0)
    assert stats.tokens_saved == first.tokens
    assert second.to_dict()["bill"]["phases"]["backfill"]["from_cache"] == 60


def test_no_cache_pays_again(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=30)
    with LoopbackServer(dims=8) as server:
        migrate(config(tmp_path, server.url, None, cache=False), source_store=memory_store)
        before = server.texts
        migrate(config(tmp_path, server.url, None, cache=False), source_store=memory_store,
                restart=True)
        assert server.texts - before >= 30
    assert not (tmp_path / "state" / "cache.db").exists()


def test_restart_deletes_the_target_it_created(memory_store: QdrantStore,
                                               tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=20)
    with LoopbackServer(dims=8) as server:
        first = migrate(config(tmp_path, server.url, None), source_store=memory_store)
        target = first.collections[0].target
        memory_store.client.upsert(target, points=[qm.PointStruct(id=999, vector=[0.1] * 8)])
        asked: list[list[str]] = []
        again = migrate(config(tmp_path, server.url, None), source_store=memory_store,
                        restart=True, confirm=lambda names: asked.append(names) or True)
    assert asked == [[target]]
    assert again.collections[0].created and again.collections[0].target_count == 20


def test_restart_refuses_to_delete_a_served_target(memory_store: QdrantStore,
                                                   tmp_path: Path) -> None:
    """Issue 11.2: `--restart --yes` deleted the collection a live alias served, and the
    alias with it."""
    make_collection(memory_store.client, "docs", n=20)
    with LoopbackServer(dims=8) as server:
        first = migrate(config(tmp_path, server.url), source_store=memory_store)
        target = first.collections[0].target
        with pytest.raises(ConfigError, match=r"served by alias live.*migrator rollback live"):
            migrate(config(tmp_path, server.url), source_store=memory_store, restart=True)
    assert memory_store.aliases() == {"live": target}
    assert memory_store.count(target) == 20


def test_a_complete_migration_run_again_only_catches_up(memory_store: QdrantStore,
                                                        tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=20)
    memory_store.swap_alias("docs_alias", "docs")
    settings_ = config(tmp_path, "http://unused")
    settings_.collections = [CollectionSettings(name="docs_alias", alias="docs_alias")]
    with LoopbackServer(dims=8) as server:
        settings_.provider.base_url = server.url
        first = migrate(settings_, source_store=memory_store)
        assert memory_store.aliases() == {"docs_alias": first.collections[0].target}
        again = migrate(settings_, source_store=memory_store)  # the alias now names the target
    outcome = again.collections[0]
    assert outcome.source_collection == "docs" and outcome.sync is not None
    assert outcome.sync.unchanged == 20 and outcome.stats.requests == first.collections[
        0].stats.requests


@contextlib.contextmanager
def migrated_once(store: QdrantStore, tmp_path: Path
                  ) -> Iterator[tuple[Settings, LoopbackServer, MigrationResult]]:
    """A collection migrated once, and its provider still answering."""
    make_collection(store.client, "docs", n=20)
    settings_ = config(tmp_path, "http://unused", alias=None)
    with LoopbackServer(dims=8) as server:
        settings_.provider.base_url = server.url
        yield settings_, server, migrate(settings_, source_store=store)


def test_a_finished_migrations_deleted_target_is_named_so(memory_store: QdrantStore,
                                                          tmp_path: Path) -> None:
    with migrated_once(memory_store, tmp_path) as (settings_, _, first):
        memory_store.delete_collection(first.collections[0].target)
        with pytest.raises(StoreError, match="of a finished migration is gone .*--restart"):
            migrate(settings_, source_store=memory_store)


def test_a_migration_runs_in_one_process_at_a_time(memory_store: QdrantStore,
                                                   tmp_path: Path) -> None:
    with migrated_once(memory_store, tmp_path) as (settings_, server, first):
        sent = server.requests
        with running_elsewhere(settings_, memory_store):
            with pytest.raises(StateError, match="A migration of 'docs' to openai-compatible "
                                                 "loop is running in another process"):
                migrate(settings_, source_store=memory_store)
            with pytest.raises(StateError, match="running in another process"):
                sync(settings_, source_store=memory_store)
            assert server.requests == sent  # refused before the probe: nothing paid
        again = migrate(settings_, source_store=memory_store)  # released with its state
    assert again.collections[0].migration_id == first.collections[0].migration_id


@contextlib.contextmanager
def running_elsewhere(settings_: Settings, store: QdrantStore) -> Iterator[None]:
    """Another run of the same migration, as far as its lock can tell."""
    with State(settings_.migration.state_dir) as other:
        other.claim(store.identity, "docs", "openai-compatible", "loop")
        yield


def test_a_killed_process_holds_no_migration(tmp_path: Path) -> None:
    child = (f"from migrator.state import State\nstate = State({str(tmp_path)!r})\n"
             "state.claim('s', 'c', 'p', 'm')")
    with held_by_a_child(child), State(tmp_path) as state, pytest.raises(StateError):
        state.claim("s", "c", "p", "m")
    with State(tmp_path) as state:
        state.claim("s", "c", "p", "m")


def test_status_shows_phase_and_progress(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=30)
    with LoopbackServer(dims=8) as server:
        migrate(config(tmp_path, server.url), source_store=memory_store)
        report = status(config(tmp_path, server.url), store=memory_store)
    data = report.to_dict()
    assert data["aliases"] == {"live": "docs__loop-8"}
    migration = data["migrations"][0]
    assert (migration["phase"], migration["progress"], migration["finished"]) == (
        "swapped", 1.0, True)
    assert data["alias_history"][0]["to"] == "docs__loop-8"


def test_a_corrupt_state_file_is_reported_not_replaced(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)  # truncated
    with pytest.raises(StateError, match="state.db is corrupt or truncated.*will not replace"):
        State(state_dir)
    assert (state_dir / "state.db").read_bytes().startswith(b"SQLite format 3")


def test_a_newer_state_file_is_refused(tmp_path: Path) -> None:
    State(tmp_path).close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StateError, match="schema version 99, newer"):
        State(tmp_path)


def test_alias_moves_recorded_before_stores_were_count_for_every_store(tmp_path: Path
                                                                       ) -> None:
    """A state file of schema 6 (no store in the alias history) upgrades in place."""
    db = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    for number, _name, sql in STATE_SCHEMA[:6]:
        db.executescript(f"BEGIN; {sql} PRAGMA user_version = {number}; COMMIT;")
    db.execute("INSERT INTO alias_history (alias, from_collection, to_collection, at) "
               "VALUES ('live', 'v1', 'v2', 0)")
    db.close()
    with State(tmp_path) as state:
        state.record_alias("live", "v2", "v3", store="path:/a")
        state.record_alias("live", "x", "y", store="path:/b")
        moves = [(m["from"], m["to"]) for m in state.alias_history("live", store="path:/a")]
        assert moves == [("v1", "v2"), ("v2", "v3")]
        assert len(state.alias_history()) == 3


def test_cache_stats_and_clear(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=25)
    with LoopbackServer(dims=8) as server:
        migrate(config(tmp_path, server.url), source_store=memory_store)
    assert cache_stats(tmp_path / "state").entries == 25
    assert cache_clear(tmp_path / "state") == 25
    assert cache_stats(tmp_path / "state").entries == 0


def test_repeats_across_requests_are_embedded_once(memory_store: QdrantStore,
                                                   tmp_path: Path) -> None:
    texts = ["alpha", "beta", "gamma", "delta"]
    make_collection(memory_store.client, "docs", n=80,
                    payload=lambda i, t: {"text": texts[i % 4]})
    with LoopbackServer(dims=8, latency=0.01) as server:
        settings_ = config(tmp_path, server.url)
        settings_.provider.concurrency = 4
        migrate(settings_, source_store=memory_store)
        assert sorted(server.seen.values()) == [1, 1, 1, 1]
