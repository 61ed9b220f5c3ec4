"""The synchronous API's one way of running its work: `asyncio.run`, or, inside an event
loop that is already running (a Jupyter notebook, an async application), where that cannot
work, an error that says what to call there instead."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["outside_loop", "run_blocking"]

T = TypeVar("T")


def outside_loop(name: str, twin: str | None = None) -> None:
    """Nothing when no event loop runs in this thread.

    Raises:
        RuntimeError: one does; the message names `twin` (the coroutine to await there) or
            `asyncio.to_thread`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    instead = f"`await {twin}(...)`" if twin else f"`await asyncio.to_thread({name}, ...)`"
    raise RuntimeError(
        f"migrator.{name}() runs its own event loop and was called inside one that is already "
        f"running (a Jupyter notebook or an async application). There, use {instead}. "
        "Nothing was done.")


def run_blocking(coroutine: Coroutine[Any, Any, T], name: str, twin: str | None = None) -> T:
    """`asyncio.run(coroutine)`, refused (see `outside_loop`) inside a running event loop."""
    try:
        outside_loop(name, twin)
    except RuntimeError:
        coroutine.close()  # never started: no "was never awaited" warning
        raise
    return asyncio.run(coroutine)
