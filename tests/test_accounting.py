"""Issue 13: nothing is paid twice, and the run report says exactly what was paid. Every
figure here is checked against what the loopback server billed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from qdrant_client import QdrantClient

from migrator import (
    CollectionSettings,
    MigrationSettings,
    ProviderSettings,
    Settings,
    migrate,
    report,
    verify,
)
from migrator.cli import cli as cli_group
from migrator.embedding.usage import Budget, Usage
from migrator.settings import VerifySettings
from migrator.state import State
from migrator.store import QdrantStore
from migrator.wording import money

from .conftest import make_collection
from .loopback import Fault, LoopbackServer

N = 120


def settings(tmp_path: Path, provider: ProviderSettings, *, sample: int = 50,
             verify_on: bool = True) -> Settings:
    return Settings(
        provider=provider,
        collections=[CollectionSettings(name="docs", alias="live")],
        migration=MigrationSettings(state_dir=tmp_path / "state", page_size=16),
        verify=VerifySettings(enabled=verify_on, sample=sample),
    )


def compatible(url: str, **extra: Any) -> ProviderSettings:
    """An OpenAI-compatible server: no query/document distinction."""
    return ProviderSettings(**{"name": "openai-compatible", "model": "served", "base_url": url,
                               "batch_size": 16, "concurrency": 2, **extra})


def voyage(url: str) -> ProviderSettings:
    """A provider whose queries and documents get different vectors (`input_type`)."""
    return ProviderSettings(name="voyage", model="voyage-3.5-lite", api_key=SecretStr("k"),
                            base_url=url.removesuffix("/v1"), batch_size=16, concurrency=2)


def assert_bill_matches(bill: Any, server: LoopbackServer) -> None:
    total = bill.total
    assert (total.requests, total.texts, total.tokens) == (
        server.answered, server.texts, server.billed_tokens)
    assert not total.tokens_estimated  # the server reports its tokens


def test_a_verified_run_pays_each_text_once(memory_store: QdrantStore,
                                             tmp_path: Path) -> None:
    """The sampled texts were embedded again as queries: 50 of 120 paid twice."""
    make_collection(memory_store.client, "docs", n=N)
    with LoopbackServer(dims=8) as server:
        result = migrate(settings(tmp_path, compatible(server.url)),
                         source_store=memory_store)
        assert result.collections[0].verification is not None
        assert server.texts == N and max(server.seen.values()) == 1
        assert_bill_matches(result.bill, server)
        phases = result.bill.usage.phases
        assert phases["verification"].texts == 0 and phases["verification"].cached == 50
        assert phases["probe"].texts > 0  # the probe paid for its texts once ...
        assert phases["backfill"].texts + phases["probe"].texts == N  # ... the backfill not

        again = verify(settings(tmp_path, compatible(server.url)), source_store=memory_store)
        assert again.passed and server.texts == N  # verifying again is free
        assert again.to_dict()["usage"]["from_cache"] == 50


def test_a_model_with_input_types_caches_its_queries_too(memory_store: QdrantStore,
                                                          tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=N)
    with LoopbackServer(dims=1024) as server:
        config = settings(tmp_path, voyage(server.url))
        result = migrate(config, source_store=memory_store)
        kinds = {kind for kind, _ in server.kinds}
        assert kinds == {"document", "query"}
        assert max(server.kinds.values()) == 1  # each text once per input type
        assert result.bill.usage.phases["verification"].texts == 50
        assert_bill_matches(result.bill, server)
        # `verify` draws its own sample: it pays for the queries migrate's did not hold,
        # once; verifying again is free
        assert verify(config, source_store=memory_store).passed
        paid = server.texts
        assert verify(config, source_store=memory_store).passed
        assert server.texts == paid


def test_truncation_never_pays_the_probe_twice(memory_store: QdrantStore,
                                               tmp_path: Path) -> None:
    """The probe cached the model's own vectors and the backfill looked up sized ones."""
    make_collection(memory_store.client, "docs", n=N)
    with LoopbackServer(dims=16) as server:
        provider = compatible(server.url, dimensions=8, dimension_policy="truncate")
        result = migrate(settings(tmp_path, provider), source_store=memory_store)
        assert result.dims == 8
        assert server.texts == N and max(server.seen.values()) == 1
        assert_bill_matches(result.bill, server)


