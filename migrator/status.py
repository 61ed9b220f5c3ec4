"""`status()`: aliases and the collections they point to; migrations and where they stand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import Settings
from .state import MigrationRecord, State
from .store import QdrantStore, opened

__all__ = ["status", "StatusReport"]


@dataclass
class StatusReport:
    location: str
    aliases: dict[str, str]
    migrations: list[MigrationRecord]
    alias_history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "aliases": self.aliases,
            "migrations": [_migration(m) for m in self.migrations],
            "alias_history": self.alias_history,
        }


def status(settings: Settings, *, store: QdrantStore | None = None) -> StatusReport:
    """Aliases of the target store, and every migration in the state directory.

    Raises:
        StateError: the state file is unreadable.
    """
    state_dir = Path(settings.migration.state_dir)
    migrations: list[MigrationRecord] = []
    history: list[dict[str, Any]] = []
    if (state_dir / "state.db").exists():
        with State(state_dir) as state:
            migrations, history = state.all(), state.alias_history()
    with opened(settings.target_store, None, source_store=store) as (target, _):
        return StatusReport(target.location, target.aliases(), migrations, history)


def _migration(record: MigrationRecord) -> dict[str, Any]:
    data = record.to_dict()
    written = record.counters.get("written", 0)
    data["progress"] = round(written / record.total, 4) if record.total else None
    return data
