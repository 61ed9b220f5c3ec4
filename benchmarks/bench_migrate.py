"""Throughput of `migrate` against baselines measured in the same run.

    python benchmarks/bench_migrate.py [--points 20000] [--latency 0.05]

(a) migrator with an instant in-process provider vs qdrant-client's own
    `QdrantClient.migrate()` copying the same in-memory collection (no re-embedding): the
    store's raw copy speed. Target: the backfill >= 0.8x the raw copy's points/s. Then the
    catch-up pass after it, reading source and target whole, and with `sync.updated_field`
    (only what changed since the backfill began, and ids).
(b) an OpenAI-compatible loopback server with fixed latency per request: migrator at
    concurrency 8 vs the naive loop most scripts use (scroll a page, embed it in one
    request, upsert it; one at a time), same request size. Target: >= 7x.

Both sides of a ratio run in this process on the same data, so the ratios hold on a noisy
machine; absolute numbers are printed for context only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrator import CollectionSettings, MigrationSettings, ProviderSettings, Settings, migrate  # noqa: E402
from migrator.catalog import ModelSpec  # noqa: E402
from migrator.embedding.base import Embedder, Embedding, InputKind  # noqa: E402
from migrator.settings import SyncSettings, VerifySettings  # noqa: E402
from migrator.store import QdrantStore  # noqa: E402

DIMS = 128
COLLECTION = "bench"


class InstantEmbedder(Embedder):
    """Answers at once with precomputed vectors: measures everything but the model."""

    spec = ModelSpec("instant", "instant", DIMS, max_inputs=256, max_tokens_per_input=10_000,
                     price_per_mtok=0.0)

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        table = rng.standard_normal((256, DIMS)).astype(np.float32)
        self._table = table / np.linalg.norm(table, axis=1, keepdims=True)

    @property
    def dims(self) -> int:
        return DIMS

    @property
    def batch_size(self) -> int:
        return 256

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        return Embedding(self._table[: len(texts)], tokens=len(texts))

    async def aclose(self) -> None:
        return None


def source_client(points: int) -> QdrantClient:
    client = QdrantClient(":memory:")
    client.create_collection(COLLECTION, vectors_config=qm.VectorParams(
        size=DIMS, distance=qm.Distance.COSINE))
    rng = np.random.default_rng(1)
    words = ["tide", "bread", "credit", "guitar", "star", "garden", "network", "whale"]
    for start in range(0, points, 1000):
        ids = list(range(start, min(start + 1000, points)))
        vectors = rng.standard_normal((len(ids), DIMS)).astype(np.float32)
        client.upsert(COLLECTION, points=qm.Batch(
            ids=ids, vectors=vectors.tolist(),
            payloads=[{"text": f"point {i} about {words[i % 8]} and {words[i * 7 % 8]}",
                       "n": i, "updated_at": 1_700_000_000 + i} for i in ids]))
    return client


def settings(*, catch_up: bool = True, updated_field: str | None = None,
             **provider: object) -> Settings:
    """A fresh state directory each time: no run may resume another or hit its cache."""
    return Settings(
        sync=SyncSettings(updated_field=updated_field),
        provider=ProviderSettings(**provider),  # type: ignore[arg-type]
        collections=[CollectionSettings(name=COLLECTION, target="bench_new")],
        migration=MigrationSettings(page_size=256, queue_depth=4, catch_up=catch_up,
                                    state_dir=Path(tempfile.mkdtemp(prefix="bench-"))),
        # throughput only: the instant provider is no model a self-retrieval check could pass
        verify=VerifySettings(enabled=False),
    )


def verdict(ok: bool, quick: bool) -> str:
    """PASS or FAIL against a target; a quick run's sizes are too small to judge one."""
    return "(quick run: too small to judge)" if quick else ("PASS" if ok else "FAIL")


def timed_points_per_second(points: int, run) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    run()
    return points / (time.perf_counter() - started)


def bench_raw_copy(points: int, repeats: int) -> dict[str, float]:
    """points/s of client.migrate ("raw"), of the backfill alone, and of the whole migrate
    with each kind of catch-up ("full", "updated_field"), medians, interleaved."""
    source = source_client(points)
    variants = {"backfill": {"catch_up": False}, "full": {},
                "updated_field": {"updated_field": "updated_at"}}
    rates: dict[str, list[float]] = {name: [] for name in ("raw", *variants)}
    for _ in range(repeats):
        dest = QdrantClient(":memory:")
        rates["raw"].append(timed_points_per_second(points, lambda dest=dest: source.migrate(
            dest, collection_names=[COLLECTION], batch_size=256)))
        dest.close()
        for name, options in variants.items():
            target = QdrantStore(QdrantClient(":memory:"), location="bench", local=True)
            rates[name].append(timed_points_per_second(points, lambda t=target, o=options: migrate(
                settings(**o), source_store=QdrantStore(source, location="bench", local=True),
                target_store=t, embedder=InstantEmbedder())))  # type: ignore[arg-type]
            target.close()
    return {name: float(np.median(values)) for name, values in rates.items()}