def test_the_report_prints_the_bill(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=N)
    with LoopbackServer(dims=8) as server:
        result = migrate(settings(tmp_path, compatible(server.url)),
                         source_store=memory_store)
        text = report.migration(result)
        totals = next(line for line in text.splitlines() if line.startswith("total"))
        phases = result.bill.usage.phases  # the backfill finds the probe's texts cached
        cached = phases["probe"].texts + 50
        assert result.bill.total.cached == cached
        assert totals.split()[1:4] == [str(server.answered), str(server.texts), str(cached)]
        assert f"{server.billed_tokens:,}" in totals
        json_bill = result.to_dict()["bill"]
        assert json_bill["total"]["texts"] == server.texts
        assert list(json_bill["phases"]) == ["probe", "backfill", "catch-up", "verification"]
        assert "older than 1.17" not in text  # the embedded store has conditional writes

        rerun = migrate(settings(tmp_path, compatible(server.url)), source_store=memory_store)
        text = report.migration(rerun)
    assert "moved from" not in text and "already served" in text
    assert rerun.bill.total.texts == 0 and server.texts == N
    assert rerun.collections[0].written_now == 0


@pytest.mark.parametrize("resume_from", [40, 80])
def test_counters_after_a_resume_add_up(memory_store: QdrantStore, tmp_path: Path,
                                        resume_from: int) -> None:
    """After a resume the report showed the first run's counters and 0 points/s."""
    from migrator.errors import ProviderResponseError

    make_collection(memory_store.client, "docs", n=N)
    with LoopbackServer(dims=8) as server:
        config = settings(tmp_path, compatible(server.url, max_retries=0, concurrency=1),
                          verify_on=False)
        config.provider.batch_size = 16
        # the failing answer comes late, so the pages before it are written by then (a
        # failure cancels writes still waiting: then nothing would be there to resume)
        server.faults.extend([None] * (resume_from // 16) + [Fault(500, stall=0.3)])  # type: ignore[list-item]
        with pytest.raises(ProviderResponseError):
            migrate(config, source_store=memory_store)
        result = migrate(config, source_store=memory_store)
    outcome = result.collections[0]
    assert outcome.stats.written == outcome.target_count == N
    assert 0 < outcome.written_now < N and result.points_per_second > 0
    assert outcome.stats.embedded + outcome.stats.cached >= N - 16  # both runs' work


def test_a_run_that_wrote_nothing_does_not_report_0_points_per_second(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    from migrator import report

    make_collection(memory_store.client, "docs", n=20)
    config = settings(tmp_path, ProviderSettings(name="hashing", model="hash-words-v1",
                                                 dimensions=16), verify_on=False)
    migrate(config, source_store=memory_store)
    again = migrate(config, source_store=memory_store)  # finished: only a catch-up
    assert again.points_per_second == 0
    first_line = report.migration(again).splitlines()[0]
    assert first_line.endswith("(no point was left to write).") and "points/s" not in first_line


# ---- --max-cost -----------------------------------------------------------------------

PRICED = 300  # points: 200 short texts (all that `plan` samples), then 100 long ones


def priced_collection(store: Path) -> None:
    client = QdrantClient(path=str(store))

    def payload(i: int, text: str) -> dict[str, str]:
        if i < 200:
            return {"text": f"note {i}"}
        return {"text": " ".join(f"w{i}x{j}" for j in range(60))}

    make_collection(client, "docs", n=PRICED, payload=payload)
    client.close()


def priced_args(store: Path, tmp_path: Path, url: str) -> list[str]:
    return ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state"),
            "--provider", "openai", "--model", "text-embedding-3-small", "--base-url", url,
            "--batch-size", "16", "--concurrency", "2", "--page-size", "16",
            "--collection", "docs", "--alias", "live"]


def cli(*args: str) -> Any:
    return CliRunner().invoke(cli_group, list(args), env={"OPENAI_API_KEY": "k"},
                              catch_exceptions=False)


def test_max_cost_refuses_a_run_whose_estimate_is_over_it(tmp_path: Path) -> None:
    store = tmp_path / "q"
    priced_collection(store)
    with LoopbackServer(dims=1536) as server:
        args = priced_args(store, tmp_path, server.url)
        planned = json.loads(cli("plan", *args, "--max-cost", "0.000001", "--json").stdout)
        assert planned["within_max_cost"] is False
        shown = cli("plan", *args, "--max-cost", "0.000001").stdout
        assert "--max-cost $0.0000010: the estimate is over it" in shown  # was "$0.0000"
        refused = cli("migrate", *args, "--max-cost", "0.000001", "--no-verify")
        assert refused.exit_code == 2, refused.stderr
        # the limit as given, not rounded to "$0.00"
        assert "exceeds --max-cost $0.0000010." in refused.stderr and "Nothing was sent" in (
            refused.stderr)
        assert server.requests == 0
        assert cli("migrate", *args, "--max-cost", "1", "--no-verify").exit_code == 0


def test_max_cost_stops_a_run_before_its_spend_passes_it(tmp_path: Path) -> None:
    """The estimate (from the short texts `plan` samples) is within the limit; the long
    texts after them are not: the run stops before the request that would pass it."""
    store = tmp_path / "q"
    priced_collection(store)
    limit = 0.00006  # 3,000 tokens at $0.02 per million
    with LoopbackServer(dims=1536) as server:
        args = priced_args(store, tmp_path, server.url)
        stopped = cli("migrate", *args, "--max-cost", str(limit), "--no-verify", "--json")
        assert stopped.exit_code == 1, stopped.stderr
        spent = server.billed_tokens * 0.02 / 1e6
        # what it spent to two significant digits, not "$0.0000"
        assert f"past --max-cost $0.000060: it spent {money(spent)};" in stopped.stderr
        assert money(spent) != "$0.0000" and "resume" in stopped.stderr
        assert 0 < spent <= limit  # the bill stayed within the limit
        with State(tmp_path / "state") as state:
            (record,) = state.all()
        assert record.checkpoint is not None and record.counters["written"] > 0
        assert record.error == "stopped at --max-cost"

        done = cli("migrate", *args, "--max-cost", "1", "--no-verify", "--json")
        assert done.exit_code == 0, done.stderr
        assert json.loads(done.stdout)["collections"][0]["target_count"] == PRICED
    assert server.texts == PRICED and max(server.seen.values()) == 1  # nothing paid twice


def test_status_shows_the_current_row_and_the_history_apart(tmp_path: Path) -> None:
    """A failed attempt stayed beside the later success as if both were current, and the
    human output showed `None -> live` and `null` checkpoints."""
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    make_collection(client, "docs", n=40)
    client.close()
    with LoopbackServer(dims=16) as server:
        args = ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state"),
                "--provider", "openai-compatible", "--model", "served", "--base-url",
                server.url, "--collection", "docs", "--alias", "live", "--page-size", "8",
                "--batch-size", "8"]
        server.faults.extend([None] * 3 + [Fault(401, {"error": {"message": "bad key"}})])  # type: ignore[list-item]
        failed = cli("migrate", *args, "--dimensions", "8")
        assert failed.exit_code == 1, failed.stderr
        assert cli("migrate", *args, "--dimensions", "16").exit_code == 0
    where = ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state")]
    shown = json.loads(cli("status", *where, "--json").stdout)
    (current,) = shown["migrations"]
    (earlier,) = shown["history"]
    assert current["phase"] == "swapped" and current["error"] is None and current["dims"] == 16
    assert earlier["phase"] == "failed" and "bad key" in earlier["error"]
    text = cli("status", *where).stdout
    assert "None" not in text and "null" not in text
    assert "live: (new) -> docs__served-16" in text and "Earlier runs" in text
    assert "  served (16)  swapped  " in text  # the model, which a --target name need not say


def test_status_says_why_a_caught_up_collection_of_a_failed_run_waits(tmp_path: Path) -> None:
    """A collection caught up in a run that failed on another one stayed at `catching_up`
    with no word of why: as if it were still running, or stuck."""
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    make_collection(client, "good", n=20)
    make_collection(client, "bad", n=20, payload=lambda i, t: {"text": t} if i % 3 else {})
    client.close()
    args = ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state"),
            "--provider", "hashing", "--model", "hash-words-v1", "--collection", "good",
            "--collection", "bad"]
    assert cli("migrate", *args).exit_code == 1
    rows = {m["source"]: m for m in json.loads(
        cli("status", *args[:4], "--json").stdout)["migrations"]}
    assert rows["bad"]["phase"] == "failed" and "no text" in rows["bad"]["error"]
    assert rows["good"]["phase"] == "catching_up"
    assert rows["good"]["error"] == ("not verified: 'bad' failed in the same run; run it "
                                     "again once that is fixed")
    assert cli("migrate", *args, "--missing-text", "skip").exit_code == 0
    rows = {m["source"]: m for m in json.loads(
        cli("status", *args[:4], "--json").stdout)["migrations"]}
    assert rows["good"]["phase"] == "complete" and rows["good"]["error"] is None


