"""Batch mode against a loopback double of OpenAI's Files and Batches APIs: the same target
as a synchronous run, nothing paid twice across runs and crashes, partial outcomes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr
from qdrant_client import models as qm

from migrator import (
    CollectionSettings,
    MigrationSettings,
    ProviderError,
    ProviderSettings,
    Settings,
    migrate,
)
from migrator.batch_ledger import BatchLedger
from migrator.embedding.batches import OpenAIBatches, call
from migrator.settings import VerifySettings
from migrator.state import State
from migrator.store import QdrantStore

from .batch_loopback import BatchDouble
from .conftest import make_collection
from .loopback import LoopbackServer

POINTS = 400


def settings(tmp_path: Path, url: str, *, batch: bool = True, target: str = "docs_batch",
             state: str = "state", **provider: Any) -> Settings:
    return Settings(
        provider=ProviderSettings(name="openai", model="text-embedding-3-small", base_url=url,
                                  api_key=SecretStr("sk-test"), dimensions=8, batch_size=32,
                                  batch=batch, batch_poll=0.01, **provider),
        collections=[CollectionSettings(name="docs", target=target)],
        migration=MigrationSettings(state_dir=tmp_path / state, page_size=64),
        verify=VerifySettings(enabled=False),
    )


def vectors(store: QdrantStore, collection: str) -> dict[Any, list[float]]:
    points, _ = store.client.scroll(collection, limit=10_000, with_vectors=True)
    return {p.id: p.vector for p in points}  # type: ignore[misc]


@pytest.fixture
def served(memory_store: QdrantStore):  # type: ignore[no-untyped-def]
    make_collection(memory_store.client, "docs", n=POINTS)
    with LoopbackServer(dims=8, api_key="sk-test") as server:
        server.batches = BatchDouble(server, polls=2)
        yield memory_store, server


def test_a_batch_migration_ends_with_the_same_target_as_a_synchronous_one(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path) -> None:
    store, server = served
    double: BatchDouble = server.batches
    first = migrate(settings(tmp_path, server.url), source_store=store)
    probed = len(server.seen)  # the preflight probe's texts, embedded synchronously
    assert first.collections == [] and first.batch is not None and not first.batch.done
    assert first.batch.submitted_jobs == 1 and first.batch.submitted_texts == POINTS - probed
    assert first.batch.submitted_cost == pytest.approx(first.batch.synchronous_cost / 2)
    assert not store.client.collection_exists("docs_batch")  # nothing written yet
    second = migrate(settings(tmp_path, server.url), source_store=store)  # still running
    assert second.batch is not None and second.batch.pending_jobs == 1
    sent = server.answered
    third = migrate(settings(tmp_path, server.url), source_store=store)
    assert third.batch is not None and third.batch.collected_texts == POINTS - probed
    assert server.answered == sent  # the probe's texts come from the cache: not one request
    assert third.collections[0].stats.cached == POINTS
    assert third.collections[0].target_count == POINTS
    assert sorted(double.embedded.values()) == [1] * (POINTS - probed)  # each paid once
    assert not set(double.embedded) & set(server.seen)
    billed = third.bill.to_dict()["phases"]["batch"]  # the bill equals the provider's
    assert (billed["texts"], billed["tokens"]) == (POINTS - probed, double.billed_tokens)
    assert billed["cost_usd"] == pytest.approx(double.billed_tokens * 0.02 / 1e6 * 0.5)
    assert third.cost == pytest.approx(billed["cost_usd"])  # nothing else paid in that run
    assert set(double.deleted) >= {job["input_file_id"] for job in
                                   (b.to_dict() for b in double.batches.values())}
    synchronous = migrate(settings(tmp_path, server.url, batch=False, target="docs_sync",
                                   state="sync-state"), source_store=store)
    assert synchronous.collections[0].target_count == POINTS
    batch, sync = vectors(store, "docs_batch"), vectors(store, "docs_sync")
    assert batch.keys() == sync.keys()
    for point_id, vector in batch.items():
        np.testing.assert_array_equal(vector, sync[point_id])


def test_wait_polls_until_collected_and_a_rerun_sends_nothing(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path) -> None:
    store, server = served
    result = migrate(settings(tmp_path, server.url, batch_wait=True), source_store=store)
    assert result.batch is not None and result.batch.done
    assert result.collections[0].target_count == POINTS
    jobs, files = len(server.batches.batches), len(server.batches.files)
    again = migrate(settings(tmp_path, server.url, batch_wait=True), source_store=store)
    assert again.batch is not None and again.batch.submitted_texts == 0
    assert len(server.batches.batches) == jobs and len(server.batches.files) == files


def test_a_cached_text_is_never_submitted(served: tuple[QdrantStore, LoopbackServer],
                                          tmp_path: Path) -> None:
    store, server = served
    migrate(settings(tmp_path, server.url, batch=False, target="docs_sync"), source_store=store)
    result = migrate(settings(tmp_path, server.url, batch_wait=True), source_store=store)
    assert result.batch is not None and result.batch.submitted_texts == 0
    assert server.batches.batches == {} and result.collections[0].target_count == POINTS


@pytest.mark.parametrize("crash", ["before the batch is created", "before it is recorded"])
def test_a_crash_between_submission_and_collection_never_submits_twice(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, crash: str) -> None:
    store, server = served
    real = OpenAIBatches.create

    async def create_and_die(self: OpenAIBatches, file_id: str, metadata: Any) -> Any:
        if crash == "before it is recorded":
            await real(self, file_id, metadata)
        raise KeyboardInterrupt  # stands for kill -9: nothing after this line runs

    monkeypatch.setattr(OpenAIBatches, "create", create_and_die)
    with pytest.raises(KeyboardInterrupt):
        migrate(settings(tmp_path, server.url), source_store=store)
    monkeypatch.setattr(OpenAIBatches, "create", real)
    result = migrate(settings(tmp_path, server.url, batch_wait=True), source_store=store)
    assert result.batch is not None and result.batch.done
    assert len(server.batches.batches) == 1  # found, or created once, never twice
    assert sorted(server.batches.embedded.values()) == [1] * (POINTS - len(server.seen))
    assert result.collections[0].target_count == POINTS


def test_lines_answered_with_errors_are_sent_again(memory_store: QdrantStore,
                                                   tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=POINTS)
    with LoopbackServer(dims=8, api_key="sk-test") as server:
        server.batches = BatchDouble(server, polls=1, error_ids={"r0", "r2"})
        result = migrate(settings(tmp_path, server.url, batch_wait=True),
                         source_store=memory_store)
        assert result.batch is not None and result.batch.resent_texts >= 64
        assert result.collections[0].target_count == POINTS
        assert len(server.batches.batches) >= 2
        with State(tmp_path / "state") as state:
            jobs = BatchLedger(state).jobs()
        assert jobs[0].resent == 64 and jobs[0].status == "collected"


def test_an_expired_batch_keeps_its_answers_and_the_rest_is_sent_again(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=POINTS)
    with LoopbackServer(dims=8, api_key="sk-test") as server:
        server.batches = BatchDouble(server, polls=1, expire=True)
        first = migrate(settings(tmp_path, server.url), source_store=memory_store)
        assert first.batch is not None and first.batch.pending_jobs == 1
        second = migrate(settings(tmp_path, server.url), source_store=memory_store)
        report = second.batch
        assert report is not None and report.collected_texts and report.resent_texts
        assert report.collected_texts + report.resent_texts == POINTS - len(server.seen)
        assert report.submitted_texts == report.resent_texts  # the rest, in a new job
        assert sorted(server.batches.embedded.values()) == [1] * report.collected_texts


def test_a_failed_batch_stops_with_the_providers_message(memory_store: QdrantStore,
                                                        tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=POINTS)
    with LoopbackServer(dims=8, api_key="sk-test") as server:
        server.batches = BatchDouble(server, fail="The model `x` does not exist")
        with pytest.raises(ProviderError, match="failed batch .* invalid_request: The model "
                                                "`x` does not exist.*free to be sent again"):
            migrate(settings(tmp_path, server.url, batch_wait=True), source_store=memory_store)
        with State(tmp_path / "state") as state:
            (job,) = BatchLedger(state).jobs()
            assert job.status == "failed" and job.resent == POINTS - len(server.seen)
            assert BatchLedger(state).claimed([b"anything"]) == set()


def test_a_batch_refused_for_the_enqueued_token_limit_is_sent_again_later(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=POINTS)
    with LoopbackServer(dims=8, api_key="sk-test") as server:
        server.batches = BatchDouble(server, polls=1, enqueued_tokens=10)
        first = migrate(settings(tmp_path, server.url), source_store=memory_store)
        assert first.batch is not None and first.batch.pending_jobs == 1
        server.batches.enqueued_tokens = None  # earlier batches finished
        result = migrate(settings(tmp_path, server.url, batch_wait=True),
                         source_store=memory_store)
        assert result.batch is not None and result.batch.refused_jobs == 1
        assert result.collections[0].target_count == POINTS


def test_batch_mode_needs_a_provider_with_a_batch_api(memory_store: QdrantStore,
                                                      tmp_path: Path) -> None:
    from migrator import ConfigError

    make_collection(memory_store.client, "docs", n=10)
    config = Settings(provider=ProviderSettings(batch=True),
                      collections=[CollectionSettings(name="docs")],
                      migration=MigrationSettings(state_dir=tmp_path / "s"))
    with pytest.raises(ConfigError, match="'hashing' has no batch API"):
        migrate(config, source_store=memory_store)


def test_point_ids_and_payloads_are_untouched(served: tuple[QdrantStore, LoopbackServer],
                                              tmp_path: Path) -> None:
    store, server = served
    migrate(settings(tmp_path, server.url, batch_wait=True), source_store=store)
    source, _ = store.client.scroll("docs", limit=10_000)
    target, _ = store.client.scroll("docs_batch", limit=10_000)
    assert [(p.id, p.payload) for p in source] == [(p.id, p.payload) for p in target]


def test_the_cli_submits_reports_and_collects(memory_store: QdrantStore, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner
    from qdrant_client import QdrantClient

    from migrator.cli import cli

    path = tmp_path / "qdrant"
    client = QdrantClient(path=str(path))
    make_collection(client, "docs", n=POINTS)
    client.close()
    with LoopbackServer(dims=8, api_key="sk-test") as server:
        server.batches = BatchDouble(server, polls=1)
        args = ["migrate", "--qdrant-path", str(path), "--state-dir", str(tmp_path / "s"),
                "--collection", "docs", "--provider", "openai", "--model",
                "text-embedding-3-small", "--dimensions", "8", "--base-url", server.url,
                "--no-verify", "--batch"]
        env = {"OPENAI_API_KEY": "sk-test"}
        first = CliRunner().invoke(cli, args, env=env)
        assert first.exit_code == 0, first.output
        assert "in 1 batch job:" in first.stdout and "at the batch price" in first.stdout
        assert "Run the same command again" in first.stdout
        shown = CliRunner().invoke(cli, ["status", "--qdrant-path", str(path), "--state-dir",
                                         str(tmp_path / "s")])
        assert "Batch jobs (batch mode):" in shown.stdout and "validating" in shown.stdout
        second = CliRunner().invoke(cli, [*args, "--json"], env=env)
        assert second.exit_code == 0, second.output
        data = json.loads(second.stdout)
        assert data["batch"]["done"] and data["collections"][0]["target_count"] == POINTS


def test_restart_cancels_open_jobs_after_asking_and_sends_their_texts_again(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path) -> None:
    from migrator import MigratorError

    store, server = served
    double: BatchDouble = server.batches
    first = migrate(settings(tmp_path, server.url), source_store=store)
    assert first.batch is not None and first.batch.pending_jobs == 1
    (old,) = double.batches.values()
    with pytest.raises(MigratorError, match="not confirmed; nothing was cancelled"):
        migrate(settings(tmp_path, server.url), source_store=store, restart=True,
                confirm=lambda names: False)
    assert old.status == "validating"
    asked: list[list[str]] = []
    again = migrate(settings(tmp_path, server.url), source_store=store, restart=True,
                    confirm=lambda names: asked.append(names) or True)
    assert asked == [[f"batch job 1 ({old.id}, {first.batch.submitted_texts} texts)"]]
    assert old.status == "cancelled" and old.input_file_id in double.deleted
    assert again.batch is not None and again.batch.submitted_texts == first.batch.submitted_texts
    assert len(double.batches) == 2


def test_plan_shows_the_batch_price_beside_the_synchronous_one(memory_store: QdrantStore,
                                                                tmp_path: Path) -> None:
    from migrator import plan, report

    make_collection(memory_store.client, "docs", n=50)
    result = plan(settings(tmp_path, "http://unused"), source_store=memory_store)
    assert result.batch_cost == pytest.approx(result.estimated_cost / 2)
    text = report.plan(result)
    assert "at the batch price, answered within 24 hours" in text and "synchronously" in text
    assert result.to_dict()["batch"]["window_hours"] == 24
    other = settings(tmp_path, "http://unused")
    other.provider = ProviderSettings(batch=True)
    assert "'hashing' has no batch API" in report.plan(plan(other, source_store=memory_store))


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["while its batch is being created",
                                    "while it waits for the batch"])
def test_kill_9_between_submission_and_collection_then_a_rerun_collects(
        tmp_path: Path, moment: str) -> None:
    """The CLI in a child process, SIGKILLed; the next run collects what was submitted and
    submits nothing again."""
    import os
    import subprocess
    import sys

    from click.testing import CliRunner
    from qdrant_client import QdrantClient

    from migrator.cli import cli

    path = tmp_path / "qdrant"
    client = QdrantClient(path=str(path))
    make_collection(client, "docs", n=POINTS)
    client.close()
    with LoopbackServer(dims=8, api_key="sk-test") as server:
        double = BatchDouble(server, polls=10_000)  # never finishes while the child lives
        double.stall_create = moment == "while its batch is being created"
        server.batches = double
        args = ["migrate", "--qdrant-path", str(path), "--state-dir", str(tmp_path / "s"),
                "--collection", "docs", "--provider", "openai", "--model",
                "text-embedding-3-small", "--dimensions", "8", "--base-url", server.url,
                "--no-verify", "--batch", "--quiet"]
        env = {**os.environ, "OPENAI_API_KEY": "sk-test", "MIGRATOR_PROVIDER__BATCH_POLL": "0.05"}
        child = subprocess.Popen([sys.executable, "-m", "migrator", *args, "--wait"],
                                 env=env, cwd=Path(__file__).resolve().parent.parent)
        signal = double.created if double.stall_create else double.polled
        assert signal.wait(60), "the child never got there"
        child.kill()
        assert child.wait(30) == -9
        double.release.set()
        (batch,) = double.batches.values()
        double.polls = batch.polls + 1  # it finishes at the next poll
        again = CliRunner().invoke(cli, [*args, "--wait"], env={
            "OPENAI_API_KEY": "sk-test", "MIGRATOR_PROVIDER__BATCH_POLL": "0.05"})
        assert again.exit_code == 0, again.output
        assert len(double.batches) == 1  # found again, never created twice
        assert sorted(double.embedded.values()) == [1] * (POINTS - len(server.seen))
        assert "Migrated 1 collection" in again.stdout


def test_a_synchronous_run_is_refused_while_jobs_run_and_fallback_sync_cancels_them(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path) -> None:
    from migrator import ConfigError

    store, server = served
    double: BatchDouble = server.batches
    first = migrate(settings(tmp_path, server.url), source_store=store)
    assert first.batch is not None and first.batch.pending_jobs == 1
    with pytest.raises(ConfigError, match="1 batch job with .* texts of 'docs' is "
                                          "still running .* pay for those texts again"):
        migrate(settings(tmp_path, server.url, batch=False), source_store=store)
    result = migrate(settings(tmp_path, server.url, batch_fallback="sync"), source_store=store)
    (batch,) = double.batches.values()
    assert batch.status == "cancelled" and double.embedded == {}
    assert result.collections[0].target_count == POINTS
    assert sorted(server.seen.values()) == [1] * POINTS  # the rest, synchronously, once


def test_sync_is_refused_while_jobs_of_its_collection_run(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path) -> None:
    """A catch-up would embed synchronously the changed texts a batch job is embedding."""
    from migrator import ConfigError, sync

    store, server = served
    done = migrate(settings(tmp_path, server.url, batch_wait=True), source_store=store)
    assert done.collections[0].target_count == POINTS
    store.client.set_payload("docs", {"text": "a text changed since"}, points=[1, 2, 3])
    with State(tmp_path / "state") as state:  # another run submitted a job meanwhile
        ledger = BatchLedger(state)
        job = ledger.add(scope="docs", provider="openai", input_file="file-1",
                         requests=[[b"k" * 32]], tokens=5, cost=0.0)
    sent = server.answered
    with pytest.raises(ConfigError, match="1 batch job with 1 text of 'docs' is "
                                          "still running .* pay for that text again"):
        sync(settings(tmp_path, server.url, batch=False), source_store=store)
    assert server.answered == sent  # not even the probe
    with State(tmp_path / "state") as state:
        BatchLedger(state).update(job.seq, status="cancelled")
    result = sync(settings(tmp_path, server.url, batch=False), source_store=store)
    assert result.collections[0].sync is not None and result.collections[0].sync.changed == 3


def test_max_cost_counts_a_batch_run_at_the_batch_price(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path) -> None:
    """A limit between the batch estimate and the synchronous one: the run starts and ends
    (was: refused, the estimate and the spend both taken at the list price)."""
    from migrator import plan

    store, server = served
    config = settings(tmp_path, server.url, batch_wait=True)
    planned = plan(config, source_store=store)
    assert planned.estimated_cost and planned.batch_cost == planned.estimated_cost / 2
    config.migration.max_cost = planned.estimated_cost * 0.75
    assert plan(config, source_store=store).within_max_cost is True
    result = migrate(config, source_store=store)
    assert result.collections[0].target_count == POINTS
    assert 0 < result.cost <= config.migration.max_cost


def test_gemini_batches_fill_the_cache_with_what_the_synchronous_path_would(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """A different shape: a text a line, operations, resumable uploads, one error line."""
    import asyncio

    from migrator.batching import run_batches
    from migrator.embedding import build_embedder
    from migrator.vector_cache import EmbeddingCache

    from .batch_loopback import GeminiBatchDouble
    from .loopback import vector_for

    make_collection(memory_store.client, "docs", n=60)
    with LoopbackServer(dims=128) as server:
        double = GeminiBatchDouble(server, polls=2, error_keys={"r0-1"})
        server.batches = double
        config = Settings(
            provider=ProviderSettings(name="gemini", model="gemini-embedding-001",
                                      base_url=server.url.removesuffix("/v1"),
                                      api_key=SecretStr("g-key"), dimensions=128,
                                      batch=True, batch_wait=True, batch_poll=0.01),
            collections=[CollectionSettings(name="docs")],
            migration=MigrationSettings(state_dir=tmp_path / "s", page_size=16))
        schemas = [memory_store.describe("docs")]
        with State(tmp_path / "s") as state, EmbeddingCache(tmp_path / "s") as cache:
            embedder = build_embedder(config.provider, cache=cache)

            async def go() -> Any:
                try:
                    return await run_batches(config, state, memory_store, embedder, schemas)
                finally:
                    await embedder.aclose()

            report = asyncio.run(go())
            assert report is not None and report.done
            assert report.resent_texts == 1 and report.submitted_jobs == 2
            slot = embedder.cache_slot("document")
            assert slot is not None
            texts = [p.payload["text"] for p in memory_store.client.scroll(
                "docs", limit=100)[0]]
            keys = slot.keys(texts)
            assert slot.found(keys) == set(keys)
            stored = cache.get_many(_space(slot), keys)
            for text, key in zip(texts, keys, strict=True):
                expected = vector_for(text, 128)
                np.testing.assert_allclose(stored[key][0], expected / np.linalg.norm(expected),
                                           atol=1e-6)
        assert sorted(double.embedded.values()) == [1] * 60  # each text paid once
        assert set(double.deleted) >= {b["file"] for b in double.batches.values()}


def _space(slot: Any) -> str:
    return slot._space  # type: ignore[no-any-return]


def test_a_mixed_run_submits_only_the_half_the_cache_lacks_and_shows_progress(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path) -> None:
    store, server = served
    half, _ = store.client.scroll("docs", limit=POINTS // 2, with_payload=True)
    store.client.create_collection("half", vectors_config=qm.VectorParams(
        size=8, distance=qm.Distance.COSINE))
    store.client.upsert("half", points=[qm.PointStruct(id=p.id, vector=[1.0] * 8,
                                                       payload=p.payload) for p in half])
    warm = settings(tmp_path, server.url, batch=False, target="half_sync")
    warm.collections = [CollectionSettings(name="half", target="half_sync")]
    migrate(warm, source_store=store)  # the same state directory: its cache
    events: list[Any] = []
    result = migrate(settings(tmp_path, server.url, batch_wait=True), source_store=store,
                     on_progress=events.append)
    assert result.batch is not None
    assert result.batch.submitted_texts == POINTS - POINTS // 2  # the half not cached
    batch_events = [e for e in events if e.collection == "batch jobs"]
    assert batch_events[-1].written == batch_events[-1].total == POINTS - POINTS // 2
    assert result.collections[0].target_count == POINTS


def test_a_synchronous_restart_cancels_running_jobs_first(
        served: tuple[QdrantStore, LoopbackServer], tmp_path: Path) -> None:
    store, server = served
    migrate(settings(tmp_path, server.url), source_store=store)
    result = migrate(settings(tmp_path, server.url, batch=False), source_store=store,
                     restart=True)
    (batch,) = server.batches.batches.values()
    assert batch.status == "cancelled" and result.collections[0].target_count == POINTS


def test_a_batch_api_error_never_prints_credentials_in_its_url() -> None:
    async def go() -> None:
        answer = httpx.MockTransport(lambda request: httpx.Response(400, json={}))
        async with httpx.AsyncClient(transport=answer) as client:
            await call(client, "GET", "https://user:hunter2@api.example/v1/batches/b1",
                       label="openai", headers={}, sleep=asyncio.sleep)

    with pytest.raises(ProviderError) as raised:
        asyncio.run(go())
    assert "hunter2" not in str(raised.value) and "https://***@api.example" in str(raised.value)
