"""The two strategies on the same collection: a new collection (a copy) against a new
vector in place, wall time and storage on disk, on the embedded store.

    python benchmarks/bench_strategies.py [--points 20000]

Each run gets a fresh copy of the same source on disk (qdrant-client's local mode, path=),
an instant in-process provider, no catch-up, no verification. Storage is the store
directory's size after the run (the source included: what the cluster holds while both
versions exist). Printed: both wall times and storages, and their ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_migrate import InstantEmbedder  # noqa: E402

from migrator import CollectionSettings, MigrationSettings, ProviderSettings, Settings, migrate  # noqa: E402
from migrator.settings import VerifySettings  # noqa: E402
from migrator.store import QdrantStore  # noqa: E402


def build_source(path: Path, points: int) -> None:
    """A collection like a production one: a 384-value vector, a sparse vector, and a
    payload of about 1 kB a point."""
    client = QdrantClient(path=str(path))
    client.create_collection("docs", vectors_config={"dense": qm.VectorParams(
        size=384, distance=qm.Distance.COSINE)},
        sparse_vectors_config={"keywords": qm.SparseVectorParams()})
    rng = np.random.default_rng(0)
    for start in range(0, points, 1000):
        ids = list(range(start, min(start + 1000, points)))
        dense = rng.standard_normal((len(ids), 384)).astype(np.float32)
        client.upsert("docs", points=[qm.PointStruct(
            id=i, vector={"dense": dense[k].tolist(), "keywords": qm.SparseVector(
                indices=[i % 1000, 1000 + i % 7], values=[1.0, 0.5])},
            payload={"text": f"document {i} about topic {i % 97}", "body": "lorem " * 160,
                     "n": i}) for k, i in enumerate(ids)])
    client.close()


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(source: Path, strategy: str) -> tuple[float, int]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{strategy}-"))
    store_path = work / "q"
    shutil.copytree(source, store_path)
    store = QdrantStore(QdrantClient(path=str(store_path)), location="bench", local=True)
    settings = Settings(
        provider=ProviderSettings(),
        collections=[CollectionSettings(name="docs", vector="dense")],
        migration=MigrationSettings(state_dir=work / "state", strategy=strategy,  # type: ignore[arg-type]
                                    catch_up=False),
        verify=VerifySettings(enabled=False))
    started = time.perf_counter()
    migrate(settings, source_store=store, embedder=InstantEmbedder())  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    store.close()
    size = size_of(store_path)
    shutil.rmtree(work)
    return seconds, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true",
                        help="a thousand points: what CI runs so the script cannot rot")
    args = parser.parse_args()
    if args.quick:
        args.points = 1_000
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    source = Path(tempfile.mkdtemp(prefix="bench-source-")) / "q"
    build_source(source, args.points)
    before = size_of(source)
    copy_seconds, copy_size = run(source, "new-collection")
    place_seconds, place_size = run(source, "in-place")
    shutil.rmtree(source.parent)
    mb = 1e6
    print(f"{args.points:,} points (384-value vector, a sparse vector, ~1 kB payload), "
          f"{os.cpu_count()} cores; the source alone: {before / mb:,.1f} MB on disk")
    print(f"    new collection  {copy_seconds:6.1f} s   {copy_size / mb:9,.1f} MB on disk")
    print(f"    in place        {place_seconds:6.1f} s   {place_size / mb:9,.1f} MB on disk")
    print(f"    in place / new collection: time {place_seconds / copy_seconds:.2f}x, added "
          f"storage {(place_size - before) / max(copy_size - before, 1):.2f}x")


if __name__ == "__main__":
    main()
