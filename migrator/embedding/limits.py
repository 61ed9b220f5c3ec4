"""Pacing requests to a provider's limits: requests per window, tokens per window, and
requests in flight.

A token bucket lets through b + r*W in any window of length W (b = what it can hold,
r = refill rate). Sized b = HEADROOM_BURST * limit and r = (limit - b) / W, no window the
provider counts can exceed its limit, and the run still uses 95% of it. Token counts are
estimated before a request is sent and corrected by what the provider bills; the provider's
`x-ratelimit-remaining-*` and `-reset-*` headers pull the buckets down when it has counted
more than we have (other clients on the same key, a different tokenizer).

Where the provider says what is left and when its window resets, that count paces instead
(`ProviderWindow`): what it said was left, less what is in flight and what was sent since,
until the reset, then the whole limit. A bucket must leave a request's worth of each window
unused to be safe against any window; the provider's own count needs no margin.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["Clock", "HEADROOM_BURST", "LEARNING_RATE", "parse_duration", "ProviderWindow",
    "RateLimiter", "RateLimits", "RECHECK", "Sleep", "Ticket",
    "Tier", "TIERS", "TokenBucket"]

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
class Ticket:
    """One request the limiter let through: the tokens it is expected to be billed."""

    amount: float


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


class ProviderWindow:
    """One limit as the provider counts it: the least any answer in its current window
    said was left, less what is in flight now, until the window resets. `None` from
    `wait_for`: nothing known (no answer with these headers yet, or the window ended
    without a limit to refill to), and the bucket decides."""

    def __init__(self, window: float, clock: Clock) -> None:
        self.window = window
        self.limit: float | None = None
        self.remaining: float | None = None
        self.resets_at = 0.0
        self._clock = clock

    def told(self, remaining: float, resets_at: float, limit: float | None) -> None:
        """An answer: `remaining` once its request was counted, the window resetting at
        `resets_at` (on this clock). Answers come back in any order, and requests sent
        together are counted in any order; within a window what is left only falls, so
        the lowest count is the latest, and every request answered with a higher one was
        counted in it. Requests still in flight are subtracted until they are answered:
        some may be counted already, which is safe. Resets within half a window of each
        other are the same window's; an answer about a window that is over is ignored."""
        if self.remaining is not None:
            half = self.window / 2
            if resets_at < self.resets_at - half:
                return
            if resets_at < self.resets_at + half:  # the same window, seen later or sooner
                if remaining <= self.remaining:  # the latest count, and its reset: where
                    # the provider refills continuously, the reset moves on as it counts
                    self.remaining, self.resets_at = remaining, resets_at
                return
        self.remaining, self.resets_at = remaining, resets_at
        self.limit = limit if limit is not None else self.limit

    def wait_for(self, amount: float, in_flight: float) -> float | None:
        if self.remaining is None:
            return None
        now = self._clock()
        if now >= self.resets_at:
            if self.limit is None:
                self.remaining = None
                return None
            self.remaining = self.limit  # a new window
            self.resets_at += self.window * max(1, -(-(now - self.resets_at) // self.window))
        wanted = min(amount, self.limit) if self.limit is not None else amount
        return 0.0 if self.remaining - in_flight >= wanted else self.resets_at - now

    def spent(self) -> None:
        """A 429 about this limit: nothing is left until the reset."""
        if self.remaining is not None:
            self.remaining = min(self.remaining, 0.0)


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
        self._windows = {kind: ProviderWindow(limits.window, clock)
                         for kind in ("requests", "tokens")}
        self._in_flight = {"requests": 0.0, "tokens": 0.0}
        self._lock = asyncio.Lock()  # one request at a time takes from the buckets
        self._paused_until = 0.0
        self.waited = 0.0  # seconds spent waiting on the limiter, all requests together
        # billed / estimated tokens, learnt as responses come in: a conservative estimate
        # would otherwise leave part of the budget unused
        self.ratio = 1.0
        self.learnt: dict[str, float] = {}  # limits read from the provider's headers

    def on_new_loop(self) -> None:
        """Used from another event loop from now on (nothing is in flight)."""
        self._slots = (asyncio.Semaphore(self.limits.concurrency) if self.limits.concurrency
                       else None)
        self._lock = asyncio.Lock()
        self._in_flight = {"requests": 0.0, "tokens": 0.0}

    def expected(self, estimated: int) -> float:
        """What a request estimated at `estimated` tokens will likely be billed."""
        return estimated * self.ratio

    async def acquire(self, tokens: int) -> Ticket:
        """Wait for a slot and for budget for one request of `tokens` (an estimate), then
        take it; return its ticket, for `release` and `observe`. Waits are re-checked
        often: budget comes back as responses settle."""
        if self._slots is not None:
            await self._slots.acquire()
        started = self._clock()
        amount = self.expected(tokens)
        async with self._lock:
            while True:
                delay = max(self._paused_until - self._clock(),
                            self._wait("requests", self._requests, 1),
                            self._wait("tokens", self._tokens, amount))
                if delay <= 1e-6:
                    break
                await self._sleep(min(delay, RECHECK))
            for kind, bucket, taken in (("requests", self._requests, 1.0),
                                        ("tokens", self._tokens, amount)):
                if bucket is not None:
                    bucket.take(taken)
                self._in_flight[kind] += taken
        self.waited += self._clock() - started
        return Ticket(amount)

    def _wait(self, kind: str, bucket: TokenBucket | None, amount: float) -> float:
        """Seconds until `amount` of `kind` may go: by the provider's count where it gave
        one, else by the bucket."""
        told = self._windows[kind].wait_for(amount, self._in_flight[kind])
        if told is not None:
            return told
        return bucket.wait_for(amount) if bucket is not None else 0.0

    def release(self, ticket: Ticket | None = None) -> None:
        """`ticket`'s request is answered (or failed): it is no longer in flight."""
        if ticket is not None:
            self._in_flight["requests"] -= 1
            self._in_flight["tokens"] -= ticket.amount
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
        that was not configured is learnt from x-ratelimit-limit-* (per `limits.window`).
        Call it after `release`: the request answered is no longer in flight."""
        if not self.limits.adaptive:
            return
        self._learn(headers)
        for kind, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is None:
                continue
            if bucket is not None:
                bucket.at_most(remaining)
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
            if reset is not None:
                limit = getattr(self.limits, kind) or _number(
                    headers.get(f"x-ratelimit-limit-{kind}"))
                # from now, not from when it was sent: the provider may have counted it
                # any time in between, and a window must not be thought over too early
                self._windows[kind].told(remaining, self._clock() + reset, limit)

    def refused(self, kind: str | None) -> None:
        """A 429 about `kind` ("requests" or "tokens"): that budget is spent, whatever we
        counted."""
        bucket = {"requests": self._requests, "tokens": self._tokens}.get(kind or "")
        if bucket is not None:
            bucket.at_most(0.0)
        if kind in self._windows:
            self._windows[kind].spent()

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


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


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
