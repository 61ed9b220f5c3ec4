"""Retrieval metrics and exact nearest-neighbour search, shared by `verify` and `compare`.

The metrics follow BEIR / trec_eval: graded gains count linearly in nDCG, a query is scored
on the ranked list it got (fewer than k results simply score lower), and a query with no
relevant document scores 0 (callers leave such queries out of averages and say so).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["mrr_at_k", "ndcg_at_k", "normalized", "overlap_at_k", "recall_at_k", "top_k"]


def recall_at_k(retrieved: Sequence[Any], relevant: Iterable[Any], k: int) -> float:
    """Share of the relevant items found in the first k retrieved (0 when none relevant)."""
    wanted = set(relevant)
    if not wanted:
        return 0.0
    return len(wanted & set(retrieved[:k])) / len(wanted)


def ndcg_at_k(retrieved: Sequence[Any], gains: dict[Any, float], k: int) -> float:
    """nDCG@k with graded gains (BEIR/trec_eval style: gain / log2(rank + 1))."""
    dcg = sum(gains.get(item, 0.0) / math.log2(rank + 2)
              for rank, item in enumerate(retrieved[:k]))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(retrieved: Sequence[Any], relevant: Iterable[Any], k: int) -> float:
    """1 / rank of the first relevant item within the first k, else 0."""
    wanted = set(relevant)
    for rank, item in enumerate(retrieved[:k]):
        if item in wanted:
            return 1.0 / (rank + 1)
    return 0.0


def overlap_at_k(a: Sequence[Any], b: Sequence[Any], k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k."""
    return len(set(a[:k]) & set(b[:k])) / k if k else 0.0


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero): cosine becomes a dot product."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def top_k(queries: np.ndarray, docs: np.ndarray, k: int, *, block: int = 256) -> np.ndarray:
    """Exact top-k document rows for every query row by dot product, best first.

    Deterministic: equal scores are ordered by document row, including ties that straddle
    the k-th place, so a rerun gives the same lists. Fewer than k documents give shorter rows.
    """
    k = min(k, docs.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    if k == 0:
        return out
    for start in range(0, queries.shape[0], block):
        scores = queries[start:start + block] @ docs.T
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
        for row, line in enumerate(scores):
            candidates = np.flatnonzero(line >= kth[row])
            order = np.lexsort((candidates, -line[candidates]))  # score desc, then row asc
            out[start + row] = candidates[order[:k]]
    return out
