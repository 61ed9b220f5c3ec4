"""What `migrate()` returns: per-collection outcomes and run totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catchup import SyncStats
from .embedding.sizing import DimsDecision
from .pipeline import Stats
from .verification.checks import VerificationReport

__all__ = ["CollectionResult", "MigrationResult"]


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
