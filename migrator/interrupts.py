"""Ctrl-C and SIGTERM: the first asks a run to stop gracefully, the second aborts it.

A graceful stop takes no new work: the reader reads no further page, no new request is
sent, the requests in flight are answered (and cached), the pages they complete are
written and checkpointed, and the run ends with `Interrupted` (exit 130 for SIGINT, 143
for SIGTERM, what Kubernetes sends). A second signal cancels what is left at once; even
then a write already inside Qdrant is let finish (see `finish_in_thread`), so the store is
never closed under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from .errors import Interrupted, NotSent

__all__ = ["finish_in_thread", "gather_or_cancel", "interruptible", "pause", "Stop",
           "stoppable"]

_T = TypeVar("_T")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DEFAULTS = (signal.default_int_handler, signal.SIG_DFL)


class Stop:
    """What a run knows of the signals it received.

    `requested` turns true with the first signal. Stages that can wind down on their own
    (the pipeline) say so with `draining()`; when none is running, the first signal cancels
    the run's task instead, since nothing else would notice it.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._draining = 0
        self._task: asyncio.Task[Any] | None = None
        self._signalled = asyncio.Event()
        self.paid: Callable[[], str] | None = None  # what the run paid for, said on a stop

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def draining(self) -> Iterator[None]:
        self._draining += 1
        try:
            yield
        finally:
            self._draining -= 1

    def receive(self, signum: int) -> None:
        """A signal arrived: stop gracefully the first time, abort the second."""
        first = self.signum is None
        if first:
            self.signum = signum
            self._signalled.set()
        if (not first or not self._draining) and self._task is not None:
            self._task.cancel()

    def error(self, what: str) -> Interrupted:
        """The `Interrupted` to raise: `what` says what was done and left."""
        name = signal.Signals(self.signum or signal.SIGINT).name
        paid = f" {self.paid()}" if self.paid is not None else ""
        return Interrupted(f"Stopped by {name}: {what}{paid}",
                           signum=self.signum or signal.SIGINT)


_current: contextvars.ContextVar[Stop | None] = contextvars.ContextVar("stop", default=None)


def _refuse_if_stopping(what: str) -> None:
    """Raise `NotSent` when the run this task belongs to is stopping."""
    stop = _current.get()
    if stop is not None and stop.requested:
        raise NotSent(f"{what} was not sent: the run is stopping.")


async def pause(seconds: float, sleep: Callable[[float], Awaitable[Any]]) -> None:
    """`await sleep(seconds)` before a request is sent again, cut short by a stop (then
    `NotSent`): a stopping run sends nothing again, and does not wait out a failing
    provider's backoff, however far down the stack the retry is made."""
    _refuse_if_stopping("A request to retry")
    stop = _current.get()
    if stop is None:
        await sleep(seconds)
        return
    napping = asyncio.ensure_future(sleep(seconds))
    signalled = asyncio.ensure_future(stop._signalled.wait())
    try:
        await asyncio.wait({napping, signalled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (napping, signalled):
            task.cancel()
        await asyncio.gather(napping, signalled, return_exceptions=True)
    _refuse_if_stopping("A request to retry")


def _unclaimed(handler: Any) -> bool:
    """Whether a signal's handler is Python's default, or asyncio.run's own for SIGINT."""
    if handler in _DEFAULTS:
        return True
    handler = getattr(handler, "func", handler)  # asyncio.run's is a functools.partial
    runner = getattr(asyncio, "Runner", None)  # Python >= 3.11
    return runner is not None and isinstance(getattr(handler, "__self__", None), runner)


@contextlib.asynccontextmanager
async def stoppable(cancelled: str = "Nothing was swapped; run the same command again to "
                                     "resume.") -> AsyncIterator[Stop]:
    """Catch SIGINT and SIGTERM for the running task while the block runs. `cancelled`
    says what is left when a signal cancels the block before it could stop gracefully.

    Signal handlers can only be installed by the main thread; elsewhere (a library call
    from a worker thread) the block runs without them, as before.
    """
    stop = Stop()
    token = _current.set(stop)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        stop._task = asyncio.current_task()
        for signum in _SIGNALS:
            if not _unclaimed(signal.getsignal(signum)):
                continue  # the application handles it: leave it be
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.receive, signum)
                installed.append(signum)
    try:
        yield stop
    except asyncio.CancelledError:
        if not stop.requested:
            raise
        raise stop.error(f"the run was cancelled before it finished. {cancelled}") from None
    finally:
        _current.reset(token)
        for signum in installed:  # SIGINT goes back to raising KeyboardInterrupt
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt while the block runs, inside a run too: a question
    asked on the terminal (`--restart`'s) blocks the event loop, so the run's handler could
    only note the signal, and the person who pressed it to say no was left waiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


async def finish_in_thread(func: Callable[..., _T], *args: Any) -> _T:
    """`await asyncio.to_thread(func, *args)`, except that a cancellation waits for the
    call to end before it goes on: the thread cannot be stopped, and whatever the
    cancellation leads to (closing the store) must not happen under it."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation, not this error, goes on
        raise


async def gather_or_cancel(*aws: Awaitable[_T]) -> list[_T]:
    """`asyncio.gather(*aws)`, except that the first failure (or a cancellation) cancels
    the rest, waits for them to end, and is raised: nothing is left running, or sending."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
