"""How `migrator status` reads: the aliases, each migration's row (phase, progress, what
its points cost, checkpoint, verification, error), the earlier runs apart, the alias moves,
the vectors migrations wrote, and batch mode's jobs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .report import table
from .wording import money, shortened, vector_label

__all__ = ["ERROR_WIDTH", "JOB_ERROR_WIDTH", "status"]

# an error's characters in a table; a longer one is shown in full below it
ERROR_WIDTH = 60
JOB_ERROR_WIDTH = 40


def status(result: Any) -> str:
    lines = [f"Aliases in {result.location}:"]
    lines += [f"  {alias} -> {collection}" for alias, collection in sorted(
        result.aliases.items())] or ["  none"]
    lines.append("")
    if not result.migrations:
        lines.append(f"No migrations recorded in {result.state_dir or 'the state directory'}.")
        return "\n".join(lines + _batch_jobs(result.batch_jobs))
    rows = []
    for m in result.migrations:
        counters = m.counters
        # points in the target: written so far, or what the last count found once written
        points = m.held if m.finished and m.held is not None else counters.get("written", 0)
        progress = f"{points:,}/{m.total:,}" if m.total else f"{points:,}"
        verified = "-" if not m.verification else (
            "passed" if m.verification.get("passed") else "failed")
        target = f"{m.target} (vector {m.new_vector})" if m.in_place else m.target
        phase = _phase(m, result.aliases, result.deleted, result.elsewhere.get(m.id))
        rows.append((m.source, target, f"{m.model} ({m.dims})", phase, progress,
                     f"{'~' if counters.get('tokens_estimated') else ''}"
                     f"{counters.get('tokens', 0):,}", f"{counters.get('cached', 0):,}",
                     "end" if m.finished else _checkpoint(m.checkpoint), verified,
                     _cut(m.error)))
    lines.append(table(["source", "target", "model", "phase", "points", "points' tokens",
                        "from cache", "checkpoint", "verified", "error"], rows))
    if any(m.counters.get("tokens_estimated") for m in result.migrations):
        lines.append("~ estimated: the provider did not report the tokens it billed.")
    if result.history:
        lines += ["", "Earlier runs, superseded by the rows above:"]
        lines.append(table(["source", "target", "model", "phase", "error"], [
            (m.source, m.target, f"{m.model} ({m.dims})", str(m.phase), _cut(m.error))
            for m in result.history]))
    cut = [m for m in [*result.migrations, *result.history]
           if m.error and len(m.error) > ERROR_WIDTH]
    if cut:
        lines += ["", "Errors in full:"]
        lines += [f"  {m.source} -> {m.target} ({m.phase}): {m.error}" for m in cut]
    if result.alias_history:
        lines += ["", "Alias moves:"]
        lines += [f"  {h['alias']}: {h['from'] or '(new)'} -> {h['to']}"
                  + (" (forced)" if h["forced"] else "") for h in result.alias_history]
    for collection, vectors in result.vectors.items():
        shown = ", ".join(vector_label(name) + (f" (written by {by[:12]})" if by else "")
                          for name, by in vectors.items())
        lines.append(f"Vectors of {collection!r}: {shown}")
    return "\n".join(lines + _batch_jobs(result.batch_jobs))


def _phase(migration: Any, aliases: dict[str, str], deleted: set[str],
           elsewhere: str | None) -> str:
    """The phase, and what changed since: the target deleted, or the alias the migration
    moved moved elsewhere (a rollback, a later swap); or the store the target is in, when
    that is not the one shown."""
    if elsewhere is not None:
        return f"{migration.phase} (target in {elsewhere.partition(':')[2]})"
    if migration.target in deleted:
        return f"{migration.phase} (target deleted)"
    alias = migration.alias
    if migration.phase == "swapped" and alias and aliases.get(alias) != migration.target:
        now = aliases.get(alias)
        return (f"swapped (alias {alias!r} " + (f"moved to {now!r} since)" if now else
                                                 "removed since)"))
    return str(migration.phase)


def _batch_jobs(jobs: Sequence[Any]) -> list[str]:
    if not jobs:
        return []
    return ["", "Batch jobs (batch mode):", table(
        ["job", "source", "batch", "status", "texts", "cached", "sent again", "cost",
         "error"],
        [(j.seq, j.scope, j.batch_id or "(not created)", j.status, f"{j.texts:,}",
          f"{j.collected:,}", f"{j.resent:,}", money(j.cost), _cut(j.error, JOB_ERROR_WIDTH))
         for j in jobs])] + [f"  job {j.seq}: {j.error}" for j in jobs
                             if j.error and len(j.error) > JOB_ERROR_WIDTH]


def _cut(error: str | None, width: int = ERROR_WIDTH) -> str:
    """An error as a table shows it: its start, marked as cut when it is longer."""
    return shortened(error, width) if error else ""


def _checkpoint(offset: Any) -> str:
    return "-" if offset is None else json.dumps(offset)
