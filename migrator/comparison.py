"""`compare()`: which model to move to, measured on your own data before paying for it.

Each candidate embeds the dataset's documents and queries (through the embedding cache, so
a second report costs nothing), one candidate at a time so that none slows another down.
Scoring is exact search in numpy, so the numbers measure the model and not an index.

Every figure carries how it was obtained:
- measured: seen in this run (latency, throughput, provider-reported tokens, quality);
- catalog: a catalog list price applied to measured tokens;
- estimated: derived with an assumption (tokens counted by characters, costs and times
  extrapolated from this dataset's mean document);
- computed: exact arithmetic on measured facts (bytes of a vector of a given size).
"""

from __future__ import annotations

import asyncio
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Literal

import numpy as np

from .candidates import Candidate
from .datasets import Dataset
from .embedding import build_embedder
from .embedding.base import Embedder, InputKind, innermost
from .embedding.cache import CachedEmbedder
from .embedding.http import EndpointMetrics, HttpClient, endpoint_metrics
from .embedding.sizing import AdaptedEmbedder
from .embedding.tokens import combine, fit_all, token_counter
from .errors import ConfigError, InputTooLong, MigratorError
from .metrics import mrr_at_k, ndcg_at_k, normalized, overlap_at_k, recall_at_k, top_k
from .state import EmbeddingCache

__all__ = ["acompare", "CandidateResult", "compare", "CompareResult", "DEPTH", "Figure", "Method",
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
                "seconds": round(self.seconds, 3)}


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


def compare(dataset: Dataset, candidates: Sequence[Candidate], **options: Any) -> CompareResult:
    """Measure every candidate on `dataset`; see `acompare` for the options."""
    return asyncio.run(acompare(dataset, candidates, **options))


async def acompare(dataset: Dataset, candidates: Sequence[Candidate], *,
                   cache: EmbeddingCache | None = None, collection_size: int | None = None,
                   collection_label: str | None = None, client: HttpClient | None = None,
                   on_progress: ProgressCallback | None = None, seed: int | None = None
                   ) -> CompareResult:
    """Embed and score `dataset` with each candidate in turn.

    A candidate that cannot be built or fails while embedding (a bad key, a refused size,
    inputs over its limit under `long_input: fail`) is reported as failed with the reason;
    the others are measured all the same.

    Args:
        cache: the embedding cache to read and fill (None: embed everything).
        collection_size: documents to extrapolate cost and time to (default: the size of the
            collection the dataset was drawn from, if any).
        collection_label: what that size is, for the report (a collection's name).
        client: an httpx client for every HTTP provider (tests inject transports).
    """
    if not candidates:
        raise ConfigError("No candidates to compare; give at least one provider and model.")
    size = collection_size
    if size is None and dataset.population is not None and (
            dataset.kind == "collection" or dataset.population > len(dataset.doc_ids)):
        size = dataset.population  # a sample: extrapolate to what it was drawn from
    started = datetime.now(timezone.utc)
    results: list[CandidateResult] = []
    for candidate in candidates:
        result = await _measure(candidate, dataset, cache=cache, size=size,
                                label=collection_label or dataset.name, client=client,
                                on_progress=on_progress)
        _share_timings(result, results)
        results.append(result)
    reference = next((c for c in candidates if c.reference), candidates[0]).name
    _score_agreement(results, dataset, reference)
    return CompareResult(dataset, results, reference, size, collection_label or (
        dataset.name if size is not None else None),
        _environment(started, cache is not None, seed))


# ---- one candidate ---------------------------------------------------------------------


@dataclass
class _Embedded:
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


