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
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..blocking import run_blocking
from ..embedding import build_embedder
from ..embedding.base import Embedder, InputKind
from ..embedding.http import HttpClient
from ..embedding.tokens import combine, fit_all, token_counter
from ..errors import ConfigError, InputTooLong, MigratorError, NotSent
from ..interrupts import Stop, gather_or_cancel, stoppable
from ..metrics import normalized, top_k
from ..settings import Settings
from ..vector_cache import EmbeddingCache, open_cache
from . import datasets, figures, report
from .candidates import Candidate
from .datasets import Dataset
from .results import (
    DEPTH,
    CandidateResult,
    CompareResult,
    Embedded,
    Figure,
    ProgressCallback,
)

__all__ = ["acompare", "CandidateResult", "compare", "CompareResult", "Figure",
           "ProgressCallback", "run"]


def compare(dataset: Dataset, candidates: Sequence[Candidate], **options: Any) -> CompareResult:
    """Measure every candidate on `dataset`; see `acompare` for the options."""
    return run_blocking(acompare(dataset, candidates, **options), "compare", "acompare")


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
    # the first Ctrl-C lets the requests in flight be answered and cached, then stops
    async with stoppable(_CANCELLED) as stop:
        with stop.draining():
            for number, candidate in enumerate(candidates, start=1):
                result = await _measure(candidate, dataset, cache=cache, size=size,
                                        label=collection_label or dataset.name,
                                        client=client, on_progress=on_progress, stop=stop)
                if stop.requested:
                    raise stop.error(_stopped(candidate, number, len(candidates), cache))
                _share_timings(result, results)
                results.append(result)
    reference = next((c for c in candidates if c.reference), candidates[0]).name
    figures.score_agreement(results, dataset, reference)
    return CompareResult(dataset, results, reference, size, collection_label or (
        dataset.name if size is not None else None),
        figures.environment(started, cache is not None, seed))


def run(settings: Settings, dataset: Dataset, candidates: Sequence[Candidate], *,
        outputs: Sequence[Path | str] = (), size_of: str | None = None,
        collection_size: int | None = None, cache: bool = True,
        on_progress: ProgressCallback | None = None, seed: int | None = None
        ) -> CompareResult:
    """What `migrator compare` does once its inputs are read: extrapolate to the size of
    `size_of` (a collection of `settings.source`) unless `collection_size` is given, measure
    every candidate through the cache in `settings.migration.state_dir` (unless `cache` is
    false), and write the report to each of `outputs` (.md, .html, .json).

    Raises:
        ConfigError: no candidates, or an output of an unknown format.
        CollectionNotFound: `size_of` does not exist.
    """
    for path in outputs:
        report.check_output(path)
    if size_of is not None and collection_size is None:
        collection_size = datasets.collection_size(settings.source, size_of)
    with open_cache(settings.migration.state_dir, cache) as store:
        result = compare(dataset, candidates, cache=store, collection_size=collection_size,
                         collection_label=size_of, on_progress=on_progress, seed=seed)
    for path in outputs:
        report.write(result, path)
    return result


_CANCELLED = "No report was written; run the same command again."


def _stopped(candidate: Candidate, number: int, count: int,
             cache: EmbeddingCache | None) -> str:
    kept = ("the answers it paid for are in the cache: run the same command again, and it "
            "pays only for the rest" if cache is not None else
            "the cache is off (--no-cache): run the same command again, and it pays for "
            "every text again")
    return (f"compare stopped while measuring {candidate.name} (candidate {number} of "
            f"{count}); no report was written; {kept}.")


# ---- one candidate ---------------------------------------------------------------------


