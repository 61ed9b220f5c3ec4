"""Verification, the swap gate, rollback and swap: metric functions by hand, then each
planted fault fails the gate and leaves the alias where it was."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from migrator import (
    CollectionNotFound,
    CollectionSettings,
    ConfigError,
    MigrationSettings,
    ProviderResponseError,
    ProviderSettings,
    SchemaMismatch,
    Settings,
    VerificationFailed,
    drop_old,
    migrate,
    old_collection,
    report,
    rollback,
    status,
    swap,
    verify,
)
from migrator.catalog import ModelSpec
from migrator.embedding import Embedder, Embedding
from migrator.embedding.base import InputKind
from migrator.metrics import mrr_at_k, ndcg_at_k, overlap_at_k, recall_at_k
from migrator.sampling import Reservoir
from migrator.settings import StoreSettings, VerifySettings
from migrator.state import Phase, State
from migrator.store import QdrantStore

from .conftest import make_collection
from .loopback import Fault, LoopbackServer

# ---- metrics, by hand --------------------------------------------------------------------


def test_ndcg_with_graded_relevance() -> None:
    gains = {"a": 2.0, "b": 1.0}
    # ideal order a, b: 2/log2(2) + 1/log2(3)
    ideal = 2 + 1 / np.log2(3)
    assert ndcg_at_k(["a", "b", "x"], gains, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "a"], gains, 10) == pytest.approx((1 + 2 / np.log2(3)) / ideal)
    assert ndcg_at_k(["x", "a"], gains, 10) == pytest.approx((2 / np.log2(3)) / ideal)
    assert ndcg_at_k(["x", "y"], gains, 1) == 0.0


def test_ndcg_without_relevant_documents_is_zero() -> None:
    assert ndcg_at_k(["a", "b"], {}, 10) == 0.0
    assert ndcg_at_k(["a"], {"a": 0.0}, 10) == 0.0


def test_recall_with_fewer_than_k_results_and_ties_in_input() -> None:
    assert recall_at_k(["a", "b"], {"a", "c"}, 10) == 0.5
    assert recall_at_k(["a", "a", "c"], {"a", "c"}, 2) == 0.5  # the repeat takes a slot
    assert recall_at_k([], {"a"}, 10) == 0.0
    assert recall_at_k(["a"], set(), 10) == 0.0


def test_mrr_and_overlap() -> None:
    assert mrr_at_k(["x", "y", "a"], {"a"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "a"], {"a"}, 2) == 0.0
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], 4) == 0.5


def test_reservoir_is_seeded_and_uniform() -> None:
    def draw(seed: int) -> list[int]:
        r = Reservoir(10, seed)
        r.offer((i, str(i)) for i in range(1000))
        return [i for i, _ in r.items]

    assert draw(1) == draw(1) and draw(1) != draw(2)
    counts = np.zeros(10)
    for seed in range(400):
        for i in draw(seed):
            counts[i // 100] += 1
    assert counts.min() > 300 and counts.max() < 500  # ~400 each decile


# ---- the gate ----------------------------------------------------------------------------


def config(tmp_path: Path, **provider: object) -> Settings:
    return Settings(
        provider=ProviderSettings(**{"name": "hashing", "model": "hash-ngrams-v1",
                                     "dimensions": 64, **provider}),  # type: ignore[arg-type]
        collections=[CollectionSettings(name="docs", alias="live")],
        migration=MigrationSettings(state_dir=tmp_path / "state", page_size=16),
        verify=VerifySettings(sample=40),
    )


def test_a_clean_migration_passes_and_swaps(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=80)
    memory_store.swap_alias("live", "docs")
    result = migrate(config(tmp_path), source_store=memory_store)
    report = result.collections[0].verification
    assert report is not None and report.passed
    by_name = {c.name: c for c in report.checks}
    assert by_name["self-retrieval recall@10"].value == 1.0
    ann = by_name["ANN recall@10"]
    assert (ann.value, ann.status, ann.passed) == (None, "n/a", True)
    assert by_name["integrity"].value == 1.0
    assert "embedded store" in report.readiness
    assert memory_store.aliases() == {"live": result.collections[0].target}
    shown = status(config(tmp_path), store=memory_store).to_dict()
    assert shown["migrations"][0]["verification"]["passed"] is True


def test_a_model_truncated_to_a_tiny_size_fails_the_gate(memory_store: QdrantStore,
                                                         tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=120)
    memory_store.swap_alias("live", "docs")
    with LoopbackServer(dims=1536) as server:  # cut to 1 value: every vector is +1 or -1
        settings = config(tmp_path, name="openai-compatible", model="text-embedding-ada-002",
                          base_url=server.url, dimensions=1, dimension_policy="truncate")
        with pytest.raises(VerificationFailed, match="self-retrieval recall@10 0\\.\\d+ < "
                                                     "0\\.950.*No alias was moved") as caught:
            migrate(settings, source_store=memory_store)
    assert memory_store.aliases() == {"live": "docs"}
    assert caught.value.report[0]["passed"] is False
    record = status(settings, store=memory_store).migrations[0]
    assert record.phase == "failed" and "verification failed" in (record.error or "")


def test_force_swaps_and_records_it(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=60)
    memory_store.swap_alias("live", "docs")
    with LoopbackServer(dims=1536) as server:
        settings = config(tmp_path, name="openai-compatible", model="text-embedding-ada-002",
                          base_url=server.url, dimensions=1, dimension_policy="truncate")
        result = migrate(settings, source_store=memory_store, force=True, drop_old=True)
    assert result.collections[0].forced and result.collections[0].swapped
    # --drop-old keeps what a forced move left: the way back
    assert result.collections[0].kept == "the move was forced past a failed verification"
    assert "docs" in memory_store.collection_names()
    history = status(settings, store=memory_store).alias_history
    assert history[-1]["forced"] is True and history[-1]["metrics"]["passed"] is False


def test_a_swap_by_hand_refuses_a_target_that_failed_verification(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """`migrator swap live <target>` moved the alias to a collection whose migration had
    just failed its gate, without a word: what `migrate` refused, a hand could do."""
    make_collection(memory_store.client, "docs", n=120)
    memory_store.swap_alias("live", "docs")
    with LoopbackServer(dims=1536) as server:
        settings = config(tmp_path, name="openai-compatible", model="text-embedding-ada-002",
                          base_url=server.url, dimensions=1, dimension_policy="truncate")
        with pytest.raises(VerificationFailed):
            migrate(settings, source_store=memory_store)
    target = status(settings, store=memory_store).migrations[0].target
    with pytest.raises(ConfigError, match=(
            f"'{target}' is not ready to serve: the migration of 'docs' to openai-compatible "
            "text-embedding-ada-002 wrote it and it failed verification. `migrator status` "
            "shows which check failed and by how much; running it again changes nothing "
            "until that is fixed. Or move the alias anyway with --force")):
        swap(settings, "live", target, store=memory_store)
    assert memory_store.aliases() == {"live": "docs"}
    move = swap(settings, "live", target, store=memory_store, force=True)
    assert move.forced and memory_store.aliases() == {"live": target}
    assert status(settings, store=memory_store).alias_history[-1]["forced"] is True


def test_a_swap_by_hand_refuses_an_unfinished_or_failed_target(memory_store: QdrantStore,
                                                               tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=100)
    make_collection(memory_store.client, "other", n=3)
    memory_store.swap_alias("live", "other")
    settings = _failed_midway(memory_store, tmp_path, "loop")
    (record,) = State(tmp_path / "state").all()
    with pytest.raises(ConfigError, match=f"'{record.target}' is not ready to serve: the "
                       "migration of 'docs' to openai-compatible loop wrote it and failed: "
                       ".*boom.*Run that migration again"):
        swap(settings, "live", record.target, store=memory_store)
    with State(tmp_path / "state") as state:  # as a run killed mid-backfill leaves it
        state.update(record.id, phase=Phase.BACKFILLING, error=None)
    written = record.counters.get("written", 0)
    with pytest.raises(ConfigError, match=f"has not finished \\(backfilling, {written:,} of "
                                          "100 points written\\)"):
        swap(settings, "live", record.target, store=memory_store)
    assert memory_store.aliases() == {"live": "other"}
    assert swap(settings, "live", "docs", store=memory_store).forced is False  # no migration's


def _failed_midway(store: QdrantStore, tmp_path: Path, model: str) -> Settings:
    """A migration of 'docs' that failed after some of its points were written."""
    with LoopbackServer(dims=8) as server:
        server.faults.extend([Fault(0)] * 4 + [Fault(400, {"error": {"message": "boom"}})])
        settings = config(tmp_path, name="openai-compatible", model=model,
                          base_url=server.url, dimensions=None, batch_size=16)
        settings.collections[0].alias = None
        with pytest.raises(ProviderResponseError, match="boom"):
            migrate(settings, source_store=store)
    return settings


def test_drop_old_refuses_a_source_an_unfinished_migration_reads(memory_store: QdrantStore,
                                                                  tmp_path: Path) -> None:
    """After a move by hand, `drop-old` deleted the collection the alias left even when it
    was the source of a migration that had not finished: it could not resume."""
    make_collection(memory_store.client, "docs", n=100)
    make_collection(memory_store.client, "other", n=3)
    memory_store.swap_alias("live", "docs")
    settings = _failed_midway(memory_store, tmp_path, "loop")
    swap(settings, "live", "other", store=memory_store)  # by hand: 'docs' is the old one now
    refusal = ("Collection 'docs' is not deleted: the migration of 'docs' to "
               r"openai-compatible loop reads it and has not finished \(failed, .* points "
               r"written\).*--force")
    with pytest.raises(ConfigError, match=refusal):
        old_collection(settings, "live", store=memory_store)
    with pytest.raises(ConfigError, match=refusal):
        drop_old(settings, "live", store=memory_store)
    assert "docs" in memory_store.collection_names()
    assert old_collection(settings, "live", store=memory_store, force=True) == "docs"
    assert drop_old(settings, "live", store=memory_store, force=True) == "docs"
    assert "docs" not in memory_store.collection_names()


def test_migrate_drop_old_keeps_a_source_another_migration_still_reads(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=100)
    memory_store.swap_alias("live", "docs")
    _failed_midway(memory_store, tmp_path, "loop")  # to one model, unfinished
    settings = config(tmp_path)  # to another, with --drop-old
    (moved,) = migrate(settings, source_store=memory_store, drop_old=True).collections
    assert moved.swapped and moved.dropped is None
    assert moved.kept is not None and moved.kept.startswith(
        "the migration of 'docs' to openai-compatible loop reads it and has not finished")
    assert "docs" in memory_store.collection_names()


def _migrated(store: QdrantStore, tmp_path: Path, n: int = 60) -> tuple[Settings, str]:
    make_collection(store.client, "docs", n=n,
                    payload=lambda i, t: {"text": t, "title": f"heading {i} of a different kind"})
    settings = config(tmp_path)
    settings.collections[0].alias = None
    target = migrate(settings, source_store=store).collections[0].target
    settings.collections[0].target = target
    return settings, target


def test_vectors_shuffled_across_ids_fail(memory_store: QdrantStore, tmp_path: Path) -> None:
    settings, target = _migrated(memory_store, tmp_path)
    points, _ = memory_store.client.scroll(target, limit=1000, with_vectors=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(points))
    memory_store.client.upsert(target, points=[
        qm.PointStruct(id=p.id, payload=p.payload, vector=points[j].vector)
        for p, j in zip(points, order, strict=True)])
    result = verify(settings, source_store=memory_store)
    assert not result.passed
    check = result.reports[0].checks[1]
    assert check.name == "self-retrieval recall@10" and check.value is not None
    assert check.value < 0.5


def test_vectors_shuffled_in_a_collection_smaller_than_k_fail(memory_store: QdrantStore,
                                                              tmp_path: Path) -> None:
    """With 8 points and k = 10 every point is in every top 10: self-retrieval passed
    vectors shuffled across ids at 1.000. It searches the top 4 (half the points) instead,
    and says so."""
    make_collection(memory_store.client, "docs", n=8)
    memory_store.swap_alias("live", "docs")
    settings = config(tmp_path)
    target = migrate(settings, source_store=memory_store).collections[0].target
    points, _ = memory_store.client.scroll(target, limit=100, with_vectors=True)
    memory_store.client.upsert(target, points=[  # each point gets the next one's vector
        qm.PointStruct(id=p.id, payload=p.payload, vector=points[(i + 1) % 8].vector)
        for i, p in enumerate(points)])
    settings.collections[0].alias = None
    check = verify(settings, source_store=memory_store).reports[0].checks[1]
    assert check.name == "self-retrieval recall@4" and check.value is not None
    assert check.value < 0.95 and "k lowered from 10: the target holds 8 points" in check.detail


def test_target_embedded_from_the_wrong_field_fails(memory_store: QdrantStore,
                                                    tmp_path: Path) -> None:
    settings, _ = _migrated(memory_store, tmp_path)
    settings.collections[0].text_field = "title"  # what the target should have been built from
    result = verify(settings, source_store=memory_store)
    assert not result.passed
    assert "self-retrieval" in result.reports[0].failed[0].name
    # the recorded migration says why: it embedded another text than this check does
    (warning,) = result.reports[0].warnings
    assert "embedded the text from field 'text' (this check: field 'title')" in warning
    assert "warning: The migration that wrote" in report.verify(result)
    settings.collections[0].text_field = "text"
    assert verify(settings, source_store=memory_store).reports[0].warnings == []


def test_verify_finds_the_target_a_migration_wrote_into_this_store(tmp_path: Path) -> None:
    """A migration into another store (--target-qdrant-path) named the collection verify
    read here: a collection of that name in this store was verified in its place."""
    here, there = QdrantStore(QdrantClient(":memory:"), location="here", local=True,
                              identity="memory:here"), tmp_path / "there"
    make_collection(here.client, "docs", n=20)
    make_collection(here.client, "custom", n=20)  # not what the migration wrote
    settings = config(tmp_path)
    settings.collections = [CollectionSettings(name="docs", target="custom")]
    settings.target = StoreSettings(path=str(there))
    migrate(settings, source_store=here)
    settings.collections = [CollectionSettings(name="docs")]  # verify finds the target
    settings.target = None
    with pytest.raises(CollectionNotFound, match="docs__hash-ngrams-v1-64"):
        verify(settings, source_store=here)


def test_points_missing_from_the_target_fail_integrity(memory_store: QdrantStore,
                                                       tmp_path: Path) -> None:
    settings, target = _migrated(memory_store, tmp_path)
    memory_store.client.delete(target, points_selector=qm.PointIdsList(points=[1, 2, 3]))
    result = verify(settings, source_store=memory_store)
    integrity = result.reports[0].checks[0]
    assert integrity.status == "fail"
    assert "target holds 57 points, 60 expected" in integrity.detail


def test_verify_cli_writes_markdown_and_exits_3(memory_store: QdrantStore,
                                                tmp_path: Path) -> None:
    from click.testing import CliRunner
    from qdrant_client import QdrantClient

    from migrator.cli import cli

    client = QdrantClient(path=str(tmp_path / "q"))
    make_collection(client, "docs", n=30)
    client.close()
    base = ["--qdrant-path", str(tmp_path / "q"), "--state-dir", str(tmp_path / "s"),
            "--provider", "hashing", "--model", "hash-ngrams-v1", "--dimensions", "64"]
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate", *base, "--collection", "docs",
                               "--target", "docs_v2"]).exit_code == 0
    ok = runner.invoke(cli, ["verify", *base, "--collection", "docs", "--target", "docs_v2",
                             "--report", str(tmp_path / "v.md"), "--json"])
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["passed"] is True
    markdown = (tmp_path / "v.md").read_text()
    assert markdown.startswith("# migrator verification") and "| pass | integrity |" in markdown
    # a .json name gets the JSON document, not Markdown under that name
    as_file = runner.invoke(cli, ["verify", *base, "--collection", "docs", "--target",
                                  "docs_v2", "--report", str(tmp_path / "v.json")])
    assert as_file.exit_code == 0, as_file.stderr
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is True
    bad = runner.invoke(cli, ["verify", *base, "--collection", "docs,text_field=nothing",
                              "--target", "docs_v2"])
    assert bad.exit_code == 3 and "Verification failed" in bad.stderr
    nowhere = runner.invoke(cli, ["verify", *base, "--collection", "docs", "--target",
                                  "docs_v2", "--report", str(tmp_path / "no" / "v.md")])
    assert nowhere.exit_code == 2 and "the directory" in nowhere.stderr  # before it verifies
    assert "Traceback" not in nowhere.output
    too_big = runner.invoke(cli, ["verify", *base, "--collection", "docs", "--target",
                                  "docs_v2", "--k", "100000"])  # it was pydantic's traceback
    assert too_big.exit_code == 2 and "verify.k: Input should be less than or equal to 1000" in (
        too_big.stderr)


# ---- swap, rollback, drop-old ---------------------------------------------------------


def test_swap_rollback_and_drop_old(memory_store: QdrantStore, tmp_path: Path) -> None:
    for name in ("v1", "v2"):
        make_collection(memory_store.client, name, n=3)
    settings = config(tmp_path)
    assert swap(settings, "live", "v1", store=memory_store).previous is None
    move = swap(settings, "live", "v2", store=memory_store)
    assert (move.previous, move.current) == ("v1", "v2")
    back = rollback(settings, "live", store=memory_store)
    assert (back.previous, back.current) == ("v2", "v1")
    assert memory_store.aliases() == {"live": "v1"}
    assert old_collection(settings, "live", store=memory_store) == "v2"
    with pytest.raises(ConfigError, match="moved meanwhile.*now 'v2', not 'v9'"):
        drop_old(settings, "live", store=memory_store, expected="v9")
    assert drop_old(settings, "live", store=memory_store, expected="v2") == "v2"
    assert memory_store.collection_names() == ["v1"]


def test_swap_refuses_what_would_break_queries(memory_store: QdrantStore,
                                               tmp_path: Path) -> None:
    make_collection(memory_store.client, "v1", n=3, named=True)
    make_collection(memory_store.client, "plain", n=3)
    settings = config(tmp_path)
    swap(settings, "live", "v1", store=memory_store)
    with pytest.raises(ConfigError, match="'plain' is the name of a collection"):
        swap(settings, "plain", "v1", store=memory_store)
    with pytest.raises(CollectionNotFound, match="'nope' does not exist"):
        swap(settings, "live", "nope", store=memory_store)
    with pytest.raises(SchemaMismatch, match="serves vector\\(s\\) dense, image"):
        swap(settings, "live", "plain", store=memory_store)
    assert memory_store.aliases() == {"live": "v1"}


def test_rollback_needs_a_recorded_move_and_drop_old_keeps_served_collections(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "v1", n=3)
    make_collection(memory_store.client, "v2", n=3)
    settings = config(tmp_path)
    memory_store.swap_alias("live", "v1")
    with pytest.raises(ConfigError, match="no recorded move of alias 'live'"):
        rollback(settings, "live", store=memory_store)
    swap(settings, "live", "v2", store=memory_store)
    memory_store.swap_alias("other", "v1")
    with pytest.raises(ConfigError, match="served by alias other.*migrator swap other"):
        drop_old(settings, "live", store=memory_store)
    assert memory_store.collection_names() == ["v1", "v2"]


def test_rollback_of_an_alias_its_move_created_says_so(memory_store: QdrantStore,
                                                      tmp_path: Path) -> None:
    """A migration's `--alias live` that created the alias: rollback said "There is no
    recorded move of alias 'live'", under `status` listing that very move."""
    make_collection(memory_store.client, "v1", n=3)
    settings = config(tmp_path)
    swap(settings, "fresh", "v1", store=memory_store)
    with pytest.raises(ConfigError, match="'fresh' served nothing before its recorded move "
                                          "to 'v1': it was created then"):
        rollback(settings, "fresh", store=memory_store)
    with pytest.raises(ConfigError, match="its last move created it"):
        drop_old(settings, "fresh", store=memory_store)
    assert memory_store.aliases() == {"fresh": "v1"}


