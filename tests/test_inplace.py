"""The in-place strategy: a named vector added to the source collection itself, filled,
caught up and verified, with payloads and every other vector left exactly as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models as qm

from migrator import (
    CollectionSettings,
    ConfigError,
    MigrationSettings,
    ProviderSettings,
    Settings,
    StoreError,
    migrate,
    sync,
    verify,
)
from migrator.settings import VerifySettings
from migrator.store import QdrantStore

from .conftest import make_collection

MODEL = ProviderSettings(name="hashing", model="hash-words-v1", dimensions=48)


def settings(tmp_path: Path, **collection: Any) -> Settings:
    return Settings(provider=MODEL,
                    collections=[CollectionSettings(name="docs", **collection)],
                    migration=MigrationSettings(state_dir=tmp_path / "state", page_size=16,
                                                strategy="in-place", missing_text="skip"))


def everything(store: QdrantStore, name: str) -> dict[Any, tuple[Any, Any]]:
    points, _ = store.client.scroll(name, limit=10_000, with_vectors=True)
    return {p.id: (p.payload, p.vector) for p in points}


@pytest.mark.parametrize("named", [False, True])
def test_in_place_adds_the_new_vector_and_touches_nothing_else(
        store: QdrantStore, tmp_path: Path, named: bool) -> None:
    make_collection(store.client, "docs", n=60, named=named, sparse=not named)
    before = everything(store, "docs")
    result = migrate(settings(tmp_path, **({"vector": "dense"} if named else {})),
                     source_store=store)
    outcome = result.collections[0]
    assert outcome.target == "docs" and outcome.target_count == 60 and not outcome.swapped
    assert outcome.verification is not None and outcome.verification.passed
    assert outcome.using is not None and "using='hash-words-v1-48'" in outcome.using
    after = everything(store, "docs")
    assert set(store.describe("docs").vectors) == ({"dense", "image"} if named else {""}) | {
        "hash-words-v1-48"}
    copy = migrate(Settings(provider=MODEL, collections=[CollectionSettings(
        name="docs", target="docs_copy", vector="dense" if named else "")],
        migration=MigrationSettings(state_dir=tmp_path / "copy")), source_store=store)
    copied = everything(store, copy.collections[0].target)
    for point_id, (payload, vectors) in after.items():
        old_payload, old_vectors = before[point_id]
        assert payload == old_payload  # byte for byte
        old = old_vectors if isinstance(old_vectors, dict) else {"": old_vectors}
        assert set(vectors) == set(old) | {"hash-words-v1-48"}
        for name, vector in old.items():
            if isinstance(vector, list):
                # qdrant-client's local mode gives some points' other vectors back rounded
                # differently after one of their vectors is updated (at most a float32 ulp);
                # a server stores them untouched
                np.testing.assert_allclose(vectors[name], vector, rtol=1e-6, atol=0)
            else:
                assert vectors[name] == vector  # the sparse vector
        new = vectors["hash-words-v1-48"]
        same = copied[point_id][1]
        np.testing.assert_allclose(new, same["dense" if named else ""], atol=1e-6)


def test_in_place_catches_up_changed_new_and_textless_points(store: QdrantStore,
                                                             tmp_path: Path) -> None:
    ids = make_collection(store.client, "docs", n=40)
    migrate(settings(tmp_path), source_store=store)
    client = store.client
    client.set_payload("docs", {"text": "a rewritten text"}, points=[ids[3]])
    client.upsert("docs", points=[qm.PointStruct(id=500, vector={"": [1.0] * 8},
                                                 payload={"text": "a point added later"})])
    client.overwrite_payload("docs", {"other": "no text"}, points=[ids[5]])
    client.delete("docs", points_selector=qm.PointIdsList(points=[ids[7]]))
    result = sync(settings(tmp_path), source_store=store)
    stats = result.collections[0].sync
    assert stats is not None
    assert (stats.new, stats.changed, stats.without_text, stats.deleted) == (1, 1, 1, 1)
    assert stats.unchanged == 40 - 3  # one changed, one without text, one deleted
    points = {p.id: p for p in client.scroll("docs", limit=100, with_vectors=True)[0]}
    assert "hash-words-v1-48" not in points[ids[5]].vector  # its old text's vector went
    fresh = migrate(Settings(provider=MODEL, collections=[CollectionSettings(
        name="docs", target="fresh", vector="")], migration=MigrationSettings(
        state_dir=tmp_path / "fresh", missing_text="skip")), source_store=store)
    again = {p.id: p.vector for p in client.scroll(fresh.collections[0].target, limit=100,
                                                    with_vectors=True)[0]}
    for point_id in (ids[3], 500):
        np.testing.assert_allclose(points[point_id].vector["hash-words-v1-48"],
                                   again[point_id][""], atol=1e-6)


def test_in_place_resumes_after_a_failure_and_adds_the_vector_once(
        memory_store: QdrantStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_collection(memory_store.client, "docs", n=64)
    real = QdrantStore.set_vectors
    calls = {"n": 0}

    def failing(self: QdrantStore, collection: str, points: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise StoreError("Qdrant went away")
        return real(self, collection, points)

    monkeypatch.setattr(QdrantStore, "set_vectors", failing)
    with pytest.raises(StoreError, match="went away"):
        migrate(settings(tmp_path), source_store=memory_store)
    monkeypatch.setattr(QdrantStore, "set_vectors", real)
    result = migrate(settings(tmp_path), source_store=memory_store)
    assert result.collections[0].resumed and result.collections[0].target_count == 64


def test_in_place_refusals(memory_store: QdrantStore, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    make_collection(memory_store.client, "docs", n=10, named=True)
    with pytest.raises(ConfigError, match="no alias moves"):
        migrate(settings(tmp_path, vector="dense", alias="live"), source_store=memory_store)
    with pytest.raises(ConfigError, match="already has a vector named 'image' that this "
                                          "migration did not add"):
        migrate(settings(tmp_path, vector="dense", new_vector="image"),
                source_store=memory_store)
    assert set(memory_store.describe("docs").vectors) == {"dense", "image"}  # untouched
    server = QdrantStore(memory_store.client, location="http://old:6333", local=False)

    class Info:
        version = "1.17.2"

    monkeypatch.setattr(memory_store.client, "info", lambda: Info())
    with pytest.raises(StoreError, match="needs Qdrant 1.18 or later .* runs 1.17.2"):
        migrate(settings(tmp_path, vector="dense"), source_store=server)


def test_restart_removes_the_added_vector_never_the_collection(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=20)
    migrate(settings(tmp_path), source_store=memory_store)
    asked: list[list[str]] = []
    migrate(settings(tmp_path), source_store=memory_store, restart=True,
            confirm=lambda names: asked.append(names) or True)
    assert asked == [["vector 'hash-words-v1-48' of 'docs'"]]
    assert memory_store.client.count("docs").count == 20  # the collection stays
    assert "hash-words-v1-48" in memory_store.describe("docs").vectors  # and is redone


def test_drop_old_vector_refusals_and_removal(memory_store: QdrantStore,
                                              tmp_path: Path) -> None:
    from migrator.inplace import drop_old_vector

    make_collection(memory_store.client, "docs", n=30, named=True)
    config = settings(tmp_path, vector="dense", new_vector="dense_v2")
    with pytest.raises(ConfigError, match="no in-place migration .* replaced it"):
        drop_old_vector(config, "docs", "dense", store=memory_store)
    with pytest.raises(ConfigError, match="has no dense vector 'nope'"):
        drop_old_vector(config, "docs", "nope", store=memory_store)
    migrate(config, source_store=memory_store)
    before = everything(memory_store, "docs")
    assert drop_old_vector(config, "docs", "dense", store=memory_store) == "docs"
    assert set(memory_store.describe("docs").vectors) == {"image", "dense_v2"}
    after = everything(memory_store, "docs")
    assert all(after[i][0] == before[i][0] for i in before)  # payloads stay
    only = settings(tmp_path / "other")
    memory_store.client.create_collection("one", vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE))
    with pytest.raises(ConfigError, match="only dense vector of 'one'"):
        drop_old_vector(only, "one", "", store=memory_store, force=True)


def test_drop_old_vector_never_removes_the_vector_the_migration_added(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """Given the new vector's name, --force removed it: the migration's whole result."""
    from migrator.inplace import drop_old_vector

    config = _unverified(memory_store, tmp_path)
    with pytest.raises(ConfigError) as refused:
        drop_old_vector(config, "docs", "dense_v2", store=memory_store, force=True)
    assert ("'dense_v2' of 'docs' is the vector the in-place migration to hashing "
            "hash-words-v1 added, not the one it replaced: that is 'dense'") in str(
        refused.value)
    assert set(memory_store.describe("docs").vectors) == {"dense", "image", "dense_v2"}


def _unverified(store: QdrantStore, tmp_path: Path) -> Settings:
    """'dense' of 'docs' replaced by 'dense_v2' in place, with --no-verify."""
    make_collection(store.client, "docs", n=30, named=True)
    config = settings(tmp_path, vector="dense", new_vector="dense_v2")
    config.verify.enabled = False
    migrate(config, source_store=store)
    return config


def test_drop_old_vector_refuses_an_unverified_replacement_unless_forced(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    from migrator.inplace import drop_old_vector

    config = _unverified(memory_store, tmp_path)
    with pytest.raises(ConfigError) as refused:
        drop_old_vector(config, "docs", "dense", store=memory_store)
    # it said "did not pass verification" and to verify (`migrator verify` records nothing)
    assert "'dense_v2' was not verified (--no-verify)" in str(refused.value)
    assert "run that `migrator migrate` again with verification on" in str(refused.value)
    verify(config.model_copy(update={"verify": VerifySettings()}), source_store=memory_store)
    with pytest.raises(ConfigError, match="was not verified"):  # verify alone records nothing
        drop_old_vector(config, "docs", "dense", store=memory_store)
    config.verify.enabled = True
    migrate(config, source_store=memory_store)
    drop_old_vector(config, "docs", "dense", store=memory_store)  # verified now
    assert "dense" not in memory_store.describe("docs").vectors


def test_drop_old_vector_after_a_failed_verification_is_forced_only(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    from migrator.inplace import drop_old_vector
    from migrator.state import State

    config = _unverified(memory_store, tmp_path)
    with State(tmp_path / "state") as state:
        (record,) = state.all()
        state.update(record.id, verification={"passed": False})
    with pytest.raises(ConfigError, match="'dense_v2' failed verification"):
        drop_old_vector(config, "docs", "dense", store=memory_store)
    drop_old_vector(config, "docs", "dense", store=memory_store, force=True)
    assert "dense" not in memory_store.describe("docs").vectors


def test_after_drop_old_vector_a_rerun_does_not_rewrite_the_vector_it_reads(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """Once the unnamed vector was dropped, the new one is the collection's only vector: a
    re-run read it as the vector to replace and wrote it again ("already has a vector ...
    this migration did not add"), and `sync` re-embedded every point as "changed"."""
    from migrator.inplace import drop_old_vector

    make_collection(memory_store.client, "docs", n=30)
    config = settings(tmp_path)
    using = migrate(config, source_store=memory_store).collections[0].using
    assert using is not None and using.endswith("`migrator drop-old-vector docs --vector ''` "
                                                "frees the old one.")  # runnable as shown
    drop_old_vector(config, "docs", "", store=memory_store)
    before = everything(memory_store, "docs")
    for run in (migrate, sync):
        with pytest.raises(ConfigError, match="would read the vector it writes, "
                                              "'hash-words-v1-48': the in-place migration "
                                              "to hashing hash-words-v1 added it, and the "
                                              "vector it replaced \\(\\(unnamed\\)\\) "
                                              "has been removed"):
            run(config, source_store=memory_store)
    assert everything(memory_store, "docs") == before
    # moving that vector on to another model is a migration of its own
    onward = settings(tmp_path, new_vector="ngrams")
    onward.provider = ProviderSettings(name="hashing", model="hash-ngrams-v1", dimensions=32)
    migrate(onward, source_store=memory_store)
    assert set(memory_store.describe("docs").vectors) == {"hash-words-v1-48", "ngrams"}


def test_plan_shows_both_strategies_storage_and_recommends_one(memory_store: QdrantStore,
                                                               tmp_path: Path) -> None:
    from migrator import plan, report

    make_collection(memory_store.client, "docs", n=100, named=True, sparse=True,
                    payload=lambda i, text: {"text": text, "body": "x" * 2000})
    result = plan(settings(tmp_path, vector="dense"), source_store=memory_store)
    storage = result.collections[0].storage
    assert storage["in_place_bytes"] == 100 * 48 * 4
    # the other vectors (image: 4, the new dense: 48) and ~2 kB of payload, again
    assert storage["new_collection_bytes"] > 100 * (2000 + (48 + 4) * 4)
    assert storage["recommended"] == "in-place"
    assert "recommended: in-place" in report.plan(result)
    memory_store.client.create_collection("small", vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE))
    memory_store.client.upsert("small", points=[qm.PointStruct(
        id=i, vector=[1.0, 0, 0, 0], payload={"text": f"t{i}"}) for i in range(10)])
    small = plan(Settings(provider=MODEL, collections=[CollectionSettings(name="small")],
                          migration=MigrationSettings(state_dir=tmp_path / "s")),
                 source_store=memory_store)
    assert small.collections[0].storage["recommended"] == "new-collection"


