"""A self-hosted server that answers one request at a time: does migrator use all of it?

    python benchmarks/bench_slowserver.py [--points 4000]

A loopback OpenAI-compatible server (its own process) plays a model on a CPU: one request
at a time, a fixed time per text. Its capacity is measured first: texts per second when it
is fed one request at a time, back to back. Then the same texts are migrated at a
concurrency ceiling that queues more than the server answers within the timeout, with
adaptive concurrency (the default) and without. Printed: each run's texts per second over
the capacity, and the texts the server worked through for requests that had timed out.
Target with adaptive concurrency: >= 0.90 of the capacity.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import httpx
from qdrant_client import QdrantClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_migrate import DIMS, loopback_process, settings, source_client, verdict  # noqa: E402

from migrator import migrate  # noqa: E402
from migrator.store import QdrantStore  # noqa: E402

TARGET = 0.90


def capacity(url: str, batch: int, requests: int) -> float:
    """Texts per second, one request at a time, back to back."""
    with httpx.Client(timeout=60) as client:
        body = {"model": "bench", "input": [f"capacity {i}" for i in range(batch)],
                "dimensions": DIMS}
        client.post(f"{url}/embeddings", json=body)  # a warm connection
        started = time.perf_counter()
        for _ in range(requests):
            client.post(f"{url}/embeddings", json=body).raise_for_status()
        return requests * batch / (time.perf_counter() - started)


def run(url: str, source: QdrantClient, points: int, *, batch: int, ceiling: int,
        timeout: float, adaptive: bool) -> tuple[float, dict[str, object]]:
    config = settings(catch_up=False, name="openai-compatible", model="bench", base_url=url,
                      dimensions=DIMS, batch_size=batch, concurrency=ceiling, timeout=timeout,
                      adaptive_concurrency=adaptive)
    config.migration.page_size = batch
    target = QdrantStore(QdrantClient(":memory:"), location="bench", local=True)
    started = time.perf_counter()
    result = migrate(config, source_store=QdrantStore(source, location="bench", local=True),
                     target_store=target)
    elapsed = time.perf_counter() - started
    target.close()
    return points / elapsed, result.bill.http or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=4_000)
    parser.add_argument("--per-text", type=float, default=0.002, help="server seconds a text")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--ceiling", type=int, default=8)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: what CI runs so the script cannot rot")
    args = parser.parse_args()
    if args.quick:
        args.points = 640
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    service = args.per_text * args.batch
    timeout = service * args.ceiling * 0.6  # the full ceiling queued cannot be answered in time
    print(f"one-request-at-a-time server, {args.per_text * 1000:.1f} ms a text, requests of "
          f"{args.batch} ({service * 1000:.0f} ms), ceiling {args.ceiling}, timeout "
          f"{timeout * 1000:.0f} ms, {args.points:,} points, {os.cpu_count()} cores")
    source = source_client(args.points)
    for adaptive in (True, False):
        with loopback_process(0.0, serial=True, per_text=args.per_text) as url:
            full = capacity(url, args.batch, max(8, args.points // args.batch // 4))
            rate, http = run(url, source, args.points, batch=args.batch, ceiling=args.ceiling,
                             timeout=timeout, adaptive=adaptive)
        ratio = rate / full
        retries = http.get("retries") or {}
        judged = (f"target >= {TARGET:.2f}  {verdict(ratio >= TARGET, args.quick)}"
                  if adaptive else "(baseline)")
        print(f"    adaptive={'on ' if adaptive else 'off'}  capacity {full:6.0f} texts/s  "
              f"migrate {rate:6.0f} texts/s  ratio {ratio:.2f}  {judged}")
        print(f"        timeouts retried {sum(retries.values())}, in flight at the end "
              f"{http.get('concurrency')}, lowest {http.get('lowest_concurrency')}")


if __name__ == "__main__":
    main()
