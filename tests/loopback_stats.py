"""The loopback server in its own process, with a GET /stats endpoint for benchmarks.

    python -m tests.loopback_stats --rpm 60 --tpm 3000 --window 1
"""

from __future__ import annotations

import argparse
import sys

from .loopback import LoopbackServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--tpm", type=int)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    with LoopbackServer(dims=args.dims, latency=args.latency, rpm=args.rpm, tpm=args.tpm,
                        window=args.window) as server:
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
