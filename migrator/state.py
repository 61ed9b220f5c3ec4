"""Embedded state: migrations and their checkpoints, skipped points, alias history, and the
embedding cache. SQLite in WAL mode under the state directory (default `.migrator/`).

Two files: `state.db` (small, precious) and `cache.db` (large, disposable: `migrator cache
clear` empties it). Each has a schema version (`PRAGMA user_version`) moved forward by
small, named migrations. A file that is corrupt, truncated or newer than this migrator is
reported, never replaced.
"""

from __future__ import annotations

import enum
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing_extensions import TypedDict, Unpack

from .databases import open_db, transaction
from .errors import StateError
from .locks import FileLock

__all__ = ["migration_id", "MigrationRecord", "Phase", "RecordUpdate", "State", "STATE_FILE",
           "STATE_SCHEMA"]

STATE_FILE = "state.db"

# (version, name, SQL): applied in order, each in its own transaction.
STATE_SCHEMA: list[tuple[int, str, str]] = [
    (1, "migrations, skipped points, alias history", """
        CREATE TABLE migrations (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            source_collection TEXT NOT NULL,
            target TEXT NOT NULL,
            vector TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            dims INTEGER NOT NULL,
            text TEXT NOT NULL,
            alias TEXT,
            phase TEXT NOT NULL,
            checkpoint TEXT,
            finished INTEGER NOT NULL DEFAULT 0,
            counters TEXT NOT NULL DEFAULT '{}',
            total INTEGER,
            created_target INTEGER NOT NULL DEFAULT 0,
            write_mode TEXT,
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE skipped (
            migration TEXT NOT NULL REFERENCES migrations(id) ON DELETE CASCADE,
            point TEXT NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (migration, point)
        );
        CREATE TABLE alias_history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            alias TEXT NOT NULL,
            from_collection TEXT,
            to_collection TEXT NOT NULL,
            at REAL NOT NULL,
            forced INTEGER NOT NULL DEFAULT 0,
            metrics TEXT NOT NULL DEFAULT '{}'
        );
    """),
    (2, "last verification of each migration", """
        ALTER TABLE migrations ADD COLUMN verification TEXT;
    """),
    (3, "the target store, and targets adopted rather than created", """
        ALTER TABLE migrations ADD COLUMN store TEXT;
        ALTER TABLE migrations ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0;
    """),
    (4, "when the target last matched its source", """
        ALTER TABLE migrations ADD COLUMN changes_since REAL;
    """),
    (5, "batch jobs and the texts in them (batch_ledger.py)", """
        CREATE TABLE batch_jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            scope TEXT NOT NULL,
            provider TEXT NOT NULL,
            input_file TEXT NOT NULL,
            batch_id TEXT,
            status TEXT NOT NULL,
            requests INTEGER NOT NULL,
            texts INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            cost REAL NOT NULL,
            collected INTEGER NOT NULL DEFAULT 0,
            resent INTEGER NOT NULL DEFAULT 0,
            files_deleted INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE batch_texts (
            key BLOB PRIMARY KEY,
            job INTEGER NOT NULL REFERENCES batch_jobs(seq) ON DELETE CASCADE,
            request INTEGER NOT NULL,
            row INTEGER NOT NULL
        );
        CREATE INDEX batch_texts_by_job ON batch_texts (job, request, row);
        CREATE TABLE batch_scans (scope TEXT PRIMARY KEY, finished INTEGER NOT NULL);
        CREATE TABLE batch_failures (key BLOB PRIMARY KEY, attempts INTEGER NOT NULL);
    """),
    (6, "in-place migrations: the vector they add, and the texts they embedded", """
        ALTER TABLE migrations ADD COLUMN strategy TEXT NOT NULL DEFAULT 'new-collection';
        ALTER TABLE migrations ADD COLUMN new_vector TEXT;
        ALTER TABLE migrations ADD COLUMN created_vector INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE embedded_texts (
            migration TEXT NOT NULL REFERENCES migrations(id) ON DELETE CASCADE,
            point TEXT NOT NULL,
            sha BLOB NOT NULL,
            PRIMARY KEY (migration, point)
        ) WITHOUT ROWID;
    """),
    # rollback and drop-old read an alias's moves in the store they act on; rows from
    # before (NULL) count for every store
    (7, "the store each alias move was made in", """
        ALTER TABLE alias_history ADD COLUMN store TEXT;
    """),
    (8, "what the target held at the last count", """
        ALTER TABLE migrations ADD COLUMN held INTEGER;
    """),
]


