"""Verification before a swap: does the new collection find what it should?

Checks on a seeded sample of points:
- self-retrieval recall@k: each sampled text, embedded as a *query* by the target model,
  must find its own point in the target's top k (catches a wrong text field, vectors
  attached to the wrong ids, truncation that broke the model);
- ANN recall@k: the target's HNSW search against exact search, for sampled target vectors.
  The embedded store searches exactly by construction: not applicable, never a perfect score;
- neighbour overlap@k: a point's top k in the source (by its source vector) against its
  top k in the target (by its target vector); informational unless a threshold is set,
  because different models legitimately disagree;
- integrity: counts add up, every sampled id exists in both, sampled vectors are sound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..embedding.base import Embedder
from ..embedding.tokens import combine, fit_all
from ..errors import SchemaMismatch
from ..interrupts import gather_or_cancel
from ..metrics import overlap_at_k
from ..settings import VerifySettings
from ..store import PointId, QdrantStore
from ..texts import TextSource
from ..wording import vector_label

__all__ = ["Check", "embed_queries", "Pair", "run_checks", "VerificationReport"]

# ---- report ------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    value: float | None  # None: not applicable
    threshold: float | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def applicable(self) -> bool:
        return self.value is not None

    @property
    def passed(self) -> bool:
        if self.threshold is None or self.value is None:
            return True
        return self.value >= self.threshold

    @property
    def status(self) -> str:
        if self.value is None:
            return "n/a"
        if self.threshold is None:
            return "info"
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "threshold": self.threshold,
                "status": self.status, "detail": self.detail, "data": self.data}


@dataclass
class VerificationReport:
    source: str
    target: str
    sample: int
    k: int
    checks: list[Check]
    readiness: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return f"verification of {self.target!r} passed"
        return "; ".join(f"{c.name} {c.value:.3f} < {c.threshold:.3f}" for c in self.failed
                         if c.value is not None and c.threshold is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "sample": self.sample,
                "k": self.k, "passed": self.passed, "readiness": self.readiness,
                "checks": [c.to_dict() for c in self.checks], "warnings": list(self.warnings)}


# ---- the checks ----------------------------------------------------------------------------


@dataclass
class Pair:
    """What a verification compares: a source and a target collection and their vectors."""

    source_store: QdrantStore
    source: str
    source_vector: str
    target_store: QdrantStore
    target: str
    target_vector: str
    expected_count: int | None = None  # source points minus the ones without text
    text: TextSource | None = None  # how texts are read from payloads (to spot duplicates)


async def run_checks(pair: Pair, sample: list[tuple[PointId, str]], embedder: Embedder,
                     settings: VerifySettings,
                     on_progress: Callable[[str], None] | None = None, *,
                     long_input: str = "fail", concurrency: int = 1) -> VerificationReport:
    """Run every check on `sample` ((id, text) pairs drawn from the source); texts over the
    model's limit are prepared under `long_input`, as the backfill prepared them, and sent
    `concurrency` requests at a time."""
    k = settings.k
    ids = [point_id for point_id, _ in sample]
    src = {p.id: p for p in pair.source_store.retrieve(pair.source, ids,
                                                        vectors=[pair.source_vector])}
    dst = {p.id: p for p in pair.target_store.retrieve(pair.target, ids,
                                                        vectors=[pair.target_vector])}
    searched = _searched(pair)
    checks = [_integrity(pair, sample, src, dst, searched)]
    present = [(i, t) for i, t in sample if i in dst]
    checks.append(await _self_retrieval(pair, present, embedder, k, settings.min_self_recall,
                                        long_input, concurrency, searched))
    checks.append(_ann_recall(pair, present, dst, k, settings.min_ann_recall))
    checks.append(_overlap(pair, present, src, dst, k, settings.min_overlap))
    return VerificationReport(pair.source, pair.target, len(sample), k, checks)


def _searched(pair: Pair) -> int:
    """The target's points that hold the vector searched (in place, the collection's points
    with the new vector)."""
    in_place = pair.target_store is pair.source_store and pair.target == pair.source
    return pair.target_store.count_with(pair.target, pair.target_vector) if in_place else (
        pair.target_store.count(pair.target))


def _integrity(pair: Pair, sample: list[tuple[PointId, str]], src: dict[Any, Any],
               dst: dict[Any, Any], count: int) -> Check:
    missing = [i for i, _ in sample if i not in dst]
    unsound = [i for i, p in dst.items() if not _sound(p.vectors.get(pair.target_vector))]
    problems = []
    if pair.expected_count is not None and count != pair.expected_count:
        problems.append(f"target holds {count} points, {pair.expected_count} expected")
    if missing:
        problems.append(f"{len(missing)} sampled points missing from the target "
                        f"({', '.join(map(str, missing[:10]))})")
    if unsound:
        problems.append(f"{len(unsound)} sampled vectors are empty or not finite "
                        f"({', '.join(map(str, unsound[:10]))})")
    lost = [i for i, _ in sample if i not in src]
    detail = "; ".join(problems) or (f"{count} points; all {len(sample)} sampled points "
                                      "present with sound vectors")
    return Check("integrity", 0.0 if problems else 1.0, 1.0, detail,
                 {"target_count": count, "expected_count": pair.expected_count,
                  "missing": missing[:100], "unsound": unsound[:100],
                  "gone_from_source": lost[:100]})


def _sound(vector: Any) -> bool:
    if vector is None:
        return False
    values = np.asarray(vector, dtype=np.float64)
    return values.size > 0 and bool(np.isfinite(values).all()) and bool(values.any())


async def _self_retrieval(pair: Pair, sample: list[tuple[PointId, str]], embedder: Embedder,
                          k: int, threshold: float | None, long_input: str,
                          concurrency: int, searched: int) -> Check:
    # a top k of more than half the points searched finds a point by chance: with k at or
    # above their number the check would pass any vectors at all
    asked, k = k, min(k, max(1, searched // 2))
    lowered = (f" (k lowered from {asked}: the target holds {searched} points, and a top k "
               "of more than half of them finds a point by chance)" if k < asked else "")
    if not sample:
        return Check(f"self-retrieval recall@{k}", 0.0, threshold, "no sampled point to test")
    queries = await embed_queries(embedder, [text for _, text in sample], long_input,
                                  concurrency=concurrency)
    _check_size(pair, queries.shape[1], embedder)
    found, misses = 0, []
    for (point_id, text), query in zip(sample, queries, strict=True):
        hits = pair.target_store.search(pair.target, query, vector=pair.target_vector,
                                        limit=k, with_payload=False)
        if any(hit_id == point_id for hit_id, _, _ in hits) or _duplicate_found(
                pair, query, text, k):
            found += 1
        else:
            misses.append(point_id)
    value = found / len(sample)
    return Check(f"self-retrieval recall@{k}", round(value, 4), threshold,
                 f"{found} of {len(sample)} sampled texts, embedded as queries, found their own "
                 f"point in the top {k}{lowered}", {"misses": misses[:100], "k": k})


def _check_size(pair: Pair, size: int, embedder: Embedder) -> None:
    """The model must produce vectors of the target's size, or no search can be run."""
    have = pair.target_store.describe(pair.target).vectors.get(pair.target_vector)
    if have is not None and have.size != size:
        label = vector_label(pair.target_vector)
        raise SchemaMismatch(
            f"{embedder.spec.provider} {embedder.spec.model} produces {size}-dimensional "
            f"vectors, but vector {label} of {pair.target!r} has size {have.size}: verify "
            "with the model and size the target was built with (--model, --dimensions).")


