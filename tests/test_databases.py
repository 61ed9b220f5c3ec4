"""What a failure of a state or cache file means to the user: a full disk, another
process's lock, a broken disk or file, each named with the file and what to do; a mistake
of migrator's own stays SQLite's error, whose traceback is the report."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from migrator.databases import CACHE_FILE, _reraise, connect, open_db, transaction
from migrator.errors import CorruptState, StateBusy, StateError

SCHEMA = [(1, "one table", "CREATE TABLE t (x BLOB);")]


def test_a_full_disk_names_the_file_and_says_nothing_is_lost(tmp_path: Path) -> None:
    db = open_db(tmp_path / CACHE_FILE, SCHEMA)
    db.execute("PRAGMA max_page_count = 8")  # a disk with 8 pages left
    with pytest.raises(StateError, match="disk that holds .*cache.db is full") as full:
        for _ in range(20):
            db.execute("INSERT INTO t VALUES (?)", (b"x" * 4000,))
    assert "Nothing saved before is lost" in str(full.value)
    assert "--state-dir" in str(full.value)


def test_a_lock_held_too_long_is_busy_and_names_the_file(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db", SCHEMA)
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for ever
    db.execute("PRAGMA busy_timeout = 50")
    with pytest.raises(StateBusy, match="state.db is locked by another process"):
        db.execute("INSERT INTO t VALUES (1)")
    holder.rollback()


def test_corruption_found_mid_run_is_corrupt_state(tmp_path: Path) -> None:
    db = open_db(tmp_path / CACHE_FILE, SCHEMA)
    error = sqlite3.DatabaseError("database disk image is malformed")
    with pytest.raises(CorruptState, match="migrator cache clear"):
        _reraise(db.path, error)  # SQLite says so when it reads a broken page


def test_migrators_own_mistake_stays_sqlites_error(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db", SCHEMA)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        db.execute("SELECT * FROM missing")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("CREATE TABLE u (x NOT NULL)")
        db.execute("INSERT INTO u VALUES (NULL)")


def test_a_connection_is_usable_from_any_thread(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(db.execute("SELECT 1").fetchone()[0]))
    worker.start()
    worker.join()
    assert seen == [1] and db.path == tmp_path / "x.db"


def test_a_transaction_whose_commit_fails_is_rolled_back(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db", SCHEMA)
    db.execute("PRAGMA max_page_count = 8")
    with pytest.raises(StateError, match="is full"), transaction(db):
        for _ in range(20):
            db.execute("INSERT INTO t VALUES (?)", (b"x" * 4000,))
    assert not db.in_transaction
    assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    db.execute("INSERT INTO t VALUES (1)")  # the file goes on working


def test_a_schema_change_that_fails_leaves_the_file_usable(tmp_path: Path) -> None:
    """The half-run schema change kept its transaction, and the file's write lock, open in
    a connection nobody could close."""
    broken = SCHEMA + [(2, "a broken change",
                        "CREATE TABLE u (x); INSERT INTO nowhere VALUES (1);")]
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        open_db(tmp_path / "state.db", broken)
    db = open_db(tmp_path / "state.db", SCHEMA + [(2, "the change", "CREATE TABLE u (x);")])
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
