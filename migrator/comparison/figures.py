"""The figures of a comparison: quality, latency, throughput, requests, tokens, cost,
storage and the environment, each with how it was obtained."""

from __future__ import annotations

import math
import platform
import sys
from datetime import datetime
from importlib import metadata
from typing import Any

import numpy as np

from ..embedding.usage import EndpointMetrics
from ..metrics import mrr_at_k, ndcg_at_k, overlap_at_k, recall_at_k
from .datasets import Dataset
from .results import DEPTH, MILLION, CandidateResult, Embedded, Figure, Method

__all__ = ["cost", "environment", "latency", "neighbours", "quality", "requests",
           "score_agreement", "storage", "throughput", "tokens"]


def quality(dataset: Dataset, ranked: np.ndarray) -> dict[str, Figure]:
    ids = dataset.doc_ids
    lists = [[ids[r] for r in row] for row in ranked]
    n = len(dataset.queries)
    if dataset.labelled:
        def mean(values: list[float]) -> float:
            return round(float(np.mean(values)), 4)

        scored = [(q, hits[:DEPTH]) for q, hits in zip(dataset.queries, lists, strict=True)]
        note = f"exact search, mean over {n} labelled queries"
        return {
            "ndcg@10": Figure(mean([ndcg_at_k(h, q.gains, 10) for q, h in scored]),
                              "measured", note),
            "recall@10": Figure(mean([recall_at_k(h, q.gains, 10) for q, h in scored]),
                                "measured", note),
            "recall@100": Figure(mean([recall_at_k(h, q.gains, 100) for q, h in scored]),
                                 "measured", note),
            "mrr@10": Figure(mean([mrr_at_k(h, q.gains, 10) for q, h in scored]),
                             "measured", note),
        }
    by_text: dict[str, set[str]] = {}
    for doc_id, text in zip(ids, dataset.doc_texts, strict=True):
        by_text.setdefault(text, set()).add(doc_id)
    found = [bool(by_text.get(q.text, {q.document}) & set(hits[:10]))
             for q, hits in zip(dataset.queries, lists, strict=True)]
    return {"self_recall@10": Figure(
        round(float(np.mean(found)), 4), "measured",
        f"share of {n} sampled documents, embedded as queries, found in their own top 10 "
        "(or a document with the same text)")}


def score_agreement(results: list[CandidateResult], dataset: Dataset, reference: str) -> None:
    """agreement@10: how much of each candidate's top 10 the reference's top 10 shares,
    per query; a query's own document (self-retrieval) is left out of both lists."""
    ref = next((r for r in results if r.name == reference and r.ok), None)
    for result in results:
        if not result.ok:
            continue
        if ref is None or ref.ranked is None or result.ranked is None:
            result.quality["agreement@10"] = Figure(
                None, "measured", f"the reference {reference} failed; nothing to agree with")
            continue
        values = [overlap_at_k(neighbours(dataset, q, mine), neighbours(dataset, q, theirs), 10)
                  for q, mine, theirs in zip(dataset.queries, result.ranked, ref.ranked,
                                             strict=True)]
        note = ("the reference itself" if result is ref else
                f"mean share of top 10 in common with {reference} over "
                f"{len(values)} queries")
        result.quality["agreement@10"] = Figure(round(float(np.mean(values)), 4),
                                                "measured", note)


def neighbours(dataset: Dataset, query: Any, ranked: np.ndarray) -> list[str]:
    ids = [dataset.doc_ids[r] for r in ranked]
    return [i for i in ids if i != query.document][:10]


def latency(latencies: list[float], per_request: bool, cached: int) -> dict[str, Figure]:
    what = "HTTP request" if per_request else "embedding call (in-process model)"
    if not latencies:
        note = (f"all {cached} texts came from the embedding cache; run with --no-cache to "
                "measure" if cached else "no request was made")
        return {q: Figure(None, "measured", note) for q in ("p50", "p95", "p99")}
    note = f"{len(latencies)} {what} latencies"
    if cached:
        note += f"; {cached} texts came from the cache and are not in them"
    return {f"p{q}": Figure(round(float(np.percentile(latencies, q)) * 1000, 1), "measured",
                            note) for q in (50, 95, 99)}


