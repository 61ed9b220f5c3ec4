"""A migration run in a child process that the crash tests kill with SIGKILL.

    python -m tests.crash_worker STORE STATE URL [write:N | checkpoint:N | none]

`write:N` kills the process inside its N-th write to the target, after Qdrant applied it
and before the pipeline counted it; `checkpoint:N` kills it in the middle of the SQL that
saves the N-th checkpoint; `none` runs until the parent kills it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from migrator import (
    CollectionSettings,
    MigrationSettings,
    ProviderSettings,
    Settings,
    StoreSettings,
    migrate,
)
from migrator.settings import VerifySettings
from migrator.state import State
from migrator.store import QdrantStore

PAGE = 16


def settings(store: Path, state: Path, url: str) -> Settings:
    return Settings(
        source=StoreSettings(path=store),
        provider=ProviderSettings(name="openai-compatible", model="crash", base_url=url,
                                  batch_size=PAGE, concurrency=3),
        collections=[CollectionSettings(name="docs", alias="live")],
        migration=MigrationSettings(state_dir=state, page_size=PAGE, queue_depth=2),
        verify=VerifySettings(enabled=False),  # its query embeddings would blur the counts
    )


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_inside_write(n: int) -> None:
    real = QdrantStore.upsert
    calls = {"n": 0}

    def upsert(self: QdrantStore, collection: str, points: Any, **kw: Any) -> None:
        real(self, collection, points, **kw)
        calls["n"] += 1
        if calls["n"] == n:
            _die()

    QdrantStore.upsert = upsert  # type: ignore[method-assign]


def _kill_inside_checkpoint(n: int) -> None:
    real = State.update
    calls = {"n": 0}

    def update(self: State, migration: str, **fields: Any) -> None:
        if "checkpoint" in fields:
            calls["n"] += 1
            if calls["n"] == n:  # die part-way through the UPDATE statement itself
                self._db.set_progress_handler(_die, 3)
        real(self, migration, **fields)

    State.update = update  # type: ignore[method-assign]


def main() -> None:
    store, state, url, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    kind, _, count = mode.partition(":")
    if kind == "write":
        _kill_inside_write(int(count))
    elif kind == "checkpoint":
        _kill_inside_checkpoint(int(count))
    migrate(settings(Path(store), Path(state), url))


if __name__ == "__main__":
    main()
