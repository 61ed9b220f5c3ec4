"""What `migrate()` returns: per-collection outcomes and run totals."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batching import BatchReport
from .catchup import SyncStats
from .embedding.sizing import DimsDecision
from .embedding.usage import Budget, PhaseUsage, Usage
from .errors import (
    BudgetExceeded,
    DataError,
    InputTooLong,
    MigratorError,
    MissingText,
    ProviderError,
    StoreError,
    VerificationFailed,
)
from .jobs import Job
from .pipeline import TOO_LONG, Stats
from .settings import Settings
from .state import State
from .store import QdrantStore
from .verification.checks import VerificationReport
from .wording import counted, has, money

__all__ = ["Bill", "CollectionResult", "count_check_inputs", "MigrationResult", "problem_of",
           "over_budget_error", "raise_problems", "stopped_error", "where_it_stopped"]


@dataclass
class CollectionResult:
    """What happened to one collection."""

    source: str
    source_collection: str
    target: str
    vector: str
    text: str
    migration_id: str = ""
    alias: str | None = None
    previous_alias_target: str | None = None
    created: bool = False
    resumed: bool = False
    resumed_written: int = 0
    swapped: bool = False
    write_mode: str | None = None  # the backfill's; None when none ran in this migration
    source_count: int = 0
    target_count: int = 0
    skipped: int = 0
    too_long: list[Any] = field(default_factory=list)
    skip_file: str | None = None
    using: str | None = None  # in place: what the application must change to query it
    first_skipped: list[Any] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    sync: SyncStats | None = None
    verification: VerificationReport | None = None
    forced: bool = False
    dropped: str | None = None
    kept: str | None = None  # why --drop-old left the old collection: what still needs it

    @property
    def written_now(self) -> int:
        """Points this run wrote: the backfill's beyond the checkpoint it resumed from, and
        the catch-up's."""
        sync = self.sync
        caught_up = sync.new + sync.changed + sync.updated if sync is not None else 0
        return self.stats.written - self.resumed_written + caught_up

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__
                if k not in ("stats", "sync", "verification")}
        data["vector"] = self.vector or "(unnamed)"
        data["stats"] = self.stats.to_dict()
        data["sync"] = self.sync.to_dict() if self.sync else None
        data["verification"] = self.verification.to_dict() if self.verification else None
        return data


@dataclass
class Bill:
    """What one run asked of the provider, per phase (probe, backfill, catch-up,
    verification), as the meter on the provider counted it: requests answered, texts in
    them, tokens, cost; the texts the cache answered instead. `http` is the endpoint's own
    figures (attempts, 429s, retries by cause, latency), None for a provider without HTTP."""

    usage: Usage = field(default_factory=Usage)
    price_per_mtok: float | None = None
    http: dict[str, Any] | None = None

    @property
    def total(self) -> PhaseUsage:
        return self.usage.total

    @property
    def cost(self) -> float | None:
        return self.usage.cost(self.price_per_mtok)

    def to_dict(self) -> dict[str, Any]:
        return {**self.usage.to_dict(self.price_per_mtok), "http": self.http}

    def paid(self, *, cached: bool) -> str:
        """What a run that stopped paid for, and whether the next run pays for it again."""
        total = self.total
        if not total.texts:
            return "This run paid for no embeddings."
        tokens = f"{'~' if total.tokens_estimated else ''}{total.tokens:,} tokens"
        price = self.cost
        kept = ("they are in the cache: the next run does not pay for them again" if cached
                else "the cache is off (--no-cache): those not written before the last "
                     "checkpoint are paid for again")
        return (f"This run paid for {counted(total.texts, 'text')} in "
                f"{counted(total.requests, 'request')} ({tokens}"
                f"{f', {money(price)}' if price is not None else ''}); {kept}.")


@dataclass
class MigrationResult:
    """The outcome of `migrate()`: per-collection counts (for the whole migration, across
    resumes) and this run's bill."""

    provider: str
    model: str
    dims: int
    collections: list[CollectionResult]
    seconds: float
    bill: Bill = field(default_factory=Bill)
    dims_decision: DimsDecision | None = None
    warnings: list[str] = field(default_factory=list)
    batch: BatchReport | None = None  # in batch mode

    @property
    def tokens(self) -> int:
        """Tokens paid for in this run, every phase."""
        return self.bill.total.tokens

    @property
    def cost(self) -> float | None:
        """What this run cost; None when the model's price is unknown."""
        return self.bill.cost

    @property
    def written(self) -> int:
        return sum(c.stats.written for c in self.collections)

    @property
    def points_per_second(self) -> float:
        """Points this run wrote (backfill and catch-up) over this run's time."""
        done = sum(c.written_now for c in self.collections)
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "dims": self.dims,
            "dims_decision": self.dims_decision.consequences() if self.dims_decision else None,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "points_per_second": round(self.points_per_second, 1),
            "tokens": self.tokens,
            "tokens_estimated": self.bill.total.tokens_estimated,
            "cost_usd": self.cost,
            "bill": self.bill.to_dict(),
            "collections": [c.to_dict() for c in self.collections],
            "batch": self.batch.to_dict() if self.batch is not None else None,
        }