async def _measure(candidate: Candidate, dataset: Dataset, *, cache: EmbeddingCache | None,
                   size: int | None, label: str, client: HttpClient | None,
                   on_progress: ProgressCallback | None) -> CandidateResult:
    result = CandidateResult(candidate)
    started = time.perf_counter()
    try:
        model = build_embedder(candidate.provider, client=client)
    except MigratorError as exc:
        return _failed(result, exc, started)
    embedder = _with_cache(model, cache)
    total = len(dataset.doc_texts) + len(dataset.queries)
    progress = _Progress(candidate.name, total, on_progress)
    try:
        docs = await _embed_all(embedder, dataset.doc_texts, "document", candidate, progress)
        kind: InputKind = "query" if candidate.input_types else "document"
        queries = await _embed_all(embedder, [q.text for q in dataset.queries], kind,
                                   candidate, progress)
    except MigratorError as exc:
        return _failed(result, exc, started)
    finally:
        if isinstance(embedder, CachedEmbedder):
            await embedder.release()
        elif isinstance(embedder, AdaptedEmbedder) and isinstance(embedder.inner, CachedEmbedder):
            await embedder.inner.release()
        await model.aclose()
    result.dims = int(docs.vectors.shape[1])
    result.ranked = top_k(normalized(queries.vectors), normalized(docs.vectors), DEPTH + 1)
    result.quality = _quality(dataset, result.ranked)
    metrics = endpoint_metrics(model)
    result.latencies = list(metrics.latencies) if metrics is not None else (
        docs.call_latencies + queries.call_latencies)
    result.latency_ms = _latency(result.latencies, metrics is not None,
                                 docs.cached + queries.cached)
    result.throughput = _throughput(docs, len(dataset.doc_texts))
    result.requests = _requests(metrics, len(docs.call_latencies) + len(queries.call_latencies))
    result.tokens = _tokens(docs, queries)
    result.cost = _cost(embedder.spec.price_per_mtok, docs, queries, len(dataset.doc_texts),
                        size, label)
    if size is not None and result.throughput["texts_per_s"].value:
        seconds = size / float(result.throughput["texts_per_s"].value)
        result.throughput["time_for_collection_s"] = Figure(
            round(seconds, 1), "estimated",
            f"{size:,} documents of {label} at the measured rate, concurrency "
            f"{candidate.provider.concurrency}")
    result.storage = _storage(result.dims)
    result.texts = {"documents": len(dataset.doc_texts), "queries": len(dataset.queries),
                    "over_limit": docs.over_limit + queries.over_limit,
                    "from_cache": docs.cached + queries.cached}
    result.seconds = time.perf_counter() - started
    return result


def _share_timings(result: CandidateResult, earlier: list[CandidateResult]) -> None:
    """A size of a truncation sweep cut client-side makes no request of its own: every
    vector is the cached one of the same model at its own size. Its latency and throughput
    are those requests', so they are taken from the candidate that made them."""
    if not result.ok or result.latencies or result.texts.get("from_cache", 0) < (
            result.texts.get("documents", 0) + result.texts.get("queries", 0)):
        return
    mine = _request_shape(result.candidate)
    source = next((e for e in earlier if e.ok and e.latencies
                   and _request_shape(e.candidate) == mine), None)
    if source is None:
        return
    note = f"as measured for {source.name}: the same requests, vectors cut client-side"
    result.latencies = source.latencies
    result.latency_ms = {k: Figure(f.value, f.method, note) for k, f in source.latency_ms.items()}
    for key in ("texts_per_s", "tokens_per_s", "time_for_collection_s"):
        if key in source.throughput:
            figure = source.throughput[key]
            result.throughput[key] = Figure(figure.value, figure.method, note)


def _request_shape(candidate: Candidate) -> dict[str, Any]:
    """What decides the requests a candidate sends, apart from its size (only compared
    for a candidate whose every vector came from the cache)."""
    sizing = {"dimensions", "dimension_policy", "send_dimensions", "api_key"}
    return {**candidate.provider.model_dump(exclude=sizing),
            "input_types": candidate.input_types}


def _failed(result: CandidateResult, exc: MigratorError, started: float) -> CandidateResult:
    result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - started
    return result


def _with_cache(model: Embedder, cache: EmbeddingCache | None) -> Embedder:
    """The cache sits under any truncation or padding, so the sizes of a truncation sweep
    share the provider's vectors: the second size costs nothing."""
    if cache is None or not getattr(innermost(model), "worth_caching", True):
        return model
    if isinstance(model, AdaptedEmbedder):
        return AdaptedEmbedder(CachedEmbedder(model.inner, cache), model.decision)
    return CachedEmbedder(model, cache)


class _Progress:
    def __init__(self, name: str, total: int, callback: ProgressCallback | None) -> None:
        self.name, self.total, self.done, self.callback = name, total, 0, callback

    def advance(self, texts: int) -> None:
        self.done += texts
        if self.callback is not None:
            self.callback(self.name, self.done, self.total)


