"""Running at the provider's limit, not below it and not into it.

    python benchmarks/bench_ratelimit.py [--points 15000]

A loopback OpenAI-compatible server (in its own process) enforces requests and tokens per
window, with windows scaled from a minute to one second so the run takes seconds. The same
migration runs with migrator's pacing (the server's own count from its
x-ratelimit-remaining and -reset headers; token buckets until the first answer) and without
it (no limits configured: only retries on 429 with Retry-After, which is what most tools
do). Printed: tokens admitted per window (averaged over the windows the run filled, not
its last, partial one) / the binding limit, the share of requests answered 429, points
lost. A request is about 1% of a window's tokens, as against a real per-minute limit: a
request that does not fit waits for the next window, so requests a tenth of the window
would leave up to a tenth of each unused whatever the pacing.
A third run learns the limits from the server's `x-ratelimit-limit-*` headers instead of
being told them (the window is still given: providers count per minute).
Targets with pacing, both ways: >= 97% of the binding limit, <= 1% answered 429, zero
points lost.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client import models as qm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_migrate import loopback_process, verdict  # noqa: E402

from migrator import (  # noqa: E402
    CollectionSettings,
    MigrationSettings,
    ProviderSettings,
    Settings,
    migrate,
)
from migrator.settings import VerifySettings  # noqa: E402
from migrator.store import QdrantStore  # noqa: E402

WORDS = ["tide", "bread", "credit", "guitar", "star", "garden", "network", "whale", "salt",
         "orbit", "pastry", "bond"]


def stats(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def source(points: int) -> QdrantClient:
    client = QdrantClient(":memory:")
    client.create_collection("docs", vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE))
    client.upsert("docs", points=[
        qm.PointStruct(id=i, vector=[1.0, 0.0, 0.0, 0.0], payload={"text": " ".join(
            WORDS[(i * k) % len(WORDS)] for k in range(1, 9)) + f" {i}"})
        for i in range(points)])
    return client


def run(client: QdrantClient, url: str, *, mode: str, rpm: int, tpm: int,
        window: float) -> tuple[int, float]:
    """`mode`: "configured" (the limits given), "headers" (learnt from the server's
    x-ratelimit-limit-* headers, per window) or "off" (no pacing: retries on 429 only)."""
    limits: dict[str, object] = {
        "configured": {"requests_per_minute": rpm, "tokens_per_minute": tpm,
                       "rate_window": window},
        "headers": {"rate_window": window},
        "off": {"adaptive_pacing": False},
    }[mode]
    paced = mode != "off"
    settings = Settings(
        provider=ProviderSettings(name="openai-compatible", model="bench", base_url=url,
                                  batch_size=16, concurrency=8, max_retries=50,
                                  **limits),  # type: ignore[arg-type]
        collections=[CollectionSettings(name="docs", target="paced" if paced else "unpaced")],
        migration=MigrationSettings(state_dir=Path(tempfile.mkdtemp()), cache=False,
                                    catch_up=False),
        verify=VerifySettings(enabled=False),
    )
    target = QdrantStore(QdrantClient(":memory:"), location="bench", local=True)
    started = time.perf_counter()
    result = migrate(settings, source_store=QdrantStore(client, location="bench", local=True),
                     target_store=target)
    elapsed = time.perf_counter() - started
    return result.collections[0].target_count, elapsed


def used_per_window(tokens: list[int]) -> float:
    """Tokens admitted in a window, on average over the windows the run filled: every one
    but its last, which it ended part-way (the only one, when the run took one)."""
    full = tokens[:-1] or tokens
    return sum(full) / max(len(full), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=15_000)
    parser.add_argument("--rpm", type=int, default=600, help="requests per window")
    parser.add_argument("--tpm", type=int, default=15_000, help="tokens per window (binding)")
    parser.add_argument("--window", type=float, default=1.0, help="seconds")
    parser.add_argument("--quick", action="store_true",
                        help="2,500 points: what CI runs so the script cannot rot")
    args = parser.parse_args()
    if args.quick:
        args.points = 2_500
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    client = source(args.points)
    names = {"configured": "paced, limits configured", "headers": "paced, limits from headers",
             "off": "without pacing           "}
    for mode in ("configured", "headers", "off"):
        with loopback_process(0.02, dims=16, rpm=args.rpm, tpm=args.tpm,
                              window=args.window) as url:
            written, elapsed = run(client, url, mode=mode, rpm=args.rpm, tpm=args.tpm,
                                   window=args.window)
            seen = stats(url)
        rate = used_per_window(seen["window_tokens"])
        share = seen["throttled"] / max(seen["requests"], 1)
        name = names[mode]
        judged = ""
        if mode != "off":
            ok = rate / args.tpm >= 0.97 and share <= 0.01 and written == args.points
            judged = f"  {verdict(ok, args.quick)} (target >= 97%, <= 1% answered 429)"
        print(f"{name}  tokens/window {rate:7.0f} = {rate / args.tpm:5.1%} of {args.tpm}   "
              f"answered 429: {share:5.1%} ({seen['throttled']:.0f} of {seen['requests']:.0f})"
              f"   points lost: {args.points - written}   {elapsed:5.1f} s{judged}")


if __name__ == "__main__":
    main()
