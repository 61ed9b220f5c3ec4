"""The `migrator` command line: `shell.py` holds the group, the shared options and the
error handling; `commands.py` the commands, `replacing.py` the alias moves and removals,
each a thin layer over one library function."""

from __future__ import annotations

from . import commands, replacing  # noqa: F401  (registers every command on the group)
from .shell import cli, main

__all__ = ["cli", "main"]