async def _embed_all(embedder: Embedder, texts: list[str], kind: InputKind,
                     candidate: Candidate, progress: _Progress) -> _Embedded:
    """Vectors for `texts` in order, sent in the embedder's batches with the candidate's
    concurrency; long texts handled by its `long_input` policy."""
    policy = candidate.provider.long_input
    limit, count = embedder.spec.max_tokens_per_input, token_counter(embedder)
    over = [count(t) > limit for t in texts]
    fitted = fit_all(texts, embedder, policy)
    too_long = fitted.too_long
    if too_long:
        raise InputTooLong(
            f"{too_long} of {len(texts)} {kind} texts are over {candidate.name}'s limit of "
            f"{embedder.spec.max_tokens_per_input} tokens; set long_input: truncate or "
            "chunk-mean for this candidate.")
    order = fitted.unique
    out = _Embedded(np.empty((0, 0), dtype=np.float32), over_limit=sum(over))
    gate = asyncio.Semaphore(candidate.provider.concurrency)
    step = embedder.batch_size

    async def one(start: int) -> np.ndarray:
        batch = order[start:start + step]
        async with gate:
            began = time.perf_counter()
            result = await embedder.embed(batch, kind=kind)
            if result.cached == 0:
                out.call_latencies.append(time.perf_counter() - began)
        out.tokens_paid += result.tokens
        out.tokens_cached += result.tokens_saved
        out.estimated |= result.tokens_estimated
        out.cached += result.cached
        progress.advance(len(batch))
        return result.vectors

    began = time.perf_counter()
    tasks = [asyncio.ensure_future(one(s)) for s in range(0, len(order), step)]
    try:
        parts = await asyncio.gather(*tasks)
    except BaseException:
        # one request failed for good: stop the others before the client is closed
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    out.seconds = time.perf_counter() - began
    if not parts:
        return out
    out.vectors = combine(np.concatenate(parts), fitted.rows)
    return out


# ---- figures -----------------------------------------------------------------------------


def _quality(dataset: Dataset, ranked: np.ndarray) -> dict[str, Figure]:
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


def _score_agreement(results: list[CandidateResult], dataset: Dataset, reference: str) -> None:
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
        values = [overlap_at_k(_neighbours(dataset, q, mine), _neighbours(dataset, q, theirs), 10)
                  for q, mine, theirs in zip(dataset.queries, result.ranked, ref.ranked,
                                             strict=True)]
        note = ("the reference itself" if result is ref else
                f"mean share of top 10 in common with {reference} over "
                f"{len(values)} queries")
        result.quality["agreement@10"] = Figure(round(float(np.mean(values)), 4),
                                                "measured", note)


def _neighbours(dataset: Dataset, query: Any, ranked: np.ndarray) -> list[str]:
    ids = [dataset.doc_ids[r] for r in ranked]
    return [i for i in ids if i != query.document][:10]


def _latency(latencies: list[float], per_request: bool, cached: int) -> dict[str, Figure]:
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


def _throughput(docs: _Embedded, count: int) -> dict[str, Figure]:
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


def _requests(metrics: EndpointMetrics | None, calls: int) -> dict[str, Figure]:
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


def _tokens(docs: _Embedded, queries: _Embedded) -> dict[str, Figure]:
    def figure(part: _Embedded) -> Figure:
        how = ("counted by characters: the provider reports none" if part.estimated
               else "as the provider or the model's tokenizer reported them")
        note = how + (f"; {part.tokens_cached:,} of them from the cache" if part.tokens_cached
                      else "")
        return Figure(part.tokens, "estimated" if part.estimated else "measured", note)

    return {"documents": figure(docs), "queries": figure(queries)}


def _cost(price: float | None, docs: _Embedded, queries: _Embedded, count: int,
          size: int | None, label: str) -> dict[str, Figure]:
    if price is None:
        unknown = Figure(None, "catalog", "no price in the catalog for this model")
        return {"run": unknown, "per_1m_documents": unknown, "collection": unknown}
    paid = docs.tokens_paid + queries.tokens_paid
    price_note = f"${price:g} per 1M tokens (catalog list price)" if price else (
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


def _storage(dims: int) -> dict[str, Figure]:
    note = ("vector data only: the HNSW graph and payloads come on top, and quantized "
            "collections keep the float32 originals on disk for rescoring")
    return {"float32": Figure(dims * 4 * MILLION, "computed", note),
            "int8": Figure(dims * MILLION, "computed", note),
            "binary": Figure(math.ceil(dims / 8) * MILLION, "computed", note)}


def _environment(started: datetime, cache: bool, seed: int | None) -> dict[str, Any]:
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