def test_status_shows_a_long_error_in_full_below_the_table(tmp_path: Path) -> None:
    """The table cut an error at 60 characters, mid-word and unmarked, and the human output
    had no other place for the rest: what to do next was only in --json."""
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    make_collection(client, "bad", n=20, payload=lambda i, t: {"text": t} if i % 3 else {})
    client.close()
    where = ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state")]
    assert cli("migrate", *where, "--provider", "hashing", "--model", "hash-words-v1",
               "--collection", "bad").exit_code == 1
    (row,) = json.loads(cli("status", *where, "--json").stdout)["migrations"]
    error = row["error"]
    assert len(error) > 60 and error.endswith("No alias was moved.")
    text = cli("status", *where).stdout
    assert error[:57].rstrip() + "..." in text  # the table shows 60 characters
    assert f"Errors in full:\n  bad -> {row['target']} (failed): {error}" in text


def test_max_cost_needs_a_price(tmp_path: Path) -> None:
    store = tmp_path / "q"
    priced_collection(store)
    with LoopbackServer(dims=8) as server:
        refused = cli("migrate", "--qdrant-path", str(store), "--state-dir",
                      str(tmp_path / "state"), "--provider", "openai-compatible", "--model",
                      "served", "--base-url", server.url, "--collection", "docs",
                      "--max-cost", "5")
        assert refused.exit_code == 2 and "needs the price" in refused.stderr
        assert server.requests == 0
        planned = cli("plan", "--qdrant-path", str(store), "--provider", "openai-compatible",
                      "--model", "served", "--base-url", server.url, "--collection", "docs",
                      "--max-cost", "5")
        assert ("--max-cost $5.00: this model's price is not known (give "
                "provider.price_per_mtok), so migrate would refuse to start with a limit."
                ) in planned.stdout
        assert "tokens (estimated), cost unknown, about" in planned.stdout  # not ", unknown,"


