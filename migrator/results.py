"""What `migrate()` returns: per-collection outcomes and run totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catchup import SyncStats
from .embedding.sizing import DimsDecision
from .errors import DataError, InputTooLong, MigratorError, MissingText, VerificationFailed
from .jobs import Job
from .pipeline import Stats
from .settings import Settings
from .verification.checks import VerificationReport

__all__ = ["CollectionResult", "MigrationResult", "problem_of", "raise_problems"]


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
    write_mode: str = "upsert"
    source_count: int = 0
    target_count: int = 0
    skipped: int = 0
    too_long: list[Any] = field(default_factory=list)
    skip_file: str | None = None
    first_skipped: list[Any] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    sync: SyncStats | None = None
    verification: VerificationReport | None = None
    forced: bool = False
    dropped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__
                if k not in ("stats", "sync", "verification")}
        data["vector"] = self.vector or "(unnamed)"
        data["stats"] = self.stats.to_dict()
        data["sync"] = self.sync.to_dict() if self.sync else None
        data["verification"] = self.verification.to_dict() if self.verification else None
        return data


@dataclass
class MigrationResult:
    """The outcome of `migrate()`: per-collection counts plus run totals."""

    provider: str
    model: str
    dims: int
    collections: list[CollectionResult]
    seconds: float
    cost: float | None
    price_known: bool
    dims_decision: DimsDecision | None = None
    warnings: list[str] = field(default_factory=list)
    cost_saved: float | None = None
    probe_tokens: int = 0
    provider_metrics: dict[str, Any] | None = None  # requests, 429s, waits, latency

    @property
    def tokens(self) -> int:
        """Tokens paid for in this run: the probe's and every collection's."""
        return self.probe_tokens + sum(c.stats.tokens for c in self.collections)

    @property
    def written(self) -> int:
        return sum(c.stats.written for c in self.collections)

    @property
    def points_per_second(self) -> float:
        done = sum(c.stats.written - c.resumed_written for c in self.collections)
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
            "probe_tokens": self.probe_tokens,
            "tokens_estimated": any(c.stats.tokens_estimated for c in self.collections),
            "cost_usd": self.cost,
            "cache_hits": sum(c.stats.cached for c in self.collections),
            "tokens_saved": sum(c.stats.tokens_saved for c in self.collections),
            "cost_saved_usd": self.cost_saved,
            "provider_metrics": self.provider_metrics,
            "requests": sum(c.stats.requests for c in self.collections),
            "retries": sum(c.stats.retries for c in self.collections),
            "collections": [c.to_dict() for c in self.collections],
        }


def problem_of(job: Job, result: CollectionResult, settings: Settings) -> MigratorError | None:
    """What stops a collection before any alias moves: texts over the limit under
    `long_input: fail`, points without text under `missing_text: fail`, or counts that do
    not add up; None when it may go on."""
    if result.too_long and settings.provider.long_input == "fail":
        shown = ", ".join(repr(i) for i in result.too_long[:10])
        limit = settings.provider.model
        return InputTooLong(
            f"{len(result.too_long)} point(s) of {job.config.name!r} have a text longer than "
            f"{limit} accepts: {shown}; they were not sent. The list is in {result.skip_file}. "
            "Set provider.long_input to truncate (keep the start) or chunk-mean (embed the "
            "pieces and average them), or shorten those texts. No alias was moved.")
    missing = result.skipped - len(result.too_long)
    if missing and settings.migration.missing_text == "fail":
        shown = ", ".join(repr(i) for i in result.first_skipped)
        more = (f" and {missing - len(result.first_skipped)} more"
                if missing > len(result.first_skipped) else "")
        return MissingText(
            f"{missing} point(s) of {job.config.name!r} have no text in "
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
