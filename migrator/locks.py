"""Advisory locks on files (`flock`), which the system drops with the process that held
them, even one killed with `kill -9`: nothing is ever left behind to block the next run.
On Windows, where `flock` does not exist, they hold nothing."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.platform != "win32":
    import fcntl

__all__ = ["FileLock"]


class FileLock:
    """A lock on `path` (created if missing), shared or exclusive, held until `close`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a") if sys.platform != "win32" else None

    def take(self, *, exclusive: bool, wait: bool) -> bool:
        """Take (or convert to) a shared or an exclusive lock; False, without waiting, when
        `wait` is false and another holder is in the way."""
        if self._file is None:
            return True
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(self._file, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases its lock
            self._file = None