def test_drop_old_after_a_verified_swap(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs_v1", n=30)
    memory_store.swap_alias("live", "docs_v1")
    settings = config(tmp_path)
    settings.collections = [CollectionSettings(name="docs_v1", alias="live")]
    result = migrate(settings, source_store=memory_store, drop_old=True)
    assert result.collections[0].dropped == "docs_v1"
    assert memory_store.collection_names() == [result.collections[0].target]
    # it said "the old collection is kept." and, lines later, that it was deleted
    assert (f"Alias 'live' moved from 'docs_v1' to {result.collections[0].target!r}; it was "
            "deleted (--drop-old).") in report.migration(result)
    assert "is kept" not in report.migration(result)


def test_drop_old_says_why_it_kept_the_old_collection(memory_store: QdrantStore,
                                                      tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs_v1", n=30)
    memory_store.swap_alias("live", "docs_v1")
    memory_store.swap_alias("also", "docs_v1")  # another application still reads it
    settings = config(tmp_path)
    settings.collections = [CollectionSettings(name="docs_v1", alias="live")]
    (moved,) = migrate(settings, source_store=memory_store, drop_old=True).collections
    assert moved.dropped is None and moved.kept == "alias also still serves it"
    assert "docs_v1" in memory_store.collection_names()


def test_labelled_queries_side_by_side(memory_store: QdrantStore, tmp_path: Path) -> None:
    from migrator import ingest

    corpus = tmp_path / "corpus.jsonl"
    texts = [f"{w} tides and {v} bread" for w in ("salty", "calm", "rough", "warm", "cold")
             for v in ("rye", "white", "sourdough", "flat")]
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                              for i, t in enumerate(texts)))
    old = Settings(provider=ProviderSettings(name="hashing", model="hash-words-v1",
                                             dimensions=64),
                   migration=MigrationSettings(state_dir=tmp_path / "state"))
    ingest(corpus, "docs", old, store=memory_store)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query": t, "relevant_ids": [i]}) + "\n"
                               for i, t in enumerate(texts)))
    settings = config(tmp_path)
    settings.verify.queries = queries
    settings.verify.source_provider = old.provider
    result = migrate(settings, source_store=memory_store)
    check = result.collections[0].verification.checks[-1]  # type: ignore[union-attr]
    assert check.name == "labelled nDCG@10" and check.passed
    assert check.data["source"]["ndcg"] == pytest.approx(1.0)
    assert check.data["queries"] == 20 and check.data["drop"] <= 0.02
    # one verification flow: `migrator verify` runs the checks the gate ran, labelled too
    gated = result.collections[0].verification
    alone = verify(settings, source_store=memory_store).reports[0]
    assert gated is not None
    assert [c.name for c in alone.checks] == [c.name for c in gated.checks]
    assert [c.value for c in alone.checks] == [c.value for c in gated.checks]

    settings.provider = ProviderSettings(name="hashing", model="hash-ngrams-v1", dimensions=1,
                                         dimension_policy="truncate")  # collapses
    settings.verify.min_self_recall = None  # let the labelled check decide alone
    with pytest.raises(VerificationFailed, match="labelled nDCG@10"):
        migrate(settings, source_store=memory_store)


