"""A migration run in a child process that the crash tests kill with SIGKILL.

    python -m tests.crash_worker STORE STATE URL [write:N | checkpoint:N | none] [in-place]

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


def settings(store: Path, state: Path, url: str, *,
             strategy: str = "new-collection") -> Settings:
    return Settings(
        source=StoreSettings(path=store),
        provider=ProviderSettings(name="openai-compatible", model="crash", base_url=url,
                                  batch_size=PAGE, concurrency=3),
        collections=[CollectionSettings(name="docs", alias="live")] if strategy == (
            "new-collection") else [CollectionSettings(name="docs", strategy="in-place",
                                                       new_vector="v2")],
        migration=MigrationSettings(state_dir=state, page_size=PAGE, queue_depth=2),
        verify=VerifySettings(enabled=False),  # its query embeddings would blur the counts
    )


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_inside_write(n: int) -> None:
    """Die after the n-th write to the target (an upsert, or in place the new vectors)
    was applied, before the pipeline counted it."""
    calls = {"n": 0}
    for name in ("upsert", "set_vectors"):
        real = getattr(QdrantStore, name)

        def write(self: QdrantStore, collection: str, points: Any, *, _real: Any = real,
                  **kw: Any) -> Any:
            done = _real(self, collection, points, **kw)
            calls["n"] += 1
            if calls["n"] == n:
                _die()
            return done

        setattr(QdrantStore, name, write)


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
    strategy = sys.argv[5] if len(sys.argv) > 5 else "new-collection"
    kind, _, count = mode.partition(":")
    if kind == "write":
        _kill_inside_write(int(count))
    elif kind == "checkpoint":
        _kill_inside_checkpoint(int(count))
    migrate(settings(Path(store), Path(state), url, strategy=strategy))


if __name__ == "__main__":
    main()