def problem_of(job: Job, result: CollectionResult, settings: Settings) -> MigratorError | None:
    """What stops a collection before any alias moves: texts over the limit under
    `long_input: fail`, points without text under `missing_text: fail`, or counts that do
    not add up; None when it may go on."""
    if result.too_long and settings.provider.long_input == "fail":
        shown = ", ".join(repr(i) for i in result.too_long[:10])
        limit = settings.provider.model
        return InputTooLong(
            f"{counted(len(result.too_long), 'point')} of {job.config.name!r} "
            f"{has(len(result.too_long))} a text longer than "
            f"{limit} accepts: {shown}; {has(len(result.too_long), 'it was', 'they were')} "
            f"not sent. The list is in {result.skip_file}. "
            "Set provider.long_input to truncate (keep the start) or chunk-mean (embed the "
            "pieces and average them), or shorten those texts. No alias was moved.")
    missing = result.skipped - len(result.too_long)
    if missing and settings.migration.missing_text == "fail":
        shown = ", ".join(repr(i) for i in result.first_skipped)
        more = (f" and {missing - len(result.first_skipped)} more"
                if missing > len(result.first_skipped) else "")
        return MissingText(
            f"{counted(missing, 'point')} of {job.config.name!r} {has(missing)} no text in "
            f"{job.text.describe()}: {shown}{more}. The full list is in {result.skip_file}. "
            "Fix those payloads, point text_field/text_template at the text, or run again with "
            "--missing-text skip to migrate without them. No alias was moved.",
            point_ids=list(result.first_skipped),
            skip_file=result.skip_file,
        )
    expected = result.source_count - result.skipped
    if result.target_count != expected:
        return VerificationFailed(
            f"Target {job.target!r} holds {result.target_count} points, but {expected} were "
            f"expected ({result.source_count} in {job.schema.name!r}, {result.skipped} without "
            "text). The source may be changing right now: run `migrator sync`, or the same "
            "command again. No alias was moved."
        )
    return None


def raise_problems(problems: list[MigratorError]) -> None:
    """Raise the one problem, or one error that holds them all."""
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    kind = VerificationFailed if all(isinstance(p, VerificationFailed) for p in problems) \
        else DataError
    raise kind(" ".join(str(p) for p in problems))


def count_check_inputs(job: Job, result: CollectionResult, state: State, source: QdrantStore,
                       target: QdrantStore, state_dir: Path) -> None:
    """The counts the check compares, and the points left out (listed in a file)."""
    skipped = state.skipped(job.record.id)
    result.skipped = len(skipped)
    result.too_long = [point for point, reason in skipped if reason.startswith(TOO_LONG)]
    result.first_skipped = [point for point, reason in skipped
                            if not reason.startswith(TOO_LONG)][:10]
    if skipped:
        path = state_dir / f"{job.target}.skipped.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for point, reason in skipped:
                handle.write(json.dumps({"collection": job.schema.name, "id": point,
                                         "reason": reason}) + "\n")
        result.skip_file = str(path)
    result.source_count = source.count(job.schema.name)
    result.target_count = target.count_with(job.target, job.target_vector) if (
        job.in_place) else target.count(job.target)
    state.update(job.record.id, total=result.source_count, held=result.target_count)


def stopped_error(exc: ProviderError | StoreError, result: CollectionResult,
                  stats: Stats, paid: str) -> MigratorError:
    """The same error, saying what the run left behind, what it `paid` (`Bill.paid`) and
    how to go on."""
    message = (
        f"{exc} The migration of {result.source!r} into {result.target!r} stopped with "
        f"{stats.written:,} of {result.source_count:,} points written; no alias was moved. "
        f"{paid} Fix the cause and run the same command again: it resumes from the last "
        "checkpoint."
    )
    if isinstance(exc, ProviderError):
        return type(exc)(message, provider=exc.provider, status=exc.status)
    return type(exc)(message)


def where_it_stopped(result: CollectionResult, stats: Stats, *, catch_up: bool) -> str:
    """What a stopped run left (Ctrl-C), and how to go on."""
    done = (f"the catch-up of {result.source!r} into {result.target!r} stopped after "
            f"{stats.written:,} changed points (the backfill is complete; the next run catches "
            "up again)" if catch_up else
            f"{stats.written:,} of {result.source_count:,} points of {result.source!r} are "
            f"written into {result.target!r} and checkpointed")
    return f"{done}; no alias was moved. Run the same command again to resume from there."


def over_budget_error(budget: Budget, result: CollectionResult, stats: Stats, *,
                      catch_up: bool) -> BudgetExceeded:
    """The run stopped before its spend would pass --max-cost."""
    where = ("the catch-up stopped (the backfill is complete)" if catch_up else
             f"{stats.written:,} of {result.source_count:,} points of {result.source!r} are "
             f"written into {result.target!r} and checkpointed")
    return BudgetExceeded(
        f"Stopped before the next request would take this run past --max-cost "
        f"{money(budget.limit)}: it spent {money(budget.spent)}; {where}; no alias was moved. "
        "Run again with a higher --max-cost (or none) to resume from there; nothing paid "
        "for is paid again.", spent=budget.spent)
