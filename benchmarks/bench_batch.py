"""Batch mode end to end against loopback doubles of OpenAI's synchronous endpoint and its
Files and Batches APIs, beside a synchronous run of the same migration.

    python benchmarks/bench_batch.py [--points 60000]

Printed: texts submitted, input files and batch jobs (a batch takes at most 50,000 inputs,
so 60,000 points make two), wall time of each run, and the cost each run's report gives
(the batch run's at the batch price). Targets: the batch run's target equals the
synchronous run's vector for vector; its cost is half; no text is embedded twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from pydantic import SecretStr
from qdrant_client import QdrantClient
from qdrant_client import models as qm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrator import (  # noqa: E402
    CollectionSettings,
    MigrationSettings,
    ProviderSettings,
    Settings,
    migrate,
)
from migrator.settings import VerifySettings  # noqa: E402
from migrator.store import QdrantStore  # noqa: E402
from tests.batch_loopback import BatchDouble  # noqa: E402
from tests.loopback import LoopbackServer  # noqa: E402

DIMS = 64


def source(points: int) -> QdrantStore:
    client = QdrantClient(":memory:")
    client.create_collection("docs", vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE))
    for start in range(0, points, 2000):
        ids = list(range(start, min(start + 2000, points)))
        client.upsert("docs", points=qm.Batch(
            ids=ids, vectors=[[1.0, 0.0, 0.0, 0.0]] * len(ids),
            payloads=[{"text": f"document {i} on topic {i % 97} and {i * 7 % 13}"}
                      for i in ids]))
    return QdrantStore(client, location="bench", local=True)


def settings(url: str, *, batch: bool, target: str) -> Settings:
    return Settings(
        provider=ProviderSettings(name="openai", model="text-embedding-3-small", base_url=url,
                                  api_key=SecretStr("sk-bench"), dimensions=DIMS,
                                  batch_size=256, concurrency=8, batch=batch, batch_wait=True,
                                  batch_poll=0.05),
        collections=[CollectionSettings(name="docs", target=target)],
        migration=MigrationSettings(state_dir=Path(tempfile.mkdtemp(prefix="bench-batch-")),
                                    catch_up=False),
        verify=VerifySettings(enabled=False),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true",
                        help="a thousand points: what CI runs so the script cannot rot")
    args = parser.parse_args()
    if args.quick:
        args.points = 1_000
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    store = source(args.points)
    with LoopbackServer(dims=DIMS, api_key="sk-bench") as server:
        double = BatchDouble(server, polls=2)
        server.batches = double
        started = time.perf_counter()
        batched = migrate(settings(server.url, batch=True, target="by_batch"),
                          source_store=store)
        batch_seconds = time.perf_counter() - started
        probed = len(server.seen)
        started = time.perf_counter()
        synchronous = migrate(settings(server.url, batch=False, target="by_sync"),
                              source_store=store)
        sync_seconds = time.perf_counter() - started
    report = batched.batch
    assert report is not None
    by_batch, _ = store.client.scroll("by_batch", limit=args.points, with_vectors=True)
    by_sync = {p.id: p.vector for p in store.client.scroll(
        "by_sync", limit=args.points, with_vectors=True)[0]}
    same = len(by_batch) == args.points and all(
        np.array_equal(p.vector, by_sync[p.id]) for p in by_batch)  # type: ignore[arg-type]
    twice = sum(n > 1 for n in double.embedded.values())
    batch_cost, sync_cost = batched.cost or 0.0, synchronous.cost or 0.0
    print(f"{args.points:,} points, {os.cpu_count()} cores")
    print(f"    batch run    {report.submitted_texts:,} texts submitted in "
          f"{double.uploads:,} files / "
          f"{report.submitted_jobs:,} jobs (+{probed} probe texts sent synchronously), "
          f"{batch_seconds:.1f} s, reported ${batch_cost:.6f}")
    print(f"    synchronous  {synchronous.bill.total.texts:,} texts in "
          f"{synchronous.bill.total.requests:,} requests, {sync_seconds:.1f} s, "
          f"reported ${sync_cost:.6f}")
    ratio = batch_cost / sync_cost if sync_cost else float("nan")
    expected = (probed + report.submitted_texts / 2) / args.points  # the probe is synchronous
    ok = same and twice == 0 and abs(ratio - expected) < 0.01
    print(f"    cost ratio   {ratio:.3f} (expected {expected:.3f}: half, but the probe's "
          f"{probed} texts), same vectors: {same}, texts embedded twice: {twice}   "
          f"{'PASS' if ok else 'FAIL'}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