def test_a_price_given_for_a_model_the_catalog_lacks_bills_and_guards(tmp_path: Path) -> None:
    """A paid OpenAI-compatible API (or a negotiated price): with no way to give the price,
    its runs had no cost anywhere and --max-cost was refused."""
    store = tmp_path / "q"
    priced_collection(store)
    args = ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state"),
            "--provider", "openai-compatible", "--model", "served", "--collection", "docs",
            "--json"]
    price = {"MIGRATOR_PROVIDER__PRICE_PER_MTOK": "0.5"}
    with LoopbackServer(dims=8) as server:
        def run(command: str, *extra: str) -> Any:
            return CliRunner().invoke(cli_group, [command, *args, "--base-url", server.url,
                                                  *extra], env=price)
        planned = json.loads(run("plan", "--max-cost", "0.0000001").stdout)
        assert planned["within_max_cost"] is False and planned["estimated_cost_usd"] > 0
        refused = run("migrate", "--max-cost", "0.0000001", "--no-verify")
        assert refused.exit_code == 2 and "exceeds --max-cost" in refused.stderr
        assert server.requests == 0
        done = json.loads(run("migrate", "--max-cost", "1", "--no-verify").stdout)
    billed = done["bill"]["total"]
    assert billed["tokens"] == server.billed_tokens > 0
    assert billed["cost_usd"] == pytest.approx(server.billed_tokens * 0.5 / 1e6)


