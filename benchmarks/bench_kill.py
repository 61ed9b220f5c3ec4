"""What a `kill -9` costs: texts paid twice when a migration is killed at a random moment
and resumed, against the bound (the requests in flight: concurrency x batch texts).

    python benchmarks/bench_kill.py [--seeds 10] [--points 640]

Each seed kills the migration (tests/crash_worker.py, in a child process) a random time
after a random number of requests reached the loopback server, then resumes it in this
process; the server counts every text it embedded, so a text seen twice was paid twice.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from qdrant_client import QdrantClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrator import migrate  # noqa: E402
from tests.conftest import make_collection  # noqa: E402
from tests.crash_worker import PAGE, settings  # noqa: E402
from tests.loopback import LoopbackServer  # noqa: E402

CONCURRENCY = 3  # the crash worker's


def one_seed(seed: int, points: int) -> tuple[int, int, int]:
    """(texts paid in the killed run, texts paid twice, points written by the resume)."""
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="bench-kill-"))
    client = QdrantClient(path=str(root / "q"))
    make_collection(client, "docs", n=points)
    client.close()
    with LoopbackServer(dims=8, latency=0.02) as server:
        child = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(root / "q"),
                                  str(root / "state"), server.url, "none"], cwd=ROOT)
        requests = rng.randint(2, points // PAGE - 2)
        deadline = time.monotonic() + 60
        while server.requests < requests and child.poll() is None and (
                time.monotonic() < deadline):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))
        child.kill()
        child.wait(timeout=60)
        first = server.texts
        result = migrate(settings(root / "q", root / "state", server.url))
        repaid = sum(n - 1 for n in server.seen.values() if n > 1)
    return first, repaid, result.collections[0].written_now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--points", type=int, default=640)
    parser.add_argument("--quick", action="store_true", help="2 seeds: what CI runs")
    args = parser.parse_args()
    if args.quick:
        args.seeds = 2
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    bound = CONCURRENCY * PAGE
    print(f"kill -9 at a random moment, then resume ({args.points} points, batch {PAGE}, "
          f"concurrency {CONCURRENCY}: at most {bound} texts in flight)")
    worst = 0
    for seed in range(1, args.seeds + 1):
        first, repaid, resumed = one_seed(seed, args.points)
        worst = max(worst, repaid)
        print(f"    seed {seed:2}: {first:4} texts paid before the kill, {repaid:3} paid twice, "
              f"{resumed:4} points written by the resume")
    print(f"    worst: {worst} texts paid twice (bound {bound})  "
          f"{'PASS' if worst <= bound else 'FAIL'}")


if __name__ == "__main__":
    main()
