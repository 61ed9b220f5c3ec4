"""The ledger of batch mode, in the state database: every batch job migrator created (its
input file, the provider's batch id, status, counts and cost at the batch price) and every
text in it by cache key, so no text is ever in two jobs and a crash at any moment leaves a
record to pick up from."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .databases import transaction
from .errors import StateError
from .state import State

__all__ = ["BatchLedger", "custom_id", "JobRow", "MAX_ATTEMPTS", "OPEN"]

# a job still to be collected: recorded before the provider created it ("uploaded"), or any
# status of the provider's before the end
OPEN = ("uploaded", "validating", "in_progress", "finalizing", "cancelling")
MAX_ATTEMPTS = 3  # a text no batch answered this often is left to the synchronous path


@dataclass(frozen=True)
class JobRow:
    seq: int
    scope: str  # the source collection its texts came from
    provider: str
    input_file: str
    batch_id: str | None
    status: str  # the provider's, or "collected" once its vectors are in the cache
    requests: int
    texts: int
    tokens: int  # estimated
    cost: float  # at the batch price, estimated
    collected: int  # texts whose vectors it brought
    resent: int  # texts it did not answer, left to be sent again
    files_deleted: bool
    error: str | None
    created_at: float
    updated_at: float

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


_COLUMNS = list(JobRow.__dataclass_fields__)


def custom_id(request: int) -> str:
    """The `custom_id` of a job's request number `request` (unique within its file)."""
    return f"r{request}"


class BatchLedger:
    """Batch jobs and their texts (see the module's docstring)."""

    def __init__(self, state: State) -> None:
        self._db, self._path = state.db, state.path

    def claimed(self, keys: Sequence[bytes]) -> set[bytes]:
        """The keys not to submit: in a job already (open, or collected with an answer),
        or left unanswered by MAX_ATTEMPTS jobs (the synchronous path embeds those)."""
        found: set[bytes] = set()
        for start in range(0, len(keys), 500):
            part = list(keys[start:start + 500])
            marks = ", ".join("?" * len(part))
            found.update(key for (key,) in self._db.execute(
                f"SELECT key FROM batch_texts WHERE key IN ({marks}) UNION SELECT key FROM "
                f"batch_failures WHERE attempts >= ? AND key IN ({marks})",
                (*part, MAX_ATTEMPTS, *part)))
        return found

    def add(self, *, scope: str, provider: str, input_file: str,
            requests: Sequence[Sequence[bytes]], tokens: int, cost: float) -> JobRow:
        """A job over an uploaded file, with the keys of each of its requests, recorded in
        one transaction before the provider is asked to run it."""
        now = time.time()
        with transaction(self._db):
            seq = self._db.execute(
                "INSERT INTO batch_jobs (scope, provider, input_file, status, requests, texts,"
                " tokens, cost, created_at, updated_at) VALUES (?, ?, ?, 'uploaded', ?, ?, ?,"
                " ?, ?, ?)", (scope, provider, input_file, len(requests),
                             sum(len(r) for r in requests), tokens, cost, now, now)).lastrowid
            self._db.executemany(
                "INSERT INTO batch_texts (key, job, request, row) VALUES (?, ?, ?, ?)",
                [(key, seq, index, row) for index, keys in enumerate(requests)
                 for row, key in enumerate(keys)])
        job = self.job(int(seq or 0))
        if job is None:
            raise StateError(f"The batch job just recorded in {self._path} cannot be read.")
        return job

    def job(self, seq: int) -> JobRow | None:
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM batch_jobs WHERE seq = ?",
                               (seq,)).fetchone()
        return _row(row) if row else None

    def jobs(self, *, open_only: bool = False) -> list[JobRow]:
        where = f" WHERE status IN ({', '.join('?' * len(OPEN))})" if open_only else ""
        rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM batch_jobs{where} "
                                "ORDER BY seq", OPEN if open_only else ()).fetchall()
        return [_row(r) for r in rows]

    def requests(self, job: JobRow) -> dict[str, list[bytes]]:
        """Each request's keys in order, by custom_id."""
        out: dict[str, list[bytes]] = {}
        for request, key in self._db.execute(
                "SELECT request, key FROM batch_texts WHERE job = ? ORDER BY request, row",
                (job.seq,)):
            out.setdefault(custom_id(request), []).append(key)
        return out

    def update(self, seq: int, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self._db.execute(f"UPDATE batch_jobs SET {assignments} WHERE seq = ?",
                         (*fields.values(), seq))

    def close_job(self, job: JobRow, *, status: str, collected: int,
                  unanswered: Sequence[bytes], error: str | None = None,
                  attempt: bool = True) -> None:
        """The job is over: its answers are in the cache; the keys it did not answer go back
        to be sent again (and the scan of its scope is to be done again). `attempt`: the
        job ran and left them unanswered (counted against MAX_ATTEMPTS); not when it was
        refused or failed as a whole."""
        with transaction(self._db):
            for start in range(0, len(unanswered), 500):
                part = list(unanswered[start:start + 500])
                self._db.execute(f"DELETE FROM batch_texts WHERE job = ? AND key IN "
                                 f"({', '.join('?' * len(part))})", (job.seq, *part))
            self._db.executemany(
                "INSERT INTO batch_failures (key, attempts) VALUES (?, 1) ON CONFLICT (key) "
                "DO UPDATE SET attempts = attempts + 1",
                [(key,) for key in unanswered] if attempt else [])
            if unanswered:
                self._db.execute("UPDATE batch_scans SET finished = 0 WHERE scope = ?",
                                 (job.scope,))
            self.update(job.seq, status=status, collected=collected, resent=len(unanswered),
                        error=error)

    def scanned(self, scope: str) -> bool:
        """Whether every text of `scope` went into a job (or was cached) since anything was
        left to send again."""
        row = self._db.execute("SELECT finished FROM batch_scans WHERE scope = ?",
                               (scope,)).fetchone()
        return bool(row and row[0])

    def mark_scanned(self, scope: str, finished: bool) -> None:
        self._db.execute("INSERT OR REPLACE INTO batch_scans (scope, finished) VALUES (?, ?)",
                         (scope, int(finished)))


def _row(row: Sequence[Any]) -> JobRow:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["files_deleted"] = bool(data["files_deleted"])
    return JobRow(**data)