def test_an_embedder_that_served_an_earlier_run_bills_each_run_apart(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """The demo passes one embedder to migrate and then embeds its example searches: the
    searches showed up in the migration's bill, and a second run's bill held the first's."""
    import asyncio

    from migrator.embedding import build_embedder

    make_collection(memory_store.client, "docs", n=N)
    make_collection(memory_store.client, "more", n=40)
    provider = ProviderSettings(name="hashing", model="hash-words-v1", dimensions=32)
    embedder = build_embedder(provider)  # in-process: it outlives each run's event loop
    first = migrate(settings(tmp_path, provider, verify_on=False), source_store=memory_store,
                    embedder=embedder)
    config = settings(tmp_path, provider, verify_on=False)
    config.collections = [CollectionSettings(name="more")]
    second = migrate(config, source_store=memory_store, embedder=embedder)
    asyncio.run(embedder.embed(["a search after the runs"]))
    assert first.bill.usage.phases["backfill"].texts == N
    assert second.bill.usage.phases["backfill"].texts == 40
    assert second.bill.usage.phases["probe"].texts <= 40


def test_max_cost_counts_what_the_cache_already_holds(tmp_path: Path) -> None:
    """The estimate left the cache out: a run whose texts were all cached (its state lost,
    or a comparison made earlier) was refused although it would pay nothing."""
    store = tmp_path / "q"
    priced_collection(store)
    with LoopbackServer(dims=1536) as server:
        args = priced_args(store, tmp_path, server.url)
        assert cli("migrate", *args, "--no-verify", "--target", "first").exit_code == 0
        (tmp_path / "state" / "state.db").unlink()  # the cache stays
        sent = server.requests
        again = cli("migrate", *args, "--no-verify", "--target", "second", "--max-cost",
                    "0.000001")
        assert again.exit_code == 0, again.stderr
        assert server.requests == sent  # not one request: it was all in the cache
        refused = cli("migrate", *[a if a != "docs" else "docs,text_template=x {text}"
                                   for a in args], "--no-verify", "--target", "third",
                      "--max-cost", "0.000001")
        assert refused.exit_code == 2 and "exceeds --max-cost" in refused.stderr


def test_a_budget_counts_each_phase_at_its_price_and_lets_cached_requests_through() -> None:
    usage = Usage()
    budget = Budget(1.0, 1.0, usage)  # $1, at $1 a million tokens
    with usage.during("batch"):
        usage.answered(100, 1_000_000, False, price_factor=0.5)
    assert budget.spent == pytest.approx(0.5)
    assert budget.admit(400_000) and not budget.exceeded  # $0.90 with the reservation
    assert budget.admit(0)  # every text of it cached: nothing to pay
    assert not budget.admit(200_000) and budget.exceeded
    assert not budget.admit(0)  # winding down now
