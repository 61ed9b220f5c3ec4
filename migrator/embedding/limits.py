"""Pacing requests to a provider's limits: requests per window, tokens per window, and
requests in flight.

A token bucket lets through b + r*W in any window of length W (b = what it can hold,
r = refill rate). Sized b = HEADROOM_BURST * limit and r = (limit - b) / W, no window the
provider counts can exceed its limit, and the run still uses 95% of it. Token counts are
estimated before a request is sent and corrected by what the provider bills; the provider's
`x-ratelimit-remaining-*` and `-reset-*` headers pull the buckets down when it has counted
more than we have (other clients on the same key, a different tokenizer).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["Clock", "HEADROOM_BURST", "LEARNING_RATE", "parse_duration", "RateLimiter",
    "RateLimits", "RECHECK", "Sleep", "Tier", "TIERS", "TokenBucket"]

Tier = Literal["free", "tier1", "tier2", "tier3", "tier4", "tier5"]

# usage tiers: (max requests in flight, requests per minute); tokens/min depend on the model
TIERS: dict[str, tuple[int, int]] = {
    "free": (1, 100),
    "tier1": (35, 3_000),
    "tier2": (60, 5_000),
    "tier3": (60, 5_000),
    "tier4": (125, 10_000),
    "tier5": (125, 10_000),
}
HEADROOM_BURST = 0.05  # the share of a window's budget that may go out at once
RECHECK = 0.05  # seconds; a waiting request looks again this often
LEARNING_RATE = 0.2  # how fast the billed/estimated ratio follows the provider

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RateLimits:
    requests: float | None = None  # per window
    tokens: float | None = None  # per window
    concurrency: int | None = None
    window: float = 60.0  # seconds; per-minute limits
    adaptive: bool = True

    @classmethod
    def for_tier(cls, tier: str, *, tokens: float | None = None,
                 window: float = 60.0) -> RateLimits:
        concurrency, requests = TIERS[tier]
        return cls(requests=requests, tokens=tokens, concurrency=concurrency, window=window)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.requests, self.tokens, self.concurrency))


class TokenBucket:
    """A budget that refills continuously; `level` may go below zero (a debt) when one
    request needs more than the bucket holds, so nothing is ever refused outright."""

    def __init__(self, limit: float, window: float, clock: Clock) -> None:
        self.limit = limit
        self.capacity = max(1.0, limit * HEADROOM_BURST)
        self.rate = (limit - self.capacity) / window if limit > self.capacity else (
            limit / window)
        self.level = self.capacity
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0: now)."""
        self._refill()
        needed = min(amount, self.capacity) - self.level
        # a sleep of exactly needed/rate can refill a hair short in floating point
        return needed / self.rate if needed > 1e-9 * self.capacity else 0.0

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)

    def at_most(self, remaining: float) -> None:
        """The provider says only `remaining` is left: never believe we have more."""
        self._refill()
        self.level = min(self.level, remaining)


class RateLimiter:
    """Paces requests before they are sent, so the provider does not have to refuse them."""

    def __init__(self, limits: RateLimits, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.limits = limits
        self._clock, self._sleep = clock, sleep
        self._requests = TokenBucket(limits.requests, limits.window, clock) \
            if limits.requests else None
        self._tokens = TokenBucket(limits.tokens, limits.window, clock) if limits.tokens \
            else None
        self._slots = asyncio.Semaphore(limits.concurrency) if limits.concurrency else None
        self._lock = asyncio.Lock()  # one request at a time takes from the buckets
        self._paused_until = 0.0
        self.waited = 0.0  # seconds spent waiting on the limiter, all requests together
        # billed / estimated tokens, learnt as responses come in: a conservative estimate
        # would otherwise leave part of the budget unused
        self.ratio = 1.0
        self.learnt: dict[str, float] = {}  # limits read from the provider's headers

    def expected(self, estimated: int) -> float:
        """What a request estimated at `estimated` tokens will likely be billed."""
        return estimated * self.ratio

    async def acquire(self, tokens: int) -> None:
        """Wait for a slot and for budget for one request of `tokens` (an estimate), then
        take it. Waits are re-checked often: budget comes back as responses settle."""
        if self._slots is not None:
            await self._slots.acquire()
        started = self._clock()
        amount = self.expected(tokens)
        async with self._lock:
            while True:
                delay = max(self._paused_until - self._clock(),
                            self._requests.wait_for(1) if self._requests else 0.0,
                            self._tokens.wait_for(amount) if self._tokens else 0.0)
                if delay <= 1e-6:
                    break
                await self._sleep(min(delay, RECHECK))
            if self._requests is not None:
                self._requests.take(1)
            if self._tokens is not None:
                self._tokens.take(amount)
        self.waited += self._clock() - started

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def settle(self, estimated: int, billed: int | None) -> None:
        """Correct the token budget by what the provider actually counted, and learn how
        far estimates are off."""
        if billed is None or estimated <= 0:
            return
        taken = self.expected(estimated)
        if self._tokens is not None:
            if billed < taken:
                self._tokens.give_back(taken - billed)
            else:
                self._tokens.take(billed - taken)
        self.ratio += LEARNING_RATE * (billed / estimated - self.ratio)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow the provider's own count (x-ratelimit-remaining-*, -reset-*); a limit
        that was not configured is learnt from x-ratelimit-limit-* (per `limits.window`)."""
        if not self.limits.adaptive:
            return
        self._learn(headers)
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if bucket is None or remaining is None:
                continue
            try:
                bucket.at_most(float(remaining))
            except ValueError:
                continue
            if float(remaining) <= 0:
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
                if reset:
                    self.pause(reset)

    def refused(self, kind: str | None) -> None:
        """A 429 about `kind` ("requests" or "tokens"): that budget is spent, whatever we
        counted."""
        bucket = {"requests": self._requests, "tokens": self._tokens}.get(kind or "")
        if bucket is not None:
            bucket.at_most(0.0)

    def _learn(self, headers: Mapping[str, str]) -> None:
        for kind in ("requests", "tokens"):
            if getattr(self.limits, kind) is not None:
                continue  # configured limits are the user's word
            try:
                limit = float(headers.get(f"x-ratelimit-limit-{kind}", ""))
            except ValueError:
                continue
            bucket = self._requests if kind == "requests" else self._tokens
            if limit > 0 and (bucket is None or bucket.limit != limit):
                learnt = TokenBucket(limit, self.limits.window, self._clock)
                if kind == "requests":
                    self._requests = learnt
                else:
                    self._tokens = learnt
                self.learnt[kind] = limit

    def pause(self, seconds: float) -> None:
        """Hold every request back for `seconds` (a 429's Retry-After, a spent budget)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations: `1s`, `6m0s`, `12ms`, `1h2m3.5s`; None when unreadable."""
    text = text.strip()
    if not text:
        return None
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        try:
            return float(text)
        except ValueError:
            return None
    return sum(float(n) * _UNIT[u] for n, u in parts)
