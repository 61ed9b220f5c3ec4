"""The swap gate: verify each target before its alias moves, refuse the move when a check
is below its threshold, and delete the collection an alias left when asked to."""

from __future__ import annotations

from pathlib import Path

from .embedding import Embedder, build_embedder
from .errors import ConfigError, VerificationFailed
from .jobs import Job
from .labelled import labelled_check, load_queries
from .results import CollectionResult
from .sampling import draw_sample
from .settings import Settings
from .state import State
from .store import QdrantStore
from .verify import Check, Pair, VerificationReport, run_checks


async def verify_job(job: Job, result: CollectionResult, settings: Settings,
                     source: QdrantStore, target: QdrantStore,
                     embedder: Embedder) -> VerificationReport:
    """Wait for the target to be ready, then run every check on the job's sample (drawn
    again by one pass over the source when a resumed backfill saw too few points)."""
    verify = settings.verify
    readiness = target.wait_ready(job.target, timeout=verify.readiness_timeout)
    sample = job.sample.items if job.sample is not None else []
    if len(sample) < min(verify.sample, result.target_count):
        sample, _ = draw_sample(source, job.schema.name, job.text, verify.sample, verify.seed)
    pair = Pair(source, job.schema.name, job.vector, target, job.target, job.vector,
                expected_count=result.source_count - result.skipped, text=job.text)
    report = await run_checks(pair, sample, embedder, verify,
                              long_input=settings.provider.long_input)
    report.readiness = readiness
    if verify.queries is not None:
        report.checks.append(await _labelled(job, settings, source, target, embedder))
    return report


async def _labelled(job: Job, settings: Settings, source: QdrantStore, target: QdrantStore,
                    embedder: Embedder) -> Check:
    verify = settings.verify
    if verify.source_provider is None:
        raise ConfigError("verify.queries needs verify.source_provider: the provider and "
                          "model the source collection was built with.")
    queries = load_queries(Path(verify.queries or "."), verify.max_queries)
    old = build_embedder(verify.source_provider)
    try:
        return await labelled_check(
            queries, k=verify.k, max_drop=verify.max_ndcg_drop,
            source=(source, job.schema.name, job.vector, old),
            target=(target, job.target, job.vector, embedder),
            long_input=settings.provider.long_input)
    finally:
        await old.aclose()


def gate(jobs: list[Job], results: list[CollectionResult], state: State, *,
         force: bool) -> None:
    """Raise `VerificationFailed` (no alias moved) when a collection failed a check, unless
    `force`; record the failure in the state."""
    failed = [(job, r) for job, r in zip(jobs, results, strict=True)
              if r.verification is not None and not r.verification.passed]
    if not failed or force:
        return
    for job, result in failed:
        summary = result.verification.summary() if result.verification else ""
        state.update(job.record.id, phase="failed", error=f"verification failed: {summary}")
    message = " ".join(f"Verification of {r.target!r} failed: {r.verification.summary()}."
                       for _, r in failed if r.verification is not None)
    raise VerificationFailed(
        f"{message} No alias was moved. Inspect with `migrator verify`, or move the alias "
        "anyway with --force (recorded as forced).",
        report=[r.verification.to_dict() for _, r in failed if r.verification])


def drop_left(target: QdrantStore, old: str | None, new: str) -> str | None:
    """Delete the collection an alias left, if nothing serves it any more; its name."""
    if old is None or old == new or old not in target.collection_names():
        return None
    if old in target.aliases().values():
        return None  # another alias still serves it
    target.delete_collection(old)
    return old