def throughput(docs: Embedded, count: int) -> dict[str, Figure]:
    if docs.cached >= count or docs.seconds <= 0:
        note = "every document came from the cache; run with --no-cache to measure"
        return {"texts_per_s": Figure(None, "measured", note),
                "tokens_per_s": Figure(None, "measured", note)}
    note = "documents embedded / wall time of the document phase"
    if docs.cached:
        note += f" ({docs.cached} of {count} answered by the cache, which flatters it)"
    method: Method = "estimated" if docs.estimated else "measured"
    return {"texts_per_s": Figure(round(count / docs.seconds, 1), "measured", note),
            "tokens_per_s": Figure(round(docs.tokens / docs.seconds, 1), method, note)}


def requests(metrics: EndpointMetrics | None, calls: int) -> dict[str, Figure]:
    """How the requests went: 429s, retries and time waiting for rate-limit budget say
    whether the throughput above was the provider's speed or the account's limits."""
    if metrics is None:
        return {"sent": Figure(calls, "measured", "embedding calls to an in-process model")}
    retried = sum(metrics.retries.values())
    causes = ", ".join(f"{n} {cause}" for cause, n in sorted(metrics.retries.items()))
    return {
        "sent": Figure(metrics.requests, "measured", "HTTP requests, retries included"),
        "throttled": Figure(metrics.throttled, "measured", "answered 429 (rate limited)"),
        "retries": Figure(retried, "measured", f"by cause: {causes}" if causes else ""),
        "limiter_wait_s": Figure(round(metrics.limiter_wait, 3), "measured",
                                 "time spent waiting for the configured rate limits"),
    }


def tokens(docs: Embedded, queries: Embedded) -> dict[str, Figure]:
    def figure(part: Embedded) -> Figure:
        how = ("counted by characters: the provider reports none" if part.estimated
               else "as the provider or the model's tokenizer reported them")
        note = how + (f"; {part.tokens_cached:,} of them from the cache" if part.tokens_cached
                      else "")
        return Figure(part.tokens, "estimated" if part.estimated else "measured", note)

    return {"documents": figure(docs), "queries": figure(queries)}


def cost(price: float | None, docs: Embedded, queries: Embedded, count: int,
          size: int | None, label: str, *, configured: bool = False) -> dict[str, Figure]:
    """What the run cost and what a collection would; `configured`: the price is the
    candidate's own `price_per_mtok`, not the catalog's list price."""
    if price is None:
        unknown = Figure(None, "catalog", "no price in the catalog for this model (give "
                                          "the candidate a price_per_mtok)")
        return {"run": unknown, "per_1m_documents": unknown, "collection": unknown}
    paid = docs.tokens_paid + queries.tokens_paid
    listed = "price_per_mtok given" if configured else "catalog list price"
    price_note = f"${price:g} per 1M tokens ({listed})" if price else (
        "runs on this machine: no per-token price, compute not counted")
    # a free model costs nothing however its tokens were counted
    run_method: Method = ("estimated" if price and (docs.estimated or queries.estimated)
                          else "catalog")
    per_doc = docs.tokens / max(count, 1)
    costs = {
        "run": Figure(paid * price / MILLION, run_method,
                      f"{paid:,} tokens sent in this run x {price_note}"),
        "per_1m_documents": Figure(per_doc * price, "estimated" if price else "catalog",
                                   f"{per_doc:.0f} tokens per document on average here x "
                                   f"{price_note}"),
    }
    if size is not None:
        costs["collection"] = Figure(per_doc * size * price / MILLION,
                                     "estimated" if price else "catalog",
                                     f"{size:,} documents of {label} at {per_doc:.0f} tokens "
                                     "each")
    return costs


def storage(dims: int) -> dict[str, Figure]:
    note = ("vector data only: the HNSW graph and payloads come on top, and quantized "
            "collections keep the float32 originals on disk for rescoring")
    return {"float32": Figure(dims * 4 * MILLION, "computed", note),
            "int8": Figure(dims * MILLION, "computed", note),
            "binary": Figure(math.ceil(dims / 8) * MILLION, "computed", note)}


def environment(started: datetime, cache: bool, seed: int | None) -> dict[str, Any]:
    packages = {}
    for name in ("migrator", "numpy", "httpx", "qdrant-client", "sentence-transformers", "torch",
                 "matplotlib"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"migrator": packages.pop("migrator", "0+unknown"),
            "python": sys.version.split()[0],
            "platform": platform.platform(), "packages": packages,
            "date": started.isoformat(timespec="seconds"), "cache": cache, "seed": seed}