def test_labelled_queries_need_the_source_model(memory_store: QdrantStore,
                                                tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=10)
    (tmp_path / "q.jsonl").write_text('{"query": "x", "relevant_ids": [1]}\n')
    settings = config(tmp_path)
    settings.verify.queries = tmp_path / "q.jsonl"
    with pytest.raises(ConfigError, match="needs verify.source_provider"):
        migrate(settings, source_store=memory_store)


def test_status_sees_every_phase(memory_store: QdrantStore, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator.state import MigrationRecord, State

    phases: list[str] = []
    real_update, real_create = State.update, State.create

    def update(self: State, migration: str, **fields: object) -> None:
        real_update(self, migration, **fields)
        if "phase" in fields:
            record = self.get(migration)
            assert record is not None
            phases.append(record.phase)  # what `migrator status` would show now

    def create(self: State, record: MigrationRecord) -> MigrationRecord:
        phases.append(record.phase)
        return real_create(self, record)

    monkeypatch.setattr(State, "update", update)
    monkeypatch.setattr(State, "create", create)
    make_collection(memory_store.client, "docs", n=20)
    migrate(config(tmp_path), source_store=memory_store)
    assert phases == ["planned", "backfilling", "catching_up", "verifying", "swapped"]


def test_one_labelled_query_reader_for_verify_and_compare(tmp_path: Path) -> None:
    """verify.queries reads both dialects `compare --labels` reads (it read only one)."""
    from migrator.records import read_labels
    from migrator.verification.labelled import load_queries

    ids = tmp_path / "ids.jsonl"
    ids.write_text('{"query": "tides", "relevant_ids": [3, "7"]}\n')
    gains = tmp_path / "gains.jsonl"
    gains.write_text('{"query": "tides", "relevant": {"3": 1, "7": 1}}\n')
    assert load_queries(ids, 10) == load_queries(gains, 10) == read_labels(gains)
    assert load_queries(gains, 10)[0].gains == {"3": 1.0, "7": 1.0}



class Slow(Embedder):
    """Takes 20 ms a request and notes how many overlap; the vector of text `t<i>` is
    [i, 0, 0, 0]; a request holding 'boom' fails."""

    spec = ModelSpec("slow", "m", 4, max_inputs=4, max_tokens_per_input=100)
    batch_size = 4
    dims = 4

    def __init__(self) -> None:
        self.running = self.most = self.finished = 0

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.02)
            if "boom" in texts:
                raise RuntimeError("boom")
            self.finished += 1
            return Embedding(np.array([[float(t[1:]), 0, 0, 0] for t in texts],
                                      dtype=np.float32), len(texts))
        finally:
            self.running -= 1

    async def aclose(self) -> None:
        return None


