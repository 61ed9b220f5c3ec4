"""The swap gate: verify each target before its alias moves, refuse the move when a check
is below its threshold, and delete the collection an alias left when asked to."""

from __future__ import annotations

from .embedding import Embedder
from .errors import ConfigError, VerificationFailed
from .jobs import Job, refuse_foreign_alias
from .ownership import drop_left
from .results import CollectionResult
from .sampling import draw_sample
from .settings import Settings
from .state import Phase, State
from .store import QdrantStore
from .verification import check_target
from .verification.checks import Pair, VerificationReport

__all__ = ["gate", "hold_back", "move_alias", "verify_job"]


async def verify_job(job: Job, result: CollectionResult, settings: Settings,
                     source: QdrantStore, target: QdrantStore,
                     embedder: Embedder) -> VerificationReport:
    """Every check of `migrator verify` on the job's sample (drawn again by one pass over
    the source when a resumed backfill saw too few points)."""
    verify = settings.verify
    sample = job.sample.items if job.sample is not None else []
    if len(sample) < min(verify.sample, result.target_count):
        sample, _ = draw_sample(source, job.schema.name, job.text, verify.sample, verify.seed)
    pair = Pair(source, job.schema.name, job.vector, target, job.target, job.target_vector,
                expected_count=result.source_count - result.skipped, text=job.text)
    return await check_target(pair, sample, embedder, settings)


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
        state.update(job.record.id, phase=Phase.FAILED, error=f"verification failed: {summary}")
    hold_back(state, [job for job in jobs if all(job is not f for f, _ in failed)],
              [job.config.name for job, _ in failed], "not swapped")
    message = " ".join(f"Verification of {r.target!r} failed: {r.verification.summary()}."
                       for _, r in failed if r.verification is not None)
    raise VerificationFailed(
        f"{message} No alias was moved. Inspect with `migrator verify`, or move the alias "
        "anyway with --force (recorded as forced).",
        report=[r.verification.to_dict() for _, r in failed if r.verification])


def hold_back(state: State, waiting: list[Job], failed: list[str], step: str) -> None:
    """Note on each of `waiting` why the run stopped before its next `step` (`not
    verified`, `not swapped`): `failed`, collections of the same run; nothing moves while
    one fails."""
    if not failed:
        return
    names = ", ".join(repr(name) for name in failed)
    for job in waiting:
        state.update(job.record.id, error=f"{step}: {names} failed in the same run; run it "
                                          "again once that is fixed")


def move_alias(alias: str, job: Job, result: CollectionResult, target: QdrantStore,
               state: State, *, drop_old: bool) -> None:
    """Point `alias` at the job's target, the move recorded with its verification
    (`result`), and with `drop_old` delete the collection it left, after a verified move
    only. Checked again here, as the preflight did: the alias may have been pointed at
    another collection's data while the run went on."""
    collection = job.target
    try:
        refuse_foreign_alias(target, alias, job.schema.name, state.all())
    except ConfigError as exc:
        state.update(job.record.id, phase=Phase.FAILED, error=str(exc))
        raise
    result.previous_alias_target = target.swap_alias(alias, collection)
    result.swapped = True
    if result.previous_alias_target != collection:
        metrics = result.verification.to_dict() if result.verification else {}
        state.record_alias(alias, result.previous_alias_target, collection,
                           store=target.identity, forced=result.forced, metrics=metrics)
    if drop_old:
        result.dropped, result.kept = drop_left(
            target, result.previous_alias_target, collection, unverified=(
                "the move was forced past a failed verification" if result.forced else
                "the move was not verified (--no-verify)" if result.verification is None
                else None), records=[r for r in state.all() if r.id != job.record.id])
