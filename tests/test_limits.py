"""The rate limiter: bucket arithmetic on a fake clock, header parsing, and a migration
against a loopback server that enforces request and token windows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from migrator import CollectionSettings, MigrationSettings, ProviderSettings, Settings, migrate
from migrator.embedding.limits import (
    ProviderWindow,
    RateLimiter,
    RateLimits,
    TokenBucket,
    parse_duration,
)
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
            limiter.release(await limiter.acquire(37))
            sent.append((clock.now, 37))

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


class FixedWindows:
    """A provider's token limit per fixed window, with OpenAI's headers."""

    def __init__(self, limit: int, window: float, clock: FakeClock) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self.used: dict[int, int] = {}
        self.refused = 0

    def admit(self, tokens: int) -> dict[str, str]:
        index = int(self.clock.now // self.window)
        if self.used.get(index, 0) + tokens > self.limit:
            self.refused += 1
        else:
            self.used[index] = self.used.get(index, 0) + tokens
        reset = (index + 1) * self.window - self.clock.now
        return {"x-ratelimit-limit-tokens": str(self.limit),
                "x-ratelimit-remaining-tokens": str(self.limit - self.used.get(index, 0)),
                "x-ratelimit-reset-tokens": f"{reset * 1000:.0f}ms"}


@pytest.mark.parametrize("told", [True, False])
def test_the_providers_own_count_paces_to_the_whole_window(told: bool) -> None:
    """A bucket must leave a request's worth of every window unused (it ran at 93% of the
    binding limit); the provider's count of what is left, and when it resets, needs no
    margin: 99%, none refused, told the limit or not."""
    clock = FakeClock()
    server = FixedWindows(1000, 10.0, clock)
    limiter = RateLimiter(RateLimits(tokens=1000 if told else None, window=10.0),
                          clock=clock, sleep=clock.sleep)

    async def run() -> None:
        for n in range(0, 900, 3):  # three requests at a time, answered out of order
            sent = [(await limiter.acquire(10 + (n + k) % 5), 10 + (n + k) % 5)
                    for k in range(3)]
            clock.now += 0.1
            for ticket, size in (sent[1], sent[0], sent[2]):
                headers = server.admit(size)
                limiter.release(ticket)
                limiter.observe(headers)

    asyncio.run(run())
    assert server.refused == 0
    full = [used for index, used in sorted(server.used.items())][:-1]  # the last is partial
    assert min(full) >= 0.97 * 1000 and max(full) <= 1000


def test_an_answer_counted_earlier_or_about_an_earlier_window_changes_nothing() -> None:
    clock = FakeClock()
    window = ProviderWindow(10.0, clock)
    window.told(600, 10.0, 1000)
    window.told(700, 10.0, 1000)  # counted before the 600 answer: it says nothing new
    assert window.remaining == 600
    assert window.wait_for(500, in_flight=100) == 0.0
    assert window.wait_for(550, in_flight=100) == 10.0  # 600 - 100 in flight < 550
    clock.now = 10.5
    assert window.wait_for(950, in_flight=0) == 0.0  # a new window: the whole limit
    window.told(200, 10.0, 1000)  # a late answer about the window that ended
    assert window.remaining == 1000 and window.resets_at == 20.0
    window.told(900, 19.8, 1000)
    window.told(800, 19.9, 1000)  # where it refills continuously the reset moves on
    assert (window.remaining, window.resets_at) == (800, 19.9)


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
