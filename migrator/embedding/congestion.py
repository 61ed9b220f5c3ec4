"""Adaptive concurrency: how many requests an endpoint has in flight follows the server.

The configured `provider.concurrency` is a ceiling. Like TCP's congestion control, the
limit grows while answers come back steadily (additive increase: about one more request
in flight per round of answers) and shrinks when the server shows it is overloaded
(multiplicative decrease): a timeout, a 429, a 5xx, or latency well above what the
server answers in when it is not queueing. Latency is compared per text, so requests of
different sizes compare, against a low percentile of recent answers, so one lucky fast
answer does not make every normal one look slow.

A server that answers one request at a time (a model on a CPU) settles at one or two
requests in flight, every one answered before its timeout, instead of queueing the whole
ceiling and timing out on all of it. Latency that stays high with one request in flight is
not queueing: the unqueued latency is measured afresh then, and the limit grows again.

Only answers on kept-alive connections are measured once there are any. A connection's
first answer takes another path: a handshake first, or, from a server that writes a reply's
headers and body apart without TCP_NODELAY (Python's `http.server`, a Flask or werkzeug
dev server), no wait for the client's delayed ACK, which every later answer on that
connection waits out (about 40 ms). Those fast first answers made every later one look
queued, and kept such a server at one request in flight, five times slower than it serves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

__all__ = ["AdaptiveConcurrency", "BACKOFF_FACTOR", "QUEUEING", "SMOOTHING", "WINDOW"]

BACKOFF_FACTOR = 0.5  # the limit after an overload signal, as a share of what it was
QUEUEING = 2.0  # smoothed latency per text this many times the unqueued one: shrink
SMOOTHING = 0.2  # weight of the newest answer in the smoothed latency
WINDOW = 64  # recent answers the unqueued latency is taken from (their 10th percentile)


class AdaptiveConcurrency:
    """`async with limit.slot(texts) as done: ...; done(latency)` around each attempt."""

    def __init__(self, ceiling: int, *, adaptive: bool = True) -> None:
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.limit = float(ceiling)
        self.lowest = float(ceiling)  # the smallest limit it came down to (for the report)
        self.in_flight = 0
        self._changed = asyncio.Condition()
        self._recent: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._smoothed: float | None = None
        self._largest = 0  # the most texts a request had: only requests near it are compared
        self._kept_alive = False  # an answer came on a connection used before

    def on_new_loop(self) -> None:
        """Used from another event loop from now on (nothing is in flight)."""
        self._changed = asyncio.Condition()
        self.in_flight = 0

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait until fewer than `allowed` requests are in flight, and hold one place."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.allowed)
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()

    def answered(self, seconds: float, texts: int, *, fresh: bool = False) -> None:
        """A request of `texts` texts was answered in `seconds`; `fresh`: on a connection
        opened for it."""
        if not self.adaptive:
            return
        if fresh and self._kept_alive:
            return  # not like the answers measured: see the module's docstring
        if not fresh and not self._kept_alive:  # the first answer on a kept-alive connection
            self._kept_alive = True
            self._recent.clear()
            self._smoothed = None
        self._largest = max(self._largest, texts)
        if texts * 2 < self._largest:  # a small request's fixed costs weigh more per text:
            self._grow()              # it says nothing of queueing
            return
        per_text = seconds / max(texts, 1)
        self._recent.append(per_text)
        self._smoothed = per_text if self._smoothed is None else (
            self._smoothed + SMOOTHING * (per_text - self._smoothed))
        unqueued = _tenth_percentile(self._recent)
        if len(self._recent) < 4 or self._smoothed <= QUEUEING * unqueued:
            self._grow()
        elif self.limit > 1.0:
            self._shrink(0.9)  # gently: latency is a weak signal
        else:
            # one request in flight, and still slow: none of ours queues. The fast answers
            # it is measured against came in another regime (a lull in the server's other
            # load, answers on fresh connections): it is measured afresh from here
            self._recent.clear()
            self._recent.append(per_text)
            self._smoothed = per_text

    def _grow(self) -> None:
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)

    def overloaded(self) -> None:
        """A timeout, a 429 or a 5xx: the server has more than it can take."""
        if self.adaptive:
            self._shrink(BACKOFF_FACTOR)

    def _shrink(self, factor: float) -> None:
        self.limit = max(1.0, self.limit * factor)
        self.lowest = min(self.lowest, self.limit)


def _tenth_percentile(values: collections.deque[float]) -> float:
    """numpy's default (linear) percentile, without its cost per call: this runs on the
    event loop once per answer."""
    ordered = sorted(values)
    rank = 0.1 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