def test_query_embeddings_go_as_many_at_a_time_as_the_backfill_sends() -> None:
    """Verification sent its queries one request at a time, whatever provider.concurrency
    said: 320 texts against a loopback server answering in 200 ms took 10.4 s, 4.4 s now at
    concurrency 4."""
    from migrator.verification.checks import embed_queries

    slow = Slow()
    texts = [f"t{i}" for i in range(40)]
    vectors = asyncio.run(embed_queries(slow, texts, "fail", concurrency=3))
    assert slow.most == 3 and [int(v[0]) for v in vectors] == list(range(40))
    failing = Slow()
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(embed_queries(failing, ["boom", *texts], "fail", concurrency=2))
    assert failing.running == 0 and failing.finished <= 1  # the rest were not sent


@pytest.mark.parametrize("named_target", [False, True])
def test_verify_sizes_its_queries_for_the_targets_distance(
        memory_store: QdrantStore, tmp_path: Path, named_target: bool) -> None:
    """A truncated model under Euclid is not renormalised: `migrate` wrote the vectors so and
    its gate passed, then `migrator verify` (Cosine, whatever the target) renormalised its
    queries, which then found others' points, longer ones, before their own."""
    make_collection(memory_store.client, "docs", n=120)
    with LoopbackServer(dims=1536) as server:
        settings = config(tmp_path, name="openai-compatible", model="text-embedding-ada-002",
                          base_url=server.url, dimensions=2, dimension_policy="truncate")
        settings.collections = [CollectionSettings(name="docs", distance="Euclid")]
        target = migrate(settings, source_store=memory_store).collections[0].target
        assert memory_store.describe(target).vector("").distance == "Euclid"
        again = settings.model_copy(deep=True)
        again.collections = [CollectionSettings(name="docs", target=target if named_target
                                                else None)]  # no --distance: the target's
        report = verify(again, source_store=memory_store).reports[0]
    by_name = {c.name.split("@")[0]: c for c in report.checks}
    assert by_name["self-retrieval recall"].value == 1.0, by_name["self-retrieval recall"]


