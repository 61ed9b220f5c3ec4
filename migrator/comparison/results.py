"""What `compare()` returns: every figure with how it was obtained, per candidate and for
the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .candidates import Candidate
from .datasets import Dataset

__all__ = ["CandidateResult", "CompareResult", "DEPTH", "Embedded", "Figure", "Method",
           "MILLION", "ProgressCallback", "SCHEMA"]

SCHEMA = "migrator.compare/1"
DEPTH = 100  # ranked documents kept per query: enough for recall@100
MILLION = 1_000_000
Method = Literal["measured", "estimated", "catalog", "computed"]
ProgressCallback = Callable[[str, int, int], None]  # candidate, texts done, texts in all


@dataclass(frozen=True)
class Figure:
    """A number and how it was obtained. `value` None: not available, `note` says why."""

    value: float | None
    method: Method
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "method": self.method, "note": self.note}


@dataclass
class CandidateResult:
    candidate: Candidate
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    dims: int | None = None
    quality: dict[str, Figure] = field(default_factory=dict)
    latency_ms: dict[str, Figure] = field(default_factory=dict)
    throughput: dict[str, Figure] = field(default_factory=dict)
    tokens: dict[str, Figure] = field(default_factory=dict)
    cost: dict[str, Figure] = field(default_factory=dict)
    storage: dict[str, Figure] = field(default_factory=dict)
    requests: dict[str, Figure] = field(default_factory=dict)
    texts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # a server's limit below the config's
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, per request
    ranked: np.ndarray | None = field(default=None, repr=False)  # document rows per query

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        def figures(group: dict[str, Figure]) -> dict[str, Any]:
            return {key: fig.to_dict() for key, fig in group.items()}

        return {**self.candidate.describe(), "status": self.status, "error": self.error,
                "dims": self.dims, "quality": figures(self.quality),
                "latency_ms": figures(self.latency_ms), "throughput": figures(self.throughput),
                "tokens": figures(self.tokens), "cost": figures(self.cost),
                "storage_per_1m_vectors": figures(self.storage),
                "requests": figures(self.requests), "texts": dict(self.texts),
                "seconds": round(self.seconds, 3), "warnings": list(self.warnings)}


@dataclass
class CompareResult:
    dataset: Dataset
    candidates: list[CandidateResult]
    reference: str
    collection_size: int | None
    collection_label: str | None
    environment: dict[str, Any]

    @property
    def failed(self) -> list[CandidateResult]:
        return [c for c in self.candidates if not c.ok]

    @property
    def quality_keys(self) -> list[str]:
        if self.dataset.labelled:
            return ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
        return ["self_recall@10", "agreement@10"]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "dataset": self.dataset.to_dict(), "reference": self.reference,
                "collection_size": self.collection_size,
                "collection_label": self.collection_label, "environment": self.environment,
                "candidates": [c.to_dict() for c in self.candidates]}


@dataclass
class Embedded:
    vectors: np.ndarray
    tokens_paid: int = 0
    tokens_cached: int = 0
    estimated: bool = False
    cached: int = 0
    over_limit: int = 0  # texts cut or chunked (by us or by the model itself)
    call_latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.tokens_paid + self.tokens_cached
