"""What crash safety costs: the same migration with the embedding cache and per-page
checkpoints on, and with both off, as a ratio measured in the same run.

    python benchmarks/bench_resume.py [--points 20000] [--repeats 3]

Target: <= 10% overhead, with two providers:
(a) an instant in-process one: the worst case, where the run is CPU-bound and every
    microsecond of bookkeeping shows (about 3.5 us of cache work per text);
(b) an OpenAI-compatible loopback server in its own process, 100 ms per request of 64
    texts at concurrency 4: the run is bound by the provider, as a migration against a paid,
    rate-limited API is.
Catch-up is off in every run (it is a separate pass, measured by bench_migrate.py);
"checkpoints off" drops the checkpoint writes, which no setting turns off because a
migration without them could not resume. The source collection, built once by this script,
is frozen out of the garbage collector during each run: a full collection of it costs about
90 ms on the embedded store (5% of a run), and whether a run happens to need two or three
of them decided more of the ratio than the cache did.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_migrate import (  # noqa: E402
    DIMS,
    InstantEmbedder,
    loopback_process,
    settings,
    source_client,
    verdict,
)

from migrator import migrate  # noqa: E402
from migrator.state import State  # noqa: E402
from migrator.store import QdrantStore  # noqa: E402


@contextmanager
def checkpoints_off() -> Iterator[None]:
    real = State.update

    def update(self: State, migration: str, **fields: Any) -> None:
        if "checkpoint" not in fields:
            real(self, migration, **fields)

    State.update = update  # type: ignore[method-assign]
    try:
        yield
    finally:
        State.update = real  # type: ignore[method-assign]


def one_run(source: QdrantClient, points: int, *, on: bool, provider: dict[str, Any],
            embedder: Callable[[], Any] | None, state_dir: Path | None = None) -> float:
    config = settings(**provider)
    config.migration.cache = on
    config.migration.catch_up = False
    config.migration.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="bench-resume-"))
    target = QdrantStore(QdrantClient(":memory:"), location="bench", local=True)
    guard = checkpoints_off() if not on else _nothing()
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    try:
        with guard:
            migrate(config, source_store=QdrantStore(source, location="bench", local=True),
                    target_store=target, embedder=embedder() if embedder else None,
                    restart=True)
        elapsed = time.perf_counter() - started
    finally:
        gc.unfreeze()
    target.close()
    return points / elapsed


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def compare(name: str, source: QdrantClient, points: int, repeats: int,
            provider: dict[str, Any], embedder: Callable[[], Any] | None, *,
            target: float, quick: bool = False) -> None:
    runs: dict[bool, list[float]] = {False: [], True: []}
    order = random.Random(0)
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        # in a random order: the run after another one is slower (the one before left work
        # behind), so a fixed order charged that to the second arm
        for arm in order.sample([False, True], 2):
            runs[arm].append(one_run(source, points, on=arm, provider=provider,
                                     embedder=embedder))
    off, on = runs[False], runs[True]
    off_rate, on_rate = float(np.median(off)), float(np.median(on))
    overhead = off_rate / on_rate - 1
    # each pair ran back to back: their ratio is the least touched by the machine's drift
    pairs = np.array(off) / np.array(on) - 1
    print(f"{name}, {points:,} points (median of {repeats})")
    print(f"    cache + checkpoints off  {off_rate:9,.0f} points/s")
    print(f"    cache + checkpoints on   {on_rate:9,.0f} points/s")
    print(f"    overhead                 {overhead:9.1%}   target <= {target:.0%}  "
          f"{verdict(overhead <= target, quick)}")
    print(f"    paired runs              {float(np.median(pairs)):9.1%}   median of "
          f"{repeats} (from {pairs.min():.1%} to {pairs.max():.1%})")


def warm_rerun(source: QdrantClient, points: int, provider: dict[str, Any]) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    cold = one_run(source, points, on=True, provider=provider, embedder=None,
                   state_dir=state_dir)
    warm = one_run(source, points, on=True, provider=provider, embedder=None,
                   state_dir=state_dir)
    print(f"    re-run with a warm cache {warm:9,.0f} points/s   ({warm / cold:.1f}x the "
          "first run; not one request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--loopback-points", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one repeat: what CI runs so the script cannot rot")
    args = parser.parse_args()
    if args.quick:
        args.points, args.loopback_points, args.repeats = 2_000, 500, 1
    warnings.filterwarnings("ignore", message="Local mode is not recommended")

    compare("(a) instant in-process provider (worst case)", source_client(args.points),
            args.points, args.repeats, {}, InstantEmbedder, target=0.10, quick=args.quick)
    source = source_client(args.loopback_points)
    with loopback_process(0.1) as url:
        provider = {"name": "openai-compatible", "model": "bench", "base_url": url,
                    "dimensions": DIMS, "batch_size": 64, "concurrency": 4}
        compare("(b) loopback server, 100 ms per request of 64 texts, concurrency 4", source,
                args.loopback_points, args.repeats, provider, None, target=0.10,
                quick=args.quick)
        warm_rerun(source, args.loopback_points, provider)


if __name__ == "__main__":
    main()