class Phase(str, enum.Enum):
    """Where a migration stands, as `status` shows it."""

    PLANNED = "planned"
    BACKFILLING = "backfilling"
    CATCHING_UP = "catching_up"
    VERIFYING = "verifying"
    SWAPPED = "swapped"
    COMPLETE = "complete"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


def migration_id(*parts: Any) -> str:
    """A stable id from what identifies a migration."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class MigrationRecord:
    id: str
    source: str
    source_collection: str
    target: str
    vector: str
    provider: str
    model: str
    dims: int
    text: str
    alias: str | None
    phase: Phase
    checkpoint: Any = None
    finished: bool = False
    counters: dict[str, Any] = field(default_factory=dict)
    total: int | None = None
    created_target: bool = False
    write_mode: str | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    verification: dict[str, Any] | None = None
    store: str | None = None  # the target store's identity (StoreSettings.identity)
    adopted: bool = False  # the target existed and the user adopted it (--adopt-target)
    # the time (epoch seconds) the last backfill or catch-up began reading: every change to
    # the source before it is in the target
    changes_since: float | None = None
    strategy: str = "new-collection"  # or "in-place": `new_vector` added to the source
    new_vector: str | None = None
    created_vector: bool = False  # this migration added `new_vector` (it may drop it)
    # the points the target held at the last count (after a run's catch-up), of `total`
    held: int | None = None

    @property
    def in_place(self) -> bool:
        return self.strategy == "in-place"

    def owns_target(self) -> bool:
        """Whether this migration may write into, catch up and delete from its target."""
        return self.created_target or self.adopted

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_COLUMNS = list(MigrationRecord.__dataclass_fields__)


class RecordUpdate(TypedDict, total=False):
    """The fields of a migration's row that change as it runs (`State.update`)."""

    phase: Phase
    checkpoint: Any
    finished: int
    counters: dict[str, Any]
    total: int
    created_target: int
    adopted: int
    write_mode: str
    error: str | None
    verification: dict[str, Any]
    changes_since: float
    created_vector: int
    held: int