async def _measure(candidate: Candidate, dataset: Dataset, *, cache: EmbeddingCache | None,
                   size: int | None, label: str, client: HttpClient | None,
                   on_progress: ProgressCallback | None, stop: Stop) -> CandidateResult:
    result = CandidateResult(candidate)
    started = time.perf_counter()
    try:
        embedder = build_embedder(candidate.provider, client=client, cache=cache)
    except MigratorError as exc:
        return _failed(result, exc, started)
    total = len(dataset.doc_texts) + len(dataset.queries)
    progress = _Progress(candidate.name, total, on_progress)
    try:
        await embedder.adopt_server_limits()  # texts are cut at the server's own limit
        result.warnings = list(embedder.limit_notes)
        # a self-hosted server may serve another model than its cached vectors are of
        first = fit_all(dataset.doc_texts[:1], embedder, candidate.provider.long_input).unique
        if first:
            await embedder.check_cache(first[0])
        # that request is no part of the measured latencies
        checked = len(embedder.metrics.latencies) if embedder.metrics is not None else 0
        docs = await _embed_all(embedder, dataset.doc_texts, "document", candidate, progress,
                                stop)
        kind: InputKind = "query" if candidate.input_types else "document"
        queries = await _embed_all(embedder, [q.text for q in dataset.queries], kind,
                                   candidate, progress, stop)
    except MigratorError as exc:
        return _failed(result, exc, started)
    finally:
        await embedder.aclose()
    result.dims = int(docs.vectors.shape[1])
    result.ranked = top_k(normalized(queries.vectors), normalized(docs.vectors), DEPTH + 1)
    result.quality = figures.quality(dataset, result.ranked)
    metrics = embedder.metrics
    result.latencies = list(metrics.latencies[checked:]) if metrics is not None else (
        docs.call_latencies + queries.call_latencies)
    result.latency_ms = figures.latency(result.latencies, metrics is not None,
                                 docs.cached + queries.cached)
    result.throughput = figures.throughput(docs, len(dataset.doc_texts))
    result.requests = figures.requests(
        metrics, len(docs.call_latencies) + len(queries.call_latencies))
    result.tokens = figures.tokens(docs, queries)
    result.cost = figures.cost(embedder.spec.price_per_mtok, docs, queries, len(dataset.doc_texts),
                               size, label,
                               configured=candidate.provider.price_per_mtok is not None)
    if size is not None and result.throughput["texts_per_s"].value:
        seconds = size / float(result.throughput["texts_per_s"].value)
        result.throughput["time_for_collection_s"] = Figure(
            round(seconds, 1), "estimated",
            f"{size:,} documents of {label} at the measured rate, concurrency "
            f"{candidate.provider.concurrency}")
    result.storage = figures.storage(result.dims)
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


class _Progress:
    def __init__(self, name: str, total: int, callback: ProgressCallback | None) -> None:
        self.name, self.total, self.done, self.callback = name, total, 0, callback

    def advance(self, texts: int) -> None:
        self.done += texts
        if self.callback is not None:
            self.callback(self.name, self.done, self.total)


async def _embed_all(embedder: Embedder, texts: list[str], kind: InputKind,
                     candidate: Candidate, progress: _Progress, stop: Stop) -> Embedded:
    """Vectors for `texts` in order, sent in the embedder's batches with the candidate's
    concurrency; long texts handled by its `long_input` policy.

    Raises:
        NotSent: the run is stopping; the batches in flight were answered first.
    """
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
    out = Embedded(np.empty((0, 0), dtype=np.float32), over_limit=sum(over))
    gate = asyncio.Semaphore(candidate.provider.concurrency)
    step = embedder.batch_size

    async def one(start: int) -> np.ndarray | None:
        batch = order[start:start + step]
        async with gate:
            began = time.perf_counter()
            try:  # a batch not sent ends alone: the others in flight are answered, cached
                result = await embedder.embed(batch, kind=kind) if not stop.requested else None
            except NotSent:
                result = None
            if result is None:
                return None
            if result.cached == 0:
                out.call_latencies.append(time.perf_counter() - began)
        out.tokens_paid += result.tokens
        out.tokens_cached += result.tokens_saved
        out.estimated |= result.tokens_estimated
        out.cached += result.cached
        progress.advance(len(batch))
        return result.vectors

    began = time.perf_counter()
    # one request failed for good: the others stop before the client is closed
    answered = await gather_or_cancel(*(one(s) for s in range(0, len(order), step)))
    out.seconds = time.perf_counter() - began
    parts = [part for part in answered if part is not None]
    if len(parts) < len(answered):
        raise NotSent(f"{candidate.name}: {len(answered) - len(parts)} batches were not sent: "
                      "the run is stopping.")
    if not parts:
        return out
    out.vectors = combine(np.concatenate(parts), fitted.rows)
    return out