def test_plan_says_its_storage_assumes_a_size_the_probe_has_not_found(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """A model the catalog lacks has no size before the probe: the storage figures were
    computed at the source's size and printed as if they were the new model's."""
    from migrator import plan, report

    make_collection(memory_store.client, "docs", n=10)
    unknown = ProviderSettings(name="openai-compatible", model="served",
                               base_url="http://127.0.0.1:9/v1")
    result = plan(Settings(provider=unknown, collections=[CollectionSettings(name="docs")],
                           migration=MigrationSettings(state_dir=tmp_path / "s")),
                  source_store=memory_store)
    storage = result.collections[0].storage
    size = memory_store.describe("docs").vectors[""].size
    assert storage["dims_assumed"] is True and storage["in_place_bytes"] == 10 * size * 4
    assert (f"(at {size} dims, the source's: the probe finds the model's)"
            in report.plan(result))
    known = plan(settings(tmp_path), source_store=memory_store).collections[0].storage
    assert known["dims_assumed"] is False


def test_plan_of_an_in_place_migration_reads_as_migrate_runs_it(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """Once run, `plan` with the same flags said "several dense vectors; name one" (migrate
    knows the one it added), and it always showed a new collection `docs__...` as the
    target; after drop-old-vector it had no word of migrate's refusal."""
    from migrator import plan, report
    from migrator.inplace import drop_old_vector

    make_collection(memory_store.client, "docs", n=30)
    config = settings(tmp_path)
    (before,) = plan(config, source_store=memory_store).collections
    assert (before.target, before.new_vector, before.target_exists) == (
        "docs", "hash-words-v1-48", False)
    assert "target: vector 'hash-words-v1-48' of 'docs' (in place): 48 dims, Cosine (new)" in (
        report.plan(plan(config, source_store=memory_store)))
    migrate(config, source_store=memory_store)
    (after,) = plan(config, source_store=memory_store).collections
    assert after.vector == "" and after.target_exists and after.recorded is not None
    assert not [w for w in after.warnings if "refuse" in w or "already" in w]
    drop_old_vector(config, "docs", "", store=memory_store)
    (dropped,) = plan(config, source_store=memory_store).collections
    assert any(w.startswith("migrate will refuse to start: The in-place migration of 'docs' "
                            "would read the vector it writes") for w in dropped.warnings)
    memory_store.client.create_collection("taken", vectors_config={
        "a": qm.VectorParams(size=4, distance=qm.Distance.COSINE),
        "hash-words-v1-48": qm.VectorParams(size=48, distance=qm.Distance.COSINE)})
    (taken,) = plan(Settings(provider=MODEL, collections=[CollectionSettings(
        name="taken", vector="a")], migration=config.migration), source_store=memory_store
        ).collections
    assert any("already has a vector named 'hash-words-v1-48', which no migration recorded "
               "here added; migrate will refuse it" in w for w in taken.warnings)


def test_a_run_can_mix_strategies(memory_store: QdrantStore, tmp_path: Path) -> None:
    from migrator import report

    make_collection(memory_store.client, "docs", n=20)
    make_collection(memory_store.client, "faq", n=20)
    config = Settings(provider=MODEL, collections=[
        CollectionSettings(name="docs", strategy="in-place"),
        CollectionSettings(name="faq", alias="faq_live")],
        migration=MigrationSettings(state_dir=tmp_path / "state"))
    result = migrate(config, source_store=memory_store)
    docs, faq = result.collections
    assert docs.target == "docs" and docs.using and not docs.swapped
    assert faq.target == "faq__hash-words-v1-48" and faq.swapped
    assert memory_store.client.get_aliases().aliases[0].alias_name == "faq_live"
    assert (docs.write_mode, faq.write_mode) == ("new vector only", "insert-only")
    text = report.migration(result)  # was: 'insert-only' for the in-place writes too
    assert "Backfill writes of 'docs': new vector only (the points' other vectors" in text
    assert "Backfill writes of 'faq': insert-only (Qdrant's conditional writes" in text


def test_status_names_the_vector_an_in_place_migration_wrote(memory_store: QdrantStore,
                                                             tmp_path: Path) -> None:
    from migrator import status
    from migrator.status_report import status as render

    make_collection(memory_store.client, "docs", n=10)
    migrate(settings(tmp_path), source_store=memory_store)
    shown = status(settings(tmp_path), store=memory_store)
    text = render(shown)
    assert "docs (vector hash-words-v1-48)" in text
    assert "Vectors of 'docs': (unnamed), 'hash-words-v1-48' (written by" in text
    assert shown.to_dict()["vectors"]["docs"][""] is None
    (row,) = shown.to_dict()["migrations"]
    assert (row["strategy"], row["new_vector"], row["created_vector"]) == (
        "in-place", "hash-words-v1-48", True)


def test_the_new_vector_takes_the_index_settings_of_the_one_it_replaces(
        memory_store: QdrantStore, monkeypatch: pytest.MonkeyPatch) -> None:
    client = memory_store.client
    client.create_collection("docs", vectors_config={"dense": qm.VectorParams(
        size=4, distance=qm.Distance.COSINE, hnsw_config=qm.HnswConfigDiff(m=32), on_disk=True,
        quantization_config=qm.ScalarQuantization(scalar=qm.ScalarQuantizationConfig(
            type=qm.ScalarType.INT8)))})
    sent: list[Any] = []
    monkeypatch.setattr(client, "update_collection",
                        lambda name, vectors_config: sent.append((name, vectors_config)))
    memory_store.add_vector("docs", "dense_v2", size=8, distance="Dot", like="dense")
    ((name, config),) = sent  # what a server is told (local mode has no index to apply it)
    diff = config["dense_v2"]
    assert name == "docs" and diff.hnsw_config.m == 32 and diff.on_disk is True
    assert diff.quantization_config.scalar.type == qm.ScalarType.INT8


def test_a_restart_with_the_state_lost_never_deletes_the_collection(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=20)
    migrate(settings(tmp_path), source_store=memory_store)
    (tmp_path / "state" / "state.db").unlink()
    with pytest.raises(ConfigError, match="already has a vector named 'hash-words-v1-48' that "
                                          "this migration did not add"):
        migrate(settings(tmp_path, vector=""), source_store=memory_store, restart=True,
                confirm=lambda names: pytest.fail(f"asked to delete {names}"))
    with pytest.raises(ConfigError, match=r"several dense vectors \(\(unnamed\), "
                                          r"'hash-words-v1-48'\); .* --vector '' for the "
                                          "unnamed one"):  # which is the old one?
        migrate(settings(tmp_path), source_store=memory_store, restart=True)
    assert memory_store.client.count("docs").count == 20


def test_a_failure_while_adding_the_vector_leaves_a_run_that_adds_it(
        memory_store: QdrantStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_collection(memory_store.client, "docs", n=20)
    real = QdrantStore.add_vector

    def broken(self: QdrantStore, *args: Any, **kwargs: Any) -> None:
        raise StoreError("the server went away")

    monkeypatch.setattr(QdrantStore, "add_vector", broken)
    with pytest.raises(StoreError):
        migrate(settings(tmp_path), source_store=memory_store)
    monkeypatch.setattr(QdrantStore, "add_vector", real)
    result = migrate(settings(tmp_path), source_store=memory_store)
    assert result.collections[0].target_count == 20


def test_verify_compares_the_old_and_new_vector_of_an_in_place_migration(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    from migrator import verify

    make_collection(memory_store.client, "docs", n=40)
    migrate(settings(tmp_path), source_store=memory_store)
    (report,) = verify(settings(tmp_path), source_store=memory_store).reports
    assert report.passed and report.source == report.target == "docs"


def test_sync_before_an_in_place_migration_says_to_migrate_first(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=10)
    with pytest.raises(StoreError, match="\\(hash-words-v1-48\\) of 'docs' does not exist .* "
                                         "run `migrator migrate` first"):
        sync(settings(tmp_path), source_store=memory_store)
    assert set(memory_store.describe("docs").vectors) == {""}


def test_a_store_error_while_writing_new_vectors_is_the_stores_own(
        memory_store: QdrantStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that failed for another reason than a point deleted meanwhile is not retried
    or renamed: the store's own message reaches the user."""
    from migrator.store import Point

    make_collection(memory_store.client, "docs", n=3)
    memory_store.add_vector("docs", "v2", size=2, distance="Dot")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ValueError("Wrong input: disk full")

    monkeypatch.setattr(memory_store.client, "update_vectors", refuse)
    with pytest.raises(StoreError, match="disk full"):
        memory_store.set_vectors("docs", [Point(1, {}, {"v2": [1.0, 0.0]})])