def _duplicate_found(pair: Pair, query: np.ndarray, text: str, k: int) -> bool:
    """Whether the top k holds another point with exactly this text. Duplicates have the
    very same vector, and which of them Qdrant lists first is arbitrary; different texts
    that merely score alike (a collapsed model) do not count."""
    if pair.text is None:
        return False
    hits = pair.target_store.search(pair.target, query, vector=pair.target_vector, limit=k)
    return any(pair.text.extract(payload)[0] == text for _, _, payload in hits)


async def embed_queries(embedder: Embedder, texts: list[str], long_input: str, *,
                        concurrency: int = 1) -> np.ndarray:
    """Query vectors, the texts prepared as the backfill prepared them (a query over the
    model's limit is cut at it where the backfill would have refused it), `concurrency`
    requests at a time, as the backfill sends them."""
    fitted = fit_all(texts, embedder, "truncate" if long_input == "fail" else long_input)
    if not fitted.unique:
        return np.empty((0, embedder.dims or 0), dtype=np.float32)
    slots = asyncio.Semaphore(concurrency)

    async def embedded(batch: list[str]) -> np.ndarray:
        async with slots:
            return (await embedder.embed(batch, kind="query")).vectors

    size = embedder.batch_size
    parts = await gather_or_cancel(*(embedded(fitted.unique[start:start + size])
                                     for start in range(0, len(fitted.unique), size)))
    return combine(np.vstack(parts), fitted.rows)


def _ann_recall(pair: Pair, sample: list[tuple[PointId, str]], dst: dict[Any, Any], k: int,
                threshold: float | None) -> Check:
    name = f"ANN recall@{k}"
    if pair.target_store.local:
        return Check(name, None, threshold, "not applicable: the embedded store searches "
                     "exactly, so there is no index to measure")
    recalls = []
    for point_id, _ in sample:
        vector = dst[point_id].vectors.get(pair.target_vector)
        approx = pair.target_store.search(pair.target, vector, vector=pair.target_vector,
                                          limit=k, with_payload=False)
        exact = pair.target_store.search(pair.target, vector, vector=pair.target_vector,
                                         limit=k, exact=True, with_payload=False)
        recalls.append(overlap_at_k([h[0] for h in approx], [h[0] for h in exact], k))
    value = float(np.mean(recalls)) if recalls else 0.0
    return Check(name, round(value, 4), threshold,
                 f"HNSW search against exact search for {len(recalls)} sampled vectors")


def _overlap(pair: Pair, sample: list[tuple[PointId, str]], src: dict[Any, Any],
             dst: dict[Any, Any], k: int, threshold: float | None) -> Check:
    overlaps = []
    for point_id, _ in sample:
        old = src.get(point_id)
        if old is None or old.vectors.get(pair.source_vector) is None:
            continue
        before = pair.source_store.search(pair.source, old.vectors[pair.source_vector],
                                          vector=pair.source_vector, limit=k + 1,
                                          with_payload=False)
        after = pair.target_store.search(pair.target, dst[point_id].vectors[pair.target_vector],
                                         vector=pair.target_vector, limit=k + 1,
                                         with_payload=False)
        overlaps.append(overlap_at_k([h[0] for h in before if h[0] != point_id],
                                     [h[0] for h in after if h[0] != point_id], k))
    value = round(float(np.mean(overlaps)), 4) if overlaps else None
    return Check(f"neighbour overlap@{k}", value, threshold,
                 f"top {k} neighbours shared between source and target, over "
                 f"{len(overlaps)} sampled points" + ("" if threshold is not None else
                                                       " (informational)"))
