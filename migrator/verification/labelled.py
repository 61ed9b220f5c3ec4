"""Labelled quality: nDCG@10 and recall@k of the source and the target on queries whose
relevant documents are known, side by side, and the drop.

Queries come as a BEIR directory (`queries.jsonl` + `qrels/test.tsv`, graded) or as JSONL of
`{"query": ..., "relevant_ids": [...]}`. Document ids are point ids, or the ids `migrator
ingest` derives from them (integers and UUIDs kept, other strings hashed to a UUID).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import read_qrels
from ..embedding.base import Embedder
from ..errors import ConfigError, DataError
from ..ingestion import point_id, read_records
from ..metrics import ndcg_at_k, recall_at_k
from ..store import PointId, QdrantStore
from .checks import Check, embed_queries

__all__ = ["labelled_check", "LabelledQuery", "load_queries", "NDCG_K"]

NDCG_K = 10


@dataclass
class LabelledQuery:
    text: str
    gains: dict[PointId, float]


def load_queries(path: Path, limit: int) -> list[LabelledQuery]:
    """Queries with relevant point ids and gains, from a BEIR directory or JSONL."""
    if path.is_dir():
        return _beir(path, limit)
    if not path.is_file():
        raise ConfigError(f"verify.queries {path} does not exist; give a BEIR directory or a "
                          "JSONL file of {\"query\", \"relevant_ids\"}.")
    queries = []
    for number, row in enumerate(read_records(path, "jsonl"), start=1):
        try:
            gains = {point_id(i, 0): 1.0 for i in row["relevant_ids"]}
            queries.append(LabelledQuery(str(row["query"]), gains))
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: record {number} is not a JSON object with \"query\" and "
                            f"\"relevant_ids\" ({exc}).") from exc
        if len(queries) >= limit:
            break
    return queries


def _beir(directory: Path, limit: int) -> list[LabelledQuery]:
    qrels_path = next((p for p in (directory / "qrels" / "test.tsv", directory / "qrels.tsv")
                       if p.is_file()), None)
    if not (directory / "queries.jsonl").is_file() or qrels_path is None:
        raise ConfigError(f"{directory} is not a BEIR directory: it needs queries.jsonl and "
                          "qrels/test.tsv.")
    gains = {query: {point_id(doc, 0): score for doc, score in labels.items()}
             for query, labels in read_qrels(qrels_path).items()}
    queries = []
    with (directory / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                if row["_id"] in gains:
                    queries.append(LabelledQuery(row["text"], gains[row["_id"]]))
                    if len(queries) >= limit:
                        break
    return queries


async def labelled_check(queries: list[LabelledQuery], *, k: int, max_drop: float,
                         source: tuple[QdrantStore, str, str, Embedder],
                         target: tuple[QdrantStore, str, str, Embedder],
                         long_input: str = "truncate") -> Check:
    """Score both sides; the check fails when the target's nDCG@10 is more than `max_drop`
    below the source's. Queries are prepared as verification prepares its own."""
    src = await _score(queries, k, *source, long_input)
    dst = await _score(queries, k, *target, long_input)
    drop = src["ndcg"] - dst["ndcg"]
    return Check(
        "labelled nDCG@10", round(dst["ndcg"], 4), round(src["ndcg"] - max_drop, 4),
        f"{len(queries)} labelled queries: nDCG@10 {src['ndcg']:.3f} -> {dst['ndcg']:.3f} "
        f"(drop {drop:+.3f}, allowed {max_drop:.3f}); recall@{k} {src['recall']:.3f} -> "
        f"{dst['recall']:.3f}",
        {"queries": len(queries), "source": src, "target": dst, "drop": round(drop, 4)})


async def _score(queries: list[LabelledQuery], k: int, store: QdrantStore, collection: str,
                 vector: str, embedder: Embedder, long_input: str) -> dict[str, float]:
    ndcgs, recalls = [], []
    vectors = await embed_queries(embedder, [q.text for q in queries], long_input)
    for query, vec in zip(queries, vectors, strict=True):
        hits = [h[0] for h in store.search(collection, vec, vector=vector,
                                           limit=max(k, NDCG_K), with_payload=False)]
        ndcgs.append(ndcg_at_k(hits, query.gains, NDCG_K))
        recalls.append(recall_at_k(hits, query.gains, k))
    return {"ndcg": float(np.mean(ndcgs)) if ndcgs else 0.0,
            "recall": float(np.mean(recalls)) if recalls else 0.0}