class State:
    """The state database of one state directory."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        self._db = open_db(self.path, STATE_SCHEMA)
        self._lock = threading.Lock()
        self._claims: dict[str, FileLock] = {}

    def close(self) -> None:
        for held in self._claims.values():
            held.close()
        self._db.close()

    def claim(self, source: str, collection: str, provider: str, model: str) -> None:
        """Hold the migration of `collection` (of the store whose identity is `source`) to
        `model` for this run, until the state is closed.

        Raises:
            StateError: another process (or run) holds it: two runs of one migration would
                pay for the same texts and write the same points.
        """
        key = migration_id(source, collection, provider, model)
        if key in self._claims:
            return
        held = FileLock(self.directory / "runs" / f"{key}.lock")
        if not held.take(exclusive=True, wait=False):
            held.close()
            raise StateError(f"A migration of {collection!r} to {provider} {model} is running "
                             f"in another process with the state directory {self.directory}; "
                             "wait for it to end, or stop it (Ctrl-C) first. Nothing was done.")
        self._claims[key] = held

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for the tables other modules keep here (batch_ledger.py)."""
        return self._db

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, migration: str) -> MigrationRecord | None:
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM migrations WHERE id = ?",
                               (migration,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[MigrationRecord]:
        rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM migrations "
                                "ORDER BY created_at").fetchall()
        return [_record(r) for r in rows]

    def create(self, record: MigrationRecord) -> MigrationRecord:
        now = time.time()
        record.created_at = record.updated_at = now
        values = _values(record)
        with self._lock:
            self._db.execute(f"INSERT INTO migrations ({', '.join(_COLUMNS)}) VALUES "
                             f"({', '.join('?' for _ in _COLUMNS)})", values)
        return record

    def update(self, migration: str, **changes: Unpack[RecordUpdate]) -> None:
        """Change some fields of a migration's row (and its `updated_at`)."""
        fields: dict[str, Any] = {**changes, "updated_at": time.time()}
        for key in ("checkpoint", "counters", "verification"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE migrations SET {assignments} WHERE id = ?",
                             (*fields.values(), migration))

    def delete(self, migration: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM migrations WHERE id = ?", (migration,))

    def add_skipped(self, migration: str, items: Sequence[tuple[Any, str]]) -> None:
        with self._lock, transaction(self._db):
            self._db.executemany(
                "INSERT OR REPLACE INTO skipped (migration, point, reason) VALUES (?, ?, ?)",
                [(migration, json.dumps(point), reason) for point, reason in items])

    def clear_skipped(self, migration: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM skipped WHERE migration = ?", (migration,))

    def embedded(self, migration: str, texts: Sequence[tuple[Any, bytes]]) -> None:
        """Each point's text (its sha256) that an in-place migration embedded."""
        with self._lock, transaction(self._db):
            self._db.executemany(
                "INSERT OR REPLACE INTO embedded_texts (migration, point, sha) VALUES (?, ?, ?)",
                [(migration, json.dumps(point), sha) for point, sha in texts])

    def embedded_shas(self, migration: str, points: Sequence[Any]) -> dict[str, bytes]:
        """The sha256 of the text each of `points` had when it was embedded, by JSON id."""
        found: dict[str, bytes] = {}
        ids = [json.dumps(point) for point in points]
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            found.update(self._db.execute(
                f"SELECT point, sha FROM embedded_texts WHERE migration = ? AND point IN "
                f"({', '.join('?' * len(part))})", (migration, *part)).fetchall())
        return found

    def skipped(self, migration: str) -> list[tuple[Any, str]]:
        rows = self._db.execute("SELECT point, reason FROM skipped WHERE migration = ? "
                                "ORDER BY rowid", (migration,)).fetchall()
        return [(json.loads(p), r) for p, r in rows]

    def record_alias(self, alias: str, previous: str | None, collection: str, *,
                     store: str | None = None, forced: bool = False,
                     metrics: dict[str, Any] | None = None) -> None:
        """Record a move of `alias` in `store` (its identity, `QdrantStore.identity`)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO alias_history (alias, from_collection, to_collection, at, forced,"
                " metrics, store) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (alias, previous, collection, time.time(), int(forced),
                 json.dumps(metrics or {}), store))

    def alias_history(self, alias: str | None = None, *, store: str | None = None
                      ) -> list[dict[str, Any]]:
        """The recorded moves, oldest first: of `alias` (None: every alias), in `store`
        (None: every store; moves recorded before stores were, count for each)."""
        where, args = [], []
        if alias:
            where.append("alias = ?")
            args.append(alias)
        if store:
            where.append("(store IS NULL OR store = ?)")
            args.append(store)
        query = ("SELECT alias, from_collection, to_collection, at, forced, metrics FROM "
                 "alias_history" + (" WHERE " + " AND ".join(where) if where else "")
                 + " ORDER BY seq")
        rows = self._db.execute(query, args).fetchall()
        return [{"alias": a, "from": f, "to": t, "at": at, "forced": bool(fo),
                 "metrics": json.loads(m)} for a, f, t, at, fo, m in rows]


def _values(record: MigrationRecord) -> tuple[Any, ...]:
    data = record.to_dict()
    data["checkpoint"] = json.dumps(data["checkpoint"])
    data["counters"] = json.dumps(data["counters"])
    data["verification"] = json.dumps(data["verification"])
    data["finished"] = int(data["finished"])
    data["created_target"] = int(data["created_target"])
    data["adopted"] = int(data["adopted"])
    data["created_vector"] = int(data["created_vector"])
    return tuple(data[c] for c in _COLUMNS)


def _record(row: Sequence[Any]) -> MigrationRecord:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["checkpoint"] = json.loads(data["checkpoint"]) if data["checkpoint"] else None
    data["counters"] = json.loads(data["counters"] or "{}")
    data["verification"] = json.loads(data["verification"]) if data["verification"] else None
    data["finished"] = bool(data["finished"])
    data["created_target"] = bool(data["created_target"])
    data["adopted"] = bool(data["adopted"])
    data["created_vector"] = bool(data["created_vector"])
    data["phase"] = Phase(data["phase"])
    return MigrationRecord(**data)
