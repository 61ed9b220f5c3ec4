"""`status()`: aliases and the collections they point to; migrations and where they stand."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch_ledger import BatchLedger, JobRow
from .settings import Settings
from .state import MigrationRecord, State
from .store import QdrantStore, opened

__all__ = ["current_and_history", "status", "StatusReport"]


@dataclass
class StatusReport:
    """`migrations` holds the current row of each migration: the latest run for a source
    and what it moves to (its alias, else its target) on one store; `history` the rows
    later runs superseded (a failed attempt before a success, a restart with other
    settings)."""

    location: str
    aliases: dict[str, str]
    migrations: list[MigrationRecord]
    alias_history: list[dict[str, Any]]
    history: list[MigrationRecord] = field(default_factory=list)
    batch_jobs: list[JobRow] = field(default_factory=list)  # batch mode's ledger
    # each migrated collection's dense vectors, and the migration that wrote each (or None)
    vectors: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # targets a migration wrote into that are gone from the store (drop-old, by hand)
    deleted: set[str] = field(default_factory=set)
    state_dir: str = ""  # where the migrations are recorded
    # migrations into another store than the one shown (--target-qdrant-*): id -> that store
    elsewhere: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "state_dir": self.state_dir,
            "aliases": self.aliases,
            "migrations": [{**_migration(m), "target_deleted": m.target in self.deleted,
                            "target_store_shown": m.id not in self.elsewhere}
                           for m in self.migrations],
            "history": [_migration(m) for m in self.history],
            "alias_history": self.alias_history,
            "batch_jobs": [j.to_dict() for j in self.batch_jobs],
            "vectors": self.vectors,
        }


def status(settings: Settings, *, store: QdrantStore | None = None) -> StatusReport:
    """Aliases of the target store, and every migration in the state directory.

    Raises:
        StateError: the state file is unreadable.
    """
    state_dir = Path(settings.migration.state_dir)
    migrations: list[MigrationRecord] = []
    history: list[dict[str, Any]] = []
    jobs: list[JobRow] = []
    with opened(settings.target_store, None, source_store=store) as (target, _):
        if (state_dir / "state.db").exists():
            with State(state_dir) as state:  # the alias moves made in the store shown
                migrations = state.all()
                history = state.alias_history(store=target.identity)
                jobs = BatchLedger(state).jobs()
        current, superseded = current_and_history(migrations)
        elsewhere = {m.id: m.store for m in current
                     if m.store is not None and m.store != target.identity}
        here = [m for m in current if m.id not in elsewhere]  # what this store can answer for
        existing = set(target.collection_names())
        deleted = {m.target for m in here
                   if m.target not in existing and m.counters.get("written", 0)}
        return StatusReport(target.location, target.aliases(), current, history, superseded,
                            jobs, _vectors(target, here), deleted, str(state_dir), elsewhere)


def _vectors(target: QdrantStore, records: list[MigrationRecord]
             ) -> dict[str, dict[str, str | None]]:
    """The dense vectors of each collection the current migrations wrote into, each with the
    migration that wrote it (None: not one of them)."""
    written: dict[str, dict[str, str | None]] = {}
    existing = set(target.collection_names())
    for record in records:
        if record.target not in existing:
            continue
        names = written.setdefault(record.target, dict.fromkeys(
            target.describe(record.target).vectors))
        name = record.new_vector if record.in_place else record.vector
        if name in names:
            names[name] = record.id
    return written


def current_and_history(records: list[MigrationRecord]
                        ) -> tuple[list[MigrationRecord], list[MigrationRecord]]:
    """The latest row per (store, source, alias or target), and every earlier one."""
    latest: dict[tuple[str | None, str, str], MigrationRecord] = {}
    for record in sorted(records, key=lambda r: r.updated_at):
        latest[(record.store, record.source, record.alias or record.target)] = record
    current = [r for r in records if r in latest.values()]
    return current, [r for r in records if r not in current]


def _migration(record: MigrationRecord) -> dict[str, Any]:
    data = record.to_dict()
    written = record.counters.get("written", 0)
    data["progress"] = round(written / record.total, 4) if record.total else None
    return data
