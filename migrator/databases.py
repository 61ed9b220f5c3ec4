"""The SQLite files in the state directory (`state.db`, precious; `cache.db`, disposable):
opening one and bringing its schema up to date, transactions, and what a failure of one
means to the user.

A connection from here raises a failure that is not migrator's own — a full disk, an I/O
error, a lock another process held too long, permissions, corruption found mid-run — as a
StateError that names the file and says what to do, never as SQLite's bare words.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from .errors import CorruptState, StateBusy, StateError

__all__ = ["BUSY_SECONDS", "CACHE_FILE", "connect", "Database", "make_directory", "open_db",
           "transaction"]

CACHE_FILE = "cache.db"  # the embedding cache (vector_cache.py)
BUSY_SECONDS = 30  # how long a statement waits for another process's write lock


class Database(sqlite3.Connection):
    """A connection to one of migrator's files (made by `connect`)."""

    path: Path

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            _reraise(self.path, exc)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            _reraise(self.path, exc)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.Error as exc:
            _reraise(self.path, exc)


def connect(path: Path, *, busy_seconds: float = BUSY_SECONDS) -> Database:
    """A connection to `path` in autocommit mode, usable from any thread; a statement
    waits up to `busy_seconds` for another connection's write to end."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         timeout=busy_seconds, factory=Database)
    db.path = path
    return db


def open_db(path: Path, schema: list[tuple[int, str, str]], *,
            page_size: int = 4096) -> Database:
    """Open (or create) a state file and bring its schema up to date. `page_size` is the
    page size of a file created now (4 KB is SQLite's default); a file keeps its own.

    Raises:
        StateError: the file or its directory cannot be read or written (permissions), or
            the disk failed.
        CorruptState: the file is not a readable database of ours.
    """
    _check_access(path)
    make_directory(path.parent)
    try:
        db = connect(path)
    except (sqlite3.OperationalError, PermissionError) as exc:
        if isinstance(exc, PermissionError) or _access_problem(exc):
            raise _denied(path, exc) from exc
        raise _corrupt(path, exc) from exc
    try:
        _prepare(db, path, schema, page_size)
    except BaseException:
        db.close()  # a schema change cut short is rolled back with it
        raise
    return db


def make_directory(directory: Path) -> None:
    """Create the state directory (and its parents) if missing.

    Raises:
        StateError: it cannot be: a file in the way, a read-only or virtual file system,
            permissions.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"migrator cannot make its state directory {directory} "
            f"({exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}). "
            "Choose a --state-dir (migration.state_dir) where you can write.") from exc


def _prepare(db: Database, path: Path, schema: list[tuple[int, str, str]],
             page_size: int) -> None:
    db.execute(f"PRAGMA page_size={page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
        raise _corrupt(path, sqlite3.DatabaseError("integrity check failed"))
    latest = schema[-1][0]
    if version > latest:
        raise StateError(f"The state file {path} has schema version {version}, newer than "
                         f"this migrator understands ({latest}); upgrade migrator.")
    for number, _name, sql in schema:
        if number > version:  # the schema change and its version number commit together
            db.executescript(f"BEGIN; {sql} PRAGMA user_version = {number}; COMMIT;")


@contextmanager
def transaction(db: sqlite3.Connection, *, immediate: bool = False) -> Iterator[None]:
    """One transaction around many statements (autocommit would commit each row);
    `immediate` takes the write lock at once (the statements read before they write)."""
    db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite ends it itself on some failures (a full disk)
            db.execute("ROLLBACK")
        raise


def _reraise(path: Path, exc: sqlite3.Error) -> NoReturn:
    """Raise what `exc` means for the file at `path`; `exc` itself when it is migrator's
    own mistake (SQL, a constraint), whose traceback is the useful report."""
    message = str(exc).lower()
    if "disk is full" in message:
        raise StateError(
            f"The disk that holds {path} is full ({exc}). Nothing saved before is lost: free "
            "some space (or choose another --state-dir) and run the same command again; it "
            "goes on from where this run stopped.") from exc
    if "locked" in message:
        raise StateBusy(
            f"{path} is locked by another process ({exc}): another migrator command, or a "
            f"program holding the file open, kept it for more than {BUSY_SECONDS} seconds. "
            "Run the same command again when that one has ended.") from exc
    if "i/o error" in message:
        raise StateError(
            f"Reading or writing {path} failed ({exc}): the disk or file system reported an "
            "error (a full or removed volume, a network file system that went away). Check "
            "it, then run the same command again.") from exc
    if isinstance(exc, sqlite3.OperationalError) and _access_problem(exc):
        raise _denied(path, exc) from exc
    if "malformed" in message or "not a database" in message:
        raise _corrupt(path, exc) from exc
    raise exc


def _check_access(path: Path) -> None:
    """Permission problems are told apart from corruption before SQLite reports either as
    "unable to open database file"."""
    for target, mode in ((path, os.R_OK | os.W_OK), (path.parent, os.W_OK | os.X_OK)):
        if target.exists() and not os.access(target, mode):
            raise _denied(path, PermissionError(f"permission denied on {target}"))


def _access_problem(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return any(s in message for s in ("unable to open", "readonly", "read-only",
                                      "permission", "access"))


def _denied(path: Path, exc: BaseException) -> StateError:
    return StateError(
        f"migrator cannot read and write {path} ({exc}). The file is not corrupt: run as the "
        "user who owns it, or fix the permissions of the file and its directory (`ls -l`), "
        "or choose another --state-dir.")


def _corrupt(path: Path, exc: BaseException) -> CorruptState:
    if path.name == CACHE_FILE:
        return CorruptState(
            f"The embedding cache {path} is corrupt or truncated ({exc}). It holds only "
            "embeddings: `migrator cache clear` removes it (the next run pays for what it "
            "embeds again); the progress in state.db is untouched.")
    return CorruptState(
        f"The state file {path} is corrupt or truncated ({exc}). migrator will not replace "
        "it: restore it from a backup, or move it aside (the run then starts from scratch and "
        "rollback loses the alias history; a separate cache.db still saves repeat charges).")
