"""The rate limiter: bucket arithmetic on a fake clock, header parsing, and a migration
against a loopback server that enforces request and token windows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from migrator import CollectionSettings, MigrationSettings, ProviderSettings, Settings, migrate
from migrator.embedding.limits import RateLimiter, RateLimits, TokenBucket, parse_duration
from migrator.settings import VerifySettings
from migrator.store import QdrantStore

from .conftest import make_collection
from .loopback import LoopbackServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("6m0s", 360.0), ("12ms", 0.012), ("1h2m3.5s", 3723.5), ("2.5", 2.5),
    ("", None), ("soon", None)])
def test_reset_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_no_window_gets_more_than_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(tokens=1000, window=10.0), clock=clock,
                          sleep=clock.sleep)
    sent: list[tuple[float, int]] = []

    async def run() -> None:
        for _ in range(200):
            await limiter.acquire(37)
            sent.append((clock.now, 37))
            limiter.release()

    asyncio.run(run())
    for start in [t for t, _ in sent]:
        in_window = sum(n for t, n in sent if start <= t < start + 10.0)
        assert in_window <= 1000
    rate = sum(n for _, n in sent) / sent[-1][0]
    assert rate >= 0.9 * 1000 / 10.0  # and it still uses the budget


def test_billed_tokens_correct_the_estimate_and_headers_pull_down() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, 10.0, clock)
    assert bucket.capacity == 50
    bucket.take(50)
    bucket.give_back(30)
    assert bucket.level == 30
    limiter = RateLimiter(RateLimits(requests=100, tokens=1000, window=10.0), clock=clock,
                          sleep=clock.sleep)
    limiter.observe({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2s"})
    asyncio.run(limiter.acquire(10))
    assert clock.now >= 2.0  # waited for the reset the provider announced


def test_tier_presets() -> None:
    limits = RateLimits.for_tier("tier1", tokens=1_000_000)
    assert (limits.concurrency, limits.requests, limits.tokens) == (35, 3000, 1_000_000)


def paced_run(store: QdrantStore, tmp_path: Path, **limits: float) -> None:
    """240 points against a server with request and token windows; `limits` are the ones
    the run is told (none: it learns them from the headers)."""
    make_collection(store.client, "docs", n=240)
    with LoopbackServer(dims=8, rpm=12, tpm=600, window=0.5) as server:
        settings = Settings(
            provider=ProviderSettings(name="openai-compatible", model="limited",
                                      base_url=server.url, batch_size=16, concurrency=6,
                                      rate_window=0.5, **limits),  # type: ignore[arg-type]
            collections=[CollectionSettings(name="docs")],
            migration=MigrationSettings(state_dir=tmp_path / "s", page_size=16),
            verify=VerifySettings(enabled=False),
        )
        result = migrate(settings, source_store=store)
        assert server.throttled <= max(1, server.requests // 50)  # <= 2% answered 429
    assert result.collections[0].target_count == 240


def test_migration_paced_under_request_and_token_windows(memory_store: QdrantStore,
                                                         tmp_path: Path) -> None:
    paced_run(memory_store, tmp_path, requests_per_minute=12, tokens_per_minute=600)


def test_limits_are_learnt_from_the_servers_headers(memory_store: QdrantStore,
                                                    tmp_path: Path) -> None:
    """Issue 14.2: not told its limits, a run had 35% of its requests answered 429."""
    paced_run(memory_store, tmp_path)


def test_a_429_drains_the_bucket_it_names() -> None:
    import httpx

    from migrator.embedding.http import limit_kind

    def answer(error: dict[str, str]) -> httpx.Response:
        return httpx.Response(429, json={"error": error})

    assert limit_kind(answer({"type": "tokens"})) == "tokens"
    assert limit_kind(answer({"message": "Rate limit reached for text-embedding-3-small on "
                                         "requests per min (RPM): Limit 3000"})) == "requests"
    assert limit_kind(answer({"message": "slow down"})) is None
    clock = [0.0]
    limiter = RateLimiter(RateLimits(requests=100, tokens=10_000), clock=lambda: clock[0])
    limiter.refused("tokens")
    assert limiter._tokens is not None and limiter._tokens.wait_for(1) > 0
    assert limiter._requests is not None and limiter._requests.wait_for(1) == 0


def test_the_report_carries_the_provider_metrics(memory_store: QdrantStore,
                                                 tmp_path: Path) -> None:
    from migrator import report
    from tests.loopback import Fault

    make_collection(memory_store.client, "docs", n=40)
    with LoopbackServer(dims=8) as server:
        server.faults.extend([Fault(0), Fault(429, {"error": {"message": "slow down"}},
                                              {"retry-after-ms": "10"})])
        settings = Settings(
            provider=ProviderSettings(name="openai-compatible", model="m", base_url=server.url,
                                      batch_size=8, concurrency=1),
            collections=[CollectionSettings(name="docs")],
            migration=MigrationSettings(state_dir=tmp_path / "s", page_size=8),
            verify=VerifySettings(enabled=False),
        )
        result = migrate(settings, source_store=memory_store)
    metrics = result.bill.http
    assert metrics is not None
    assert metrics["throttled"] == 1 and metrics["retries"] == {"HTTP 429": 1}
    assert metrics["latency_p50_ms"] is not None
    assert "1 answered 429" in report.migration(result)