def naive_loop(source: QdrantClient, url: str, batch: int) -> None:
    """The pattern most migration scripts use: one page at a time, nothing overlapped."""
    dest = QdrantClient(":memory:")
    dest.create_collection("naive", vectors_config=qm.VectorParams(
        size=DIMS, distance=qm.Distance.COSINE))
    offset = None
    with httpx.Client(timeout=60) as http:
        while True:
            records, offset = source.scroll(COLLECTION, limit=batch, offset=offset,
                                            with_payload=True)
            if records:
                response = http.post(url + "/embeddings", json={
                    "model": "bench", "input": [r.payload["text"] for r in records]})
                data = sorted(response.json()["data"], key=lambda d: d["index"])
                dest.upsert("naive", points=[
                    qm.PointStruct(id=r.id, payload=r.payload, vector=d["embedding"])
                    for r, d in zip(records, data, strict=True)], wait=True)
            if offset is None:
                break
    dest.close()


@contextlib.contextmanager
def loopback_process(latency: float, *, dims: int = DIMS, **options: float):  # type: ignore[no-untyped-def]
    """tests/loopback.py in a process of its own, like a real provider: it must not compete
    with the pipeline for this process's GIL. `options`: rpm, tpm, window, serial,
    per_text."""
    flags = [f"--{name.replace('_', '-')}" + ("" if value is True else f"={value}")
             for name, value in options.items() if value is not False]
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.loopback", "--dims", str(dims), "--latency", str(latency),
         *flags],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdin is not None
        yield server.stdout.readline().strip()
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=10)


def bench_loopback(points: int, latency: float, batch: int, concurrency: int, repeats: int
                   ) -> tuple[float, float]:
    """points/s of migrator and of the naive loop against the same server: medians of
    `repeats` runs of each, alternated."""
    source = source_client(points)

    def ours(source: QdrantClient) -> None:
        target = QdrantStore(QdrantClient(":memory:"), location="bench", local=True)
        config = settings(catch_up=False, name="openai-compatible", model="bench", base_url=url,
                          dimensions=DIMS, batch_size=batch, concurrency=concurrency)
        migrate(config, source_store=QdrantStore(source, location="bench", local=True),
                target_store=target)
        target.close()

    with loopback_process(latency) as url:
        # untimed: imports done on first use (anyio's alone takes 0.2 s), server connections
        warm_up = source_client(2 * batch)
        naive_loop(warm_up, url, batch)
        ours(warm_up)
        naive, mine = [], []
        for _ in range(repeats):
            naive.append(timed_points_per_second(points, lambda: naive_loop(source, url, batch)))
            mine.append(timed_points_per_second(points, lambda: ours(source)))
    return float(np.median(mine)), float(np.median(naive))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--loopback-points", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one repeat: what CI runs so the script cannot rot")
    args = parser.parse_args()
    if args.quick:
        args.points, args.loopback_points, args.repeats = 2_000, 1_000, 1
    warnings.filterwarnings("ignore", message="Local mode is not recommended")

    rates = bench_raw_copy(args.points, args.repeats)
    ours, raw = rates["backfill"], rates["raw"]
    print(f"(a) instant provider, {args.points:,} points in memory (median of {args.repeats}, "
          f"{os.cpu_count()} cores)")
    print(f"    migrator backfill         {ours:10,.0f} points/s")
    print(f"    client.migrate            {raw:10,.0f} points/s   (raw copy, no re-embedding)")
    print(f"    ratio                     {ours / raw:10.2f}x   target >= 0.80x  "
          f"{verdict(ours / raw >= 0.8, args.quick)}")
    backfill_seconds = args.points / ours
    full = args.points / rates["full"] - backfill_seconds
    changed = args.points / rates["updated_field"] - backfill_seconds
    if args.quick:  # a difference of two short runs: noise at this size
        print("    catch-up pass             (quick run: too small to measure)")
    else:
        print(f"    catch-up pass, whole      {full:10.2f} s        (reads source and target, "
              "payloads and all)")
        print(f"    catch-up, updated_field   {changed:10.2f} s        "
              f"(whole / this {full / max(changed, 1e-9):.1f}x: what changed since the "
              "backfill began, and ids)")
    print(f"    whole migrate             {rates['full']:10,.0f} points/s   "
          f"({rates['full'] / raw:.2f}x; {rates['updated_field'] / raw:.2f}x with "
          "updated_field)")

    ours, naive = bench_loopback(args.loopback_points, args.latency, args.batch,
                                 args.concurrency, args.repeats)
    print(f"(b) loopback server (backfill), {args.latency * 1000:.0f} ms per request of "
          f"{args.batch} texts, {args.loopback_points:,} points (median of {args.repeats})")
    print(f"    migrator (concurrency {args.concurrency}) {ours:8,.0f} points/s")
    print(f"    naive loop               {naive:8,.0f} points/s")
    print(f"    ratio                    {ours / naive:8.2f}x   target >= 7x  "
          f"{verdict(ours / naive >= 7, args.quick)}")


if __name__ == "__main__":
    main()
