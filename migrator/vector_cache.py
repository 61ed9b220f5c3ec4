"""The embedding cache's own SQLite file (`cache.db` in the state directory): vectors by
(provider, model, size, input kind, text), appended to a log answer by answer and indexed by
key in bulk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .databases import CACHE_FILE, Database, connect, open_db, transaction
from .errors import StateBusy, StateError
from .locks import FileLock

__all__ = ["CACHE_SCHEMA", "CacheStats", "EmbeddingCache", "INDEX_EVERY", "KEY_BYTES",
           "open_cache", "PAGE_BYTES", "ROWS_PER_INSERT", "WAL_BYTES"]

# The cache's WAL is checkpointed when about this much has been written to it (SQLite's
# default, 1,000 pages of 4 KB), by `upkeep()` as the run goes, so little is left to copy
# when the cache closes. The log is appended to: a checkpoint copies each page about once.
WAL_BYTES = 4_000_000
ROW_BYTES = 64  # a row's own bytes in the log or the index, besides its vector
INDEX_EVERY = 500_000  # rows appended to the cache's log before they are indexed
ROWS_PER_INSERT = 4_096  # rows in one INSERT: its values stay far below SQLite's 1 GB
KEY_BYTES = 32  # a key is a sha256 digest
# A new cache's page size. SQLite writes the WAL, and copies it into the file at a
# checkpoint, a page per system call: pages of 16 KB (about 30 vectors of 128 dimensions)
# took a sixth less time to write and checkpoint than SQLite's default 4 KB; 64 KB gained
# nothing more. A cache made before keeps its pages.
PAGE_BYTES = 16_384

# (version, name, SQL): applied in order, each in its own transaction.
CACHE_SCHEMA: list[tuple[int, str, str]] = [
    # a rowid table: rows of whole vectors make a WITHOUT ROWID b-tree split pages on
    # every random key, and writes 5x slower
    (1, "embedding cache", """
        CREATE TABLE embeddings (
            key BLOB PRIMARY KEY,
            dims INTEGER NOT NULL,
            vector BLOB NOT NULL,
            tokens INTEGER NOT NULL,
            created_at REAL NOT NULL
        );
    """),
    # Vectors are appended to a log (cheap: the table grows at its end) and indexed by key
    # in bulk, sorted, when a run closes (or every INDEX_EVERY rows). A random key inserted
    # into a b-tree one at a time dirties a page per text, and the commit of each answer
    # wrote them all again; sorted, a page is written once for all its new keys.
    (2, "vector log and its key index", """
        CREATE TABLE vectors (
            id INTEGER PRIMARY KEY,
            key BLOB NOT NULL,
            dims INTEGER NOT NULL,
            vector BLOB NOT NULL,
            tokens INTEGER NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE vector_keys (key BLOB PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE cache_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO vectors (key, dims, vector, tokens, created_at)
            SELECT key, dims, vector, tokens, created_at FROM embeddings ORDER BY key;
        INSERT INTO vector_keys (key, id) SELECT key, id FROM vectors ORDER BY key;
        DROP TABLE embeddings;
        INSERT INTO cache_meta VALUES ('indexed_through', (SELECT COALESCE(MAX(id), 0)
                                                           FROM vectors));
    """),
    # The namespaces (provider, model, size, kind) the log holds: a model the cache has
    # never seen, as on the first migration to it, is not looked up at all. Rows from before
    # this list existed may be of any namespace: `namespaces_listed` is 0 until a clear.
    (3, "the namespaces the log holds", """
        CREATE TABLE cache_namespaces (name TEXT PRIMARY KEY) WITHOUT ROWID;
        INSERT INTO cache_meta VALUES ('namespaces_listed',
                                       (SELECT COUNT(*) = 0 FROM vectors));
    """),
]


@dataclass
class CacheStats:
    entries: int
    bytes: int
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "bytes": self.bytes, "path": self.path}


# One INSERT of an answer: SQLite cuts its rows out of four values, the keys end to end
# (KEY_BYTES each), the vectors end to end, and the token counts as a JSON array, whose
# elements number the rows. One statement is one step of SQLite: `executemany` steps once
# per row and gives up the GIL at each step; with the store's threads busy, taking it back
# waits out the interpreter's switch interval, row after row (20,000 rows took 42 s beside
# one busy thread, and take 0.07 s alone). And binding three values a row held the GIL for
# longer than SQLite took to write them: in a CPU-bound run that is the store's time.
_INSERT_ROWS = (
    "INSERT INTO vectors (key, dims, vector, tokens, created_at) "
    "SELECT substr(:keys, row.key * :key_bytes + 1, :key_bytes), :dims, "
    "substr(:vectors, row.key * :width + 1, :width), row.value, :now "
    "FROM json_each(:tokens) AS row ORDER BY row.key")


def open_cache(directory: Path | str, enabled: bool = True
               ) -> contextlib.AbstractContextManager[EmbeddingCache | None]:
    """`with open_cache(state_dir, settings.migration.cache) as cache:` the cache, or None
    when caching is off."""
    return EmbeddingCache(directory) if enabled else contextlib.nullcontext()


class EmbeddingCache:
    """Vectors by (provider, model, size decision, input kind, text): a re-run, a resume or
    a comparison never pays twice for the same text.

    `put_many` appends to the vector log and commits; `get_many` finds a key in the index,
    or among the rows this cache appended and has not indexed yet. The log's tail is indexed
    on `close()` (and when a crashed run left one, on the next open). Another process sees a
    run's vectors once they are indexed. `upkeep()` indexes a long tail and checkpoints the
    WAL as a run goes; a waiting `put_many` does it itself.
    """

    def __init__(self, directory: Path | str) -> None:
        self.path = Path(directory) / CACHE_FILE
        with contextlib.ExitStack() as opened:  # what is open so far, closed if one fails
            self._db = open_db(self.path, CACHE_SCHEMA, page_size=PAGE_BYTES)
            opened.callback(self._db.close)
            # who has the cache open: each holds a shared lock, `clear` needs it alone
            self._in_use = FileLock(self.path.with_name(CACHE_FILE + ".lock"))
            opened.callback(self._in_use.close)
            self._in_use.take(exclusive=False, wait=True)
            # lookups have a connection of their own: in WAL mode they read while a write
            # goes on, and a lookup of a few hundred keys is quick enough to run inline
            self._reader = connect(self.path)
            opened.callback(self._reader.close)
            # `put_many(wait=False)` writes through a connection that never waits for
            # another process's write: setting the busy timeout on `_db` and back cost the
            # event loop two more turns at the GIL an answer
            self._impatient = connect(self.path, busy_seconds=0)
            opened.callback(self._impatient.close)
            self._start()
            opened.pop_all()

    def _start(self) -> None:
        # checkpoints are `upkeep()`'s: SQLite's own would run inside a commit, and a commit
        # may be made on the event loop
        self._db.execute("PRAGMA wal_autocheckpoint = 0")
        self._impatient.execute("PRAGMA synchronous = NORMAL")  # as `open_db` set `_db`'s
        self._impatient.execute("PRAGMA wal_autocheckpoint = 0")
        self._writing = threading.Lock()  # one writer at a time, `_db` or `_impatient`
        self._lock = threading.Lock()  # `_unindexed`, read by lookups on the event loop
        # appended and not indexed yet: key -> its row
        self._unindexed: dict[bytes, int] = {}
        # what the index pass needs to know of the rows appended since the last one
        self._appended = 0  # how many
        self._superseded: list[int] = []  # rows whose key was appended again
        self._may_replace = False  # a namespace with indexed rows was appended to
        self._wal_bytes = 0  # written since the last checkpoint, about
        self._recorded: set[str] = set()  # namespaces this cache has listed
        self._indexed: set[str] | None = None  # namespaces with indexed rows; None: any
        self.index()  # a crashed run's tail
        listed = self._db.execute("SELECT value FROM cache_meta WHERE name = "
                                  "'namespaces_listed'").fetchone()[0]
        if listed:
            self._indexed = {name for (name,) in self._db.execute(
                "SELECT name FROM cache_namespaces")}

    @staticmethod
    def key(namespace: str, text: str) -> bytes:
        """sha256 over the namespace (provider, model, size decision, kind) and the text."""
        return EmbeddingCache.keys(namespace, [text])[0]

    @staticmethod
    def keys(namespace: str, texts: Sequence[str]) -> list[bytes]:
        """`key(namespace, text)` of each text (the namespace encoded once)."""
        head = namespace.encode() + b"\0"
        sha256 = hashlib.sha256
        return [sha256(head + text.encode("utf-8")).digest() for text in texts]

    def get_many(self, space: str, keys: Sequence[bytes]
                 ) -> dict[bytes, tuple[np.ndarray, int]]:
        """The rows stored under `keys` (made by `key(space, text)`), by key."""
        found: dict[bytes, tuple[np.ndarray, int]] = {}
        with self._lock:
            indexed = self._indexed is None or space in self._indexed
            if not indexed and self._unindexed.keys().isdisjoint(keys):
                return found  # a namespace new to the cache, and new texts: the first run
            rows = [self._unindexed.get(key) for key in keys]
        recent = [row for row in rows if row is not None]
        for start in range(0, len(recent), 500):
            chunk = recent[start:start + 500]
            self._collect(found, f"SELECT key, vector, tokens FROM vectors WHERE id IN "
                                 f"({', '.join('?' for _ in chunk)})", chunk)
        rest = [key for key in keys if key not in found] if indexed else []
        for start in range(0, len(rest), 500):
            part = rest[start:start + 500]
            self._collect(found, f"SELECT k.key, v.vector, v.tokens FROM vector_keys k "
                                 f"JOIN vectors v ON v.id = k.id WHERE k.key IN "
                                 f"({', '.join('?' for _ in part)})", part)
        return {key: found[key] for key in keys if key in found}

    def _collect(self, found: dict[bytes, tuple[np.ndarray, int]], sql: str,
                 args: Sequence[Any]) -> None:
        for key, blob, tokens in self._reader.execute(sql, args).fetchall():
            found[key] = (np.frombuffer(blob, dtype="<f4"), tokens)

    def put_many(self, space: str, keys: Sequence[bytes], vectors: np.ndarray,
                 tokens: Sequence[int], *, wait: bool = True) -> bool:
        """Store one row of `vectors` under each key (little-endian float32), committed
        before this returns; a key stored again replaces its vector. Returns True.

        With `wait=False` this never waits: when a write is under way (this process's or
        another's), nothing is stored and it returns False; and the upkeep that comes due
        (see `upkeep_due`) is left to the caller.
        """
        if not self._writing.acquire(blocking=wait):
            return False
        try:
            ids = self._append(self._db if wait else self._impatient, space, keys, vectors,
                               tokens)
        except StateBusy:
            if wait:
                raise
            return False  # another process is writing
        finally:
            self._writing.release()
        with self._lock:
            unindexed = self._unindexed
            if len(set(keys)) == len(keys) and unindexed.keys().isdisjoint(keys):
                unindexed.update(zip(keys, ids, strict=True))  # the usual case: C speed
            else:
                for key, row in zip(keys, ids, strict=True):
                    if (earlier := unindexed.get(key)) is not None:
                        self._superseded.append(earlier)
                    unindexed[key] = row
        if wait:
            self.upkeep()
        return True

    def _append(self, db: Database, space: str, keys: Sequence[bytes], vectors: np.ndarray,
                tokens: Sequence[int]) -> list[int]:
        """Append the rows through `db` (under `_writing`); return their ids."""
        if space not in self._recorded:  # listed before its rows: a crash cannot hide them
            db.execute("INSERT OR IGNORE INTO cache_namespaces VALUES (?)", (space,))
            self._recorded.add(space)
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        dims = int(matrix.shape[1])
        blob, width = matrix.tobytes(), dims * 4
        ids: list[int] = []
        with (transaction(db, immediate=True) if len(keys) > ROWS_PER_INSERT
              else contextlib.nullcontext()):
            for start in range(0, len(keys), ROWS_PER_INSERT):
                stop = min(start + ROWS_PER_INSERT, len(keys))
                joined = b"".join(keys[start:stop])
                if len(joined) != KEY_BYTES * (stop - start):
                    raise ValueError(f"cache keys are {KEY_BYTES} bytes, made by "
                                     "`EmbeddingCache.keys`")
                last = int(db.execute(_INSERT_ROWS, {
                    "keys": joined, "key_bytes": KEY_BYTES,
                    "vectors": blob[start * width:stop * width], "width": width,
                    "dims": dims, "now": time.time(),
                    "tokens": json.dumps(list(map(int, tokens[start:stop]))),
                }).lastrowid or 0)
                # one statement under the write lock: its rows take consecutive ids
                ids.extend(range(last - (stop - start) + 1, last + 1))
        self._appended += len(keys)
        self._may_replace |= self._indexed is None or space in self._indexed
        self._wal_bytes += len(blob) + len(keys) * ROW_BYTES
        return ids

    @property
    def upkeep_due(self) -> bool:
        """The WAL has grown past WAL_BYTES since its last checkpoint, or the log's tail
        past INDEX_EVERY rows: `upkeep()` has work."""
        return self._wal_bytes >= WAL_BYTES or len(self._unindexed) >= INDEX_EVERY

    def upkeep(self) -> None:
        """Index a long tail and checkpoint a grown WAL, when due. Either can take a while:
        run it where waiting does not hold up the event loop."""
        if len(self._unindexed) >= INDEX_EVERY:
            self.index()
        if self._wal_bytes >= WAL_BYTES:
            self.checkpoint()

    def settle(self) -> None:
        """Index the log's tail and checkpoint the WAL now, not when the cache closes: run
        in the background as a run's last writes go on, it leaves `close()` little to do."""
        self.index()
        self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL's pages into the database file (the WAL is then reused, not grown)."""
        with self._writing:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._wal_bytes = 0

    def index(self) -> None:
        """Index the log's tail by key (sorted, in one transaction); a key stored again
        keeps only its newest vector."""
        with self._writing:
            with transaction(self._db, immediate=True):
                self._wal_bytes += self._index_tail() * ROW_BYTES
            with self._lock:  # after the commit: lookups find every row one way or another
                self._unindexed.clear()
                if self._indexed is not None:
                    self._indexed |= self._recorded

    def _index_tail(self) -> int:
        """Index the rows appended since the last pass; return how many."""
        done = self._db.execute("SELECT value FROM cache_meta WHERE name = 'indexed_through'"
                                ).fetchone()[0]
        last = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM vectors").fetchone()[0]
        # This cache appended the whole tail (no crashed run's rows, no other process's):
        # what it noted while appending spares the two searches below.
        mine = last - done == self._appended
        self._appended = 0
        with self._lock:
            superseded, self._superseded = self._superseded, []
        may_replace, self._may_replace = self._may_replace, False
        if last <= done:
            return 0
        if may_replace or not mine:
            self._db.execute(  # the rows the tail's keys replace
                "DELETE FROM vectors WHERE id IN (SELECT k.id FROM vectors t JOIN vector_keys "
                "k ON k.key = t.key WHERE t.id > ?)", (done,))
        self._db.execute(
            "INSERT OR REPLACE INTO vector_keys (key, id) SELECT key, id FROM vectors "
            "WHERE id > ? ORDER BY key, id", (done,))
        if not mine:
            self._db.execute(  # a key stored twice in the tail: the older row goes
                "DELETE FROM vectors WHERE id > ? AND id != (SELECT k.id FROM vector_keys k "
                "WHERE k.key = vectors.key)", (done,))
        for start in range(0, len(superseded), 500):
            chunk = superseded[start:start + 500]
            self._db.execute(f"DELETE FROM vectors WHERE id IN "
                             f"({', '.join('?' for _ in chunk)})", chunk)
        self._db.execute("UPDATE cache_meta SET value = ? WHERE name = 'indexed_through'",
                         (last,))
        return int(last - done)

    def stats(self) -> CacheStats:
        entries = self._db.execute("SELECT COUNT(*) FROM vector_keys").fetchone()[0]
        size = sum(p.stat().st_size for p in self.path.parent.glob(CACHE_FILE + "*"))
        return CacheStats(int(entries), size, str(self.path))

    def clear(self) -> int:
        """Remove every vector; return how many there were.

        Raises:
            StateError: another process (a run, a sync, a comparison) has the cache open:
                clearing it under them would have them pay again for what they embedded.
        """
        if not self._in_use.take(exclusive=True, wait=False):
            raise StateError(f"The embedding cache {self.path} is in use by another migrator "
                             "process (a migration, a sync or a comparison); clearing it now "
                             "would make that one pay again for what it embedded. Run "
                             "`migrator cache clear` when it has ended. Nothing was removed.")
        try:
            return self._clear()
        finally:
            self._in_use.take(exclusive=False, wait=True)

    def _clear(self) -> int:
        with self._writing, transaction(self._db):
            removed = self._db.execute("DELETE FROM vector_keys").rowcount
            self._db.execute("DELETE FROM vectors")
            self._db.execute("DELETE FROM cache_namespaces")
            self._db.execute("UPDATE cache_meta SET value = 0 WHERE name = 'indexed_through'")
            self._db.execute("UPDATE cache_meta SET value = 1 WHERE name = 'namespaces_listed'")
            self._appended, self._may_replace = 0, False
            with self._lock:
                self._unindexed.clear()
                self._superseded.clear()
                self._recorded.clear()
                self._indexed = set()
        self._db.execute("VACUUM")
        return int(removed)

    def close(self) -> None:
        try:
            self.index()
        finally:
            self._reader.close()
            self._impatient.close()
            with contextlib.suppress(StateError):  # another process may be reading: fine
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._in_use.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
