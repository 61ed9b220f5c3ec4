"""Labelled quality: nDCG@10 and recall@k of the source and the target on queries whose
relevant documents are known, side by side, and the drop.

Queries come as a BEIR directory (`queries.jsonl` + `qrels/test.tsv`, graded) or as JSONL of
`{"query": ..., "relevant_ids": [...]}` or `{"query": ..., "relevant": {id: gain}}`, read
by the same functions as `compare`'s labels. Document ids are point ids, or the ids `migrator
ingest` derives from them (integers and UUIDs kept, other strings hashed to a UUID).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..embedding.base import Embedder
from ..errors import ConfigError
from ..metrics import ndcg_at_k, recall_at_k
from ..records import Query, point_id, read_beir_queries, read_labels, read_qrels
from ..store import QdrantStore
from .checks import Check, embed_queries

__all__ = ["labelled_check", "load_queries", "NDCG_K"]

NDCG_K = 10


def load_queries(path: Path, limit: int) -> list[Query]:
    """Labelled queries from a BEIR directory or a JSONL file (either dialect of
    `datasets.read_labels`): the one reader `compare --labels` uses too."""
    if not path.is_dir():
        return read_labels(path, limit=limit)
    qrels = next((p for p in (path / "qrels" / "test.tsv", path / "qrels.tsv") if p.is_file()),
                 None)
    if not (path / "queries.jsonl").is_file() or qrels is None:
        raise ConfigError(f"{path} is not a BEIR directory: it needs queries.jsonl and "
                          "qrels/test.tsv.")
    return read_beir_queries(path / "queries.jsonl", read_qrels(qrels))[:limit]


async def labelled_check(queries: list[Query], *, k: int, max_drop: float,
                         source: tuple[QdrantStore, str, str, Embedder],
                         target: tuple[QdrantStore, str, str, Embedder],
                         long_input: str = "truncate", concurrency: int = 1) -> Check:
    """Score both sides; the check fails when the target's nDCG@10 is more than `max_drop`
    below the source's. Queries are prepared and sent as verification's own are."""
    src = await _score(queries, k, *source, long_input, concurrency)
    dst = await _score(queries, k, *target, long_input, concurrency)
    drop = src["ndcg"] - dst["ndcg"]
    return Check(
        "labelled nDCG@10", round(dst["ndcg"], 4), round(src["ndcg"] - max_drop, 4),
        f"{len(queries)} labelled queries: nDCG@10 {src['ndcg']:.3f} -> {dst['ndcg']:.3f} "
        f"(drop {drop:+.3f}, allowed {max_drop:.3f}); recall@{k} {src['recall']:.3f} -> "
        f"{dst['recall']:.3f}",
        {"queries": len(queries), "source": src, "target": dst, "drop": round(drop, 4)})


async def _score(queries: list[Query], k: int, store: QdrantStore, collection: str,
                 vector: str, embedder: Embedder, long_input: str,
                 concurrency: int) -> dict[str, float]:
    ndcgs, recalls = [], []
    vectors = await embed_queries(embedder, [q.text for q in queries], long_input,
                                  concurrency=concurrency)
    for query, vec in zip(queries, vectors, strict=True):
        hits = [h[0] for h in store.search(collection, vec, vector=vector,
                                           limit=max(k, NDCG_K), with_payload=False)]
        # document ids as `migrator ingest` made point ids of them
        gains = {point_id(doc, 0): gain for doc, gain in query.gains.items()}
        ndcgs.append(ndcg_at_k(hits, gains, NDCG_K))
        recalls.append(recall_at_k(hits, gains, k))
    return {"ndcg": float(np.mean(ndcgs)) if ndcgs else 0.0,
            "recall": float(np.mean(recalls)) if recalls else 0.0}
