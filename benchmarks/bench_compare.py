"""How fast `migrator compare` measures, against baselines run in the same process.

(a) Scoring: `metrics.top_k` (partition + exact tie order) against a full stable argsort
    of every score row, on random unit vectors; both must return the same lists.
(b) Embedding: compare's measured throughput against a loopback provider with fixed
    latency per request, at the candidate's concurrency, against the naive sequential loop
    (one request after another) over the same server: compare must not be what limits it.

Prints ratios; the machine is shared and noisy, so absolute times mean little.

    python benchmarks/bench_compare.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_migrate import loopback_process  # noqa: E402
from migrator.comparison import compare  # noqa: E402
from migrator.comparison.candidates import expand, finish  # noqa: E402
from migrator.comparison.datasets import Dataset  # noqa: E402
from migrator.metrics import normalized, top_k  # noqa: E402
from migrator.records import Query  # noqa: E402


def bench_scoring(docs: int, queries: int, dims: int, k: int) -> None:
    rng = np.random.default_rng(7)
    corpus = normalized(rng.standard_normal((docs, dims)))
    asked = normalized(rng.standard_normal((queries, dims)))
    started = time.perf_counter()
    fast = top_k(asked, corpus, k)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    full = np.argsort(-(asked @ corpus.T), axis=1, kind="stable")[:, :k]
    baseline = time.perf_counter() - started
    assert (fast == full).all(), "top_k disagrees with the full sort"
    print(f"(a) exact top-{k} of {docs:,} x {dims} for {queries} queries")
    print(f"    metrics.top_k          {ours:7.2f} s")
    print(f"    full stable argsort    {baseline:7.2f} s")
    print(f"    speed-up               {baseline / ours:7.2f}x   (same lists)")


def naive_loop(url: str, texts: list[str], batch: int) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for start in range(0, len(texts), batch):
            response = client.post(url + "/v1/embeddings", json={
                "model": "loop-embed", "input": texts[start:start + batch]})
            response.raise_for_status()
    return len(texts) / (time.perf_counter() - started)


def bench_embedding(texts: int, latency: float, batch: int, concurrency: int) -> None:
    corpus = [f"document {i} about topic {i % 97} and detail {i * 31 % 1009}"
              for i in range(texts)]
    dataset = Dataset("synthetic", "texts", [str(i) for i in range(texts)], corpus,
                      [Query(f"self:{i}", corpus[i], document=str(i)) for i in range(0, 50)])
    with loopback_process(latency, dims=256) as url:
        candidate = finish(expand({"provider": "openai-compatible", "model": "loop-embed",
                                   "base_url": url + "/v1", "batch_size": batch,
                                   "concurrency": concurrency}, origin="bench"), None)
        result = compare(dataset, candidate).candidates[0]
        assert result.ok, result.error
        measured = float(result.throughput["texts_per_s"].value or 0)
        naive = naive_loop(url, corpus, batch)
    bound = concurrency * batch / latency
    print(f"(b) {texts:,} texts, loopback {latency * 1000:.0f} ms per request of {batch}, "
          f"concurrency {concurrency}")
    print(f"    compare (measured)     {measured:9,.0f} texts/s   "
          f"(latency p50 {result.latency_ms['p50'].value} ms)")
    print(f"    naive sequential loop  {naive:9,.0f} texts/s")
    print(f"    ratio                  {measured / naive:9.2f}x   (ideal {concurrency}x; "
          f"bound {bound:,.0f} texts/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--texts", type=int, default=8_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one repeat: what CI runs so the script cannot rot")
    args = parser.parse_args()
    if args.quick:
        args.docs, args.queries, args.texts = 2_000, 50, 1_000
    bench_scoring(args.docs, args.queries, 384, 101)
    bench_embedding(args.texts, args.latency, batch=64, concurrency=8)


if __name__ == "__main__":
    main()
