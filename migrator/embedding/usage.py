"""What a run asked of its provider: the HTTP endpoint's own figures (attempts, 429s,
retries, latency) and, per phase of a run, what was billed and what the cache saved."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Budget", "cost", "EndpointMetrics", "PHASES", "PhaseUsage", "Usage"]

# The phases of a migration, in order; compare and verify use some of them.
PHASES = ("ingest", "probe", "batch", "backfill", "catch-up", "verification")


@dataclass
class EndpointMetrics:
    """What one HTTP endpoint saw: for the progress bar and the run report."""

    requests: int = 0  # attempts, answered or not
    throttled: int = 0  # answers 429
    retries: Counter[str] = field(default_factory=Counter)  # by cause
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    limiter_wait: float = 0.0
    concurrency: int | None = None  # requests allowed in flight now (adaptive)
    lowest_concurrency: int | None = None  # the fewest it came down to

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        return float(np.percentile(self.latencies, q))

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "throttled": self.throttled,
                "retries": dict(self.retries), "limiter_wait_s": round(self.limiter_wait, 3),
                "latency_p50_ms": _ms(self.percentile(50)),
                "latency_p95_ms": _ms(self.percentile(95)),
                "latency_p99_ms": _ms(self.percentile(99)),
                "concurrency": self.concurrency, "lowest_concurrency": self.lowest_concurrency}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@dataclass
class PhaseUsage:
    """One phase's bill: requests the provider answered, the texts in them and their
    tokens; and the texts the cache answered instead."""

    requests: int = 0
    texts: int = 0
    tokens: int = 0
    tokens_estimated: bool = False  # some tokens were estimated: the provider did not say
    cached: int = 0
    tokens_saved: int = 0  # what the cached texts cost when they were first embedded
    price_factor: float = 1.0  # the share of the list price it is billed at (batch: 0.5)

    def add(self, other: PhaseUsage) -> None:
        self.requests += other.requests
        self.texts += other.texts
        self.tokens += other.tokens
        self.tokens_estimated |= other.tokens_estimated
        self.cached += other.cached
        self.tokens_saved += other.tokens_saved

    def cost(self, price_per_mtok: float | None) -> float | None:
        listed = cost(self.tokens, price_per_mtok)
        return None if listed is None else listed * self.price_factor

    def to_dict(self, price_per_mtok: float | None = None) -> dict[str, Any]:
        return {"requests": self.requests, "texts": self.texts, "from_cache": self.cached,
                "tokens": self.tokens, "tokens_estimated": self.tokens_estimated,
                "cost_usd": self.cost(price_per_mtok),
                "tokens_saved": self.tokens_saved,
                "cost_saved_usd": cost(self.tokens_saved, price_per_mtok)}


def cost(tokens: int, price_per_mtok: float | None) -> float | None:
    return None if price_per_mtok is None else tokens / 1_000_000 * price_per_mtok


class Usage:
    """The bill of one run, per phase: `with usage.during("probe"): ...`. Phases run one
    after another, so the phase is simply the one set last."""

    def __init__(self) -> None:
        self.phase = "backfill"
        self.phases: dict[str, PhaseUsage] = {}

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[PhaseUsage]:
        before, self.phase = self.phase, phase
        try:
            yield self.current
        finally:
            self.phase = before

    @property
    def current(self) -> PhaseUsage:
        return self.phases.setdefault(self.phase, PhaseUsage())

    def answered(self, texts: int, tokens: int, estimated: bool, *,
                 price_factor: float = 1.0) -> None:
        """One request the provider answered (and bills, at `price_factor` of its list
        price: a batch API's discount)."""
        usage = self.current
        usage.price_factor = price_factor
        usage.requests += 1
        usage.texts += texts
        usage.tokens += tokens
        usage.tokens_estimated |= estimated

    def from_cache(self, texts: int, tokens_saved: int) -> None:
        usage = self.current
        usage.cached += texts
        usage.tokens_saved += tokens_saved

    def since(self, earlier: Usage) -> Usage:
        """What was used after `earlier` (a snapshot of this usage): one run's share of an
        embedder that served several."""
        spent = self.snapshot()
        for name, before in earlier.phases.items():
            usage = spent.phases.get(name)
            if usage is None:
                continue
            usage.requests -= before.requests
            usage.texts -= before.texts
            usage.tokens -= before.tokens
            usage.cached -= before.cached
            usage.tokens_saved -= before.tokens_saved
            if not (usage.requests or usage.cached):
                del spent.phases[name]
        return spent

    def snapshot(self) -> Usage:
        """A copy that later requests do not change (a run's bill, as it ended)."""
        copy = Usage()
        copy.phase = self.phase
        copy.phases = {name: dataclasses.replace(usage) for name, usage in self.phases.items()}
        return copy

    @property
    def total(self) -> PhaseUsage:
        total = PhaseUsage()
        for usage in self.phases.values():
            total.add(usage)
        return total

    def to_dict(self, price_per_mtok: float | None = None) -> dict[str, Any]:
        ordered = sorted(self.phases, key=lambda p: PHASES.index(p) if p in PHASES else 99)
        total = self.total.to_dict(price_per_mtok)
        total["cost_usd"] = self.cost(price_per_mtok)
        return {"phases": {p: self.phases[p].to_dict(price_per_mtok) for p in ordered},
                "total": total}

    def cost(self, price_per_mtok: float | None) -> float | None:
        """What every phase cost, each at its own price."""
        costs = [usage.cost(price_per_mtok) for usage in self.phases.values()]
        return None if price_per_mtok is None else sum(c or 0.0 for c in costs)


class Budget:
    """What one run may spend (`migration.max_cost`, USD): a request is admitted only while
    what the run paid, what the requests in flight may cost and what it may cost stay
    within the limit. Estimates are used for what is not billed yet; cached texts cost
    nothing, so the spend only ever falls short of them."""

    def __init__(self, limit: float, price_per_mtok: float, usage: Usage) -> None:
        self.limit = limit
        self.price_per_mtok = price_per_mtok
        self.usage = usage
        self.exceeded = False
        self._reserved = 0
        self._before = self._billed()  # what the embedder had cost before this run

    def _billed(self) -> float:
        return self.usage.cost(self.price_per_mtok) or 0.0

    @property
    def spent(self) -> float:
        """What the run was billed since the budget was set, each phase at its own price
        (batch answers at the batch price)."""
        return self._billed() - self._before

    def admit(self, tokens: int) -> bool:
        """Reserve `tokens` (an estimate, at the list price) for a request, or refuse it
        (and from then on every other one: the run winds down). A request of nothing to
        pay for (every text cached) is let through until then."""
        if self.exceeded:
            return False
        if tokens == 0:
            return True
        projected = self.spent + (cost(self._reserved + tokens, self.price_per_mtok) or 0.0)
        if projected > self.limit:
            self.exceeded = True
            return False
        self._reserved += tokens
        return True

    def settle(self, tokens: int) -> None:
        """The request reserved with `tokens` was answered (and counted) or failed."""
        self._reserved -= tokens