def test_verify_with_no_migration_to_find_says_what_to_give(memory_store: QdrantStore,
                                                            tmp_path: Path) -> None:
    """It said only that 'docs__hash-ngrams-v1-64' does not exist: a name the user never
    gave, with no word of the state directory it looked in."""
    make_collection(memory_store.client, "docs", n=20)
    settings = config(tmp_path)
    settings.collections = [CollectionSettings(name="docs")]
    with pytest.raises(CollectionNotFound) as refused:
        verify(settings, source_store=memory_store)
    message = str(refused.value)
    assert ("no migration of it to hashing hash-ngrams-v1 is recorded in "
            f"{tmp_path / 'state'}") in message
    assert "'docs__hash-ngrams-v1-64', the collection `migrate` would create" in message
    assert "Give --target" in message


def test_a_collection_that_passed_says_why_its_alias_did_not_move(
        memory_store: QdrantStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One collection failing the gate holds every alias of the run; the one that passed
    stayed at `verifying` with no word of why."""
    import migrator.gate

    real = migrator.gate.check_target

    async def fails_for_same(pair: Any, *args: Any, **kwargs: Any) -> Any:
        report = await real(pair, *args, **kwargs)
        if pair.source == "same":  # as if its vectors were shuffled
            report.checks[1].value = 0.1
        return report

    monkeypatch.setattr(migrator.gate, "check_target", fails_for_same)
    make_collection(memory_store.client, "docs", n=40)
    make_collection(memory_store.client, "same", n=40)
    settings = config(tmp_path)
    settings.collections = [CollectionSettings(name="docs", alias="docs_live"),
                            CollectionSettings(name="same", alias="same_live")]
    with pytest.raises(VerificationFailed):
        migrate(settings, source_store=memory_store)
    rows = {m.source: m for m in status(settings, store=memory_store).migrations}
    assert rows["same"].phase == "failed"
    assert rows["docs"].phase == "verifying" and rows["docs"].verification["passed"]
    assert rows["docs"].error == ("not swapped: 'same' failed in the same run; run it again "
                                  "once that is fixed")
    assert memory_store.aliases() == {}


def test_verify_through_the_alias_a_migration_moved_checks_its_source(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """The alias migrated (`docs` -> docs_v1) serves the target after the swap: verify of
    `docs` checked the target against itself and passed (neighbour overlap 1.000)."""
    make_collection(memory_store.client, "docs_v1", n=40)
    memory_store.swap_alias("docs", "docs_v1")
    settings = config(tmp_path)
    settings.collections = [CollectionSettings(name="docs", alias="docs")]
    target = migrate(settings, source_store=memory_store).collections[0].target
    assert memory_store.aliases() == {"docs": target}
    (report,) = verify(settings, source_store=memory_store).reports
    assert (report.source, report.target) == ("docs_v1", target)
    overlap = next(c for c in report.checks if c.name.startswith("neighbour overlap"))
    assert overlap.value is not None and overlap.value < 1.0
    settings.collections = [CollectionSettings(name="docs", target=target)]
    with pytest.raises(ConfigError, match="verification compares a target with the "
                                          "collection it was migrated from"):
        verify(settings, source_store=memory_store)


def test_an_alias_pointed_elsewhere_during_the_run_is_not_taken_back(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """The preflight found `live` serving the source; while the run went on, someone pointed
    it at another application's collection: the swap would have taken it from there."""
    make_collection(memory_store.client, "docs", n=40)
    make_collection(memory_store.client, "other", n=5)
    memory_store.swap_alias("live", "docs")

    def repoint(progress: Any) -> None:
        if memory_store.aliases()["live"] != "other":
            memory_store.swap_alias("live", "other")

    with pytest.raises(ConfigError, match="Alias 'live' serves 'other', which is neither "
                                          "'docs' nor a migration of it"):
        migrate(config(tmp_path), source_store=memory_store, on_progress=repoint)
    assert memory_store.aliases() == {"live": "other"}
    (shown,) = status(config(tmp_path), store=memory_store).to_dict()["migrations"]
    assert shown["phase"] == "failed" and "Alias 'live' serves 'other'" in shown["error"]
