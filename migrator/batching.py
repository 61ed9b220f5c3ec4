"""Batch mode: the texts of a migration embedded through the provider's batch API, at its
batch price, into the embedding cache; the migration then runs as it always does and finds
every vector there.

One pass (`run_batches`): collect every job the provider has finished (its answers checked
as the synchronous path checks them, then cached; the texts it did not answer go back to
be sent again), then submit, in files within the provider's limits, every text of the
configured collections that neither the cache nor a job holds. Texts are prepared by the
same step as the synchronous path (`pipeline.prepare`). The ledger (`batch_ledger.py`)
records each file before its batch is created and each batch as soon as it is, so a crash
at any moment is picked up by the next run and nothing is paid for twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .batch_ledger import BatchLedger, JobRow, custom_id
from .embedding.base import CacheSlot, Embedder
from .embedding.batches import (
    MAX_FILE_BYTES,
    MAX_INPUTS_PER_BATCH,
    MAX_REQUESTS_PER_FILE,
    BatchAPI,
    BatchJob,
)
from .embedding.tokens import estimate_total
from .embedding.usage import Usage
from .errors import ConfigError, MigratorError, ProviderError
from .interrupts import Stop
from .ownership import Confirm
from .pipeline import Progress, prepare
from .settings import CollectionSettings, Settings
from .sources import ScrollSource
from .state import State
from .store import CollectionSchema, QdrantStore
from .texts import TextSource
from .wording import counted, has

__all__ = ["BATCH_PROBE", "BatchReport", "no_batches_running", "run_batches",
           "REFUSED_FOR_NOW"]

BATCH_PROBE = 8  # texts the preflight probe sends synchronously in batch mode
# a batch refused for one of these is submitted again later, not counted as a failure
REFUSED_FOR_NOW = frozenset({"token_limit_exceeded"})



@dataclass
class BatchReport:
    """What batch mode did in this run, and what is left."""

    submitted_jobs: int = 0
    submitted_texts: int = 0
    submitted_tokens: int = 0  # estimated
    submitted_cost: float | None = 0.0  # at the batch price
    synchronous_cost: float | None = 0.0  # the same texts at the synchronous price
    collected_jobs: int = 0
    collected_texts: int = 0
    resent_texts: int = 0  # not answered by a job: submitted again
    refused_jobs: int = 0  # refused for now (enqueued-token limit): submitted again later
    pending_jobs: int = 0
    pending_texts: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)  # the ledger's open jobs

    @property
    def done(self) -> bool:
        """Every text is in the cache: the migration can run."""
        return self.pending_jobs == 0

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["done"] = self.done
        return data


async def run_batches(settings: Settings, state: State, source: QdrantStore,
                      embedder: Embedder, schemas: Sequence[CollectionSchema], *,
                      stop: Stop | None = None,
                      on_progress: Callable[[Progress], None] | None = None,
                      restart: bool = False, confirm: Confirm | None = None
                      ) -> BatchReport | None:
    """Collect what is finished, submit what is left; with `provider.batch_wait`, again
    every `provider.batch_poll` seconds until every job is collected. `restart`: first
    cancel the jobs still open (after `confirm` agreed) and delete their files. With
    `provider.batch_fallback: sync`, cancel what is still running instead of waiting: the
    migration embeds it synchronously.

    Outside batch mode (None): refuses while jobs of these collections are running, whose
    texts a synchronous run would pay for again.
    """
    ledger = BatchLedger(state)
    scopes = [c.name for c in settings.collections]
    if not settings.provider.batch:
        await no_batches_running(state, scopes, embedder, restart, confirm)
        return None
    api, slot = _parts(settings, embedder)
    report = BatchReport()
    try:
        if restart:
            await _cancel_open(api, ledger, scopes, confirm)
        while True:
            await _collect(api, ledger, slot, report, embedder.usage,
                           keep=settings.provider.keep_batch_files)
            if settings.provider.batch_fallback == "sync":
                await _cancel_open(api, ledger, scopes, None)
                return report
            for config, schema in zip(settings.collections, schemas, strict=True):
                if not ledger.scanned(config.name):
                    await _submit(api, ledger, slot, embedder, settings, source, config,
                                  schema, report)
            open_jobs = ledger.jobs(open_only=True)
            report.pending_jobs = len(open_jobs)
            report.pending_texts = sum(j.texts for j in open_jobs)
            report.jobs = [j.to_dict() for j in open_jobs]
            if on_progress is not None:  # a bar over the texts in jobs, collected or not
                done = report.collected_texts
                on_progress(Progress("batch jobs", done + report.pending_texts, done, done,
                                     0, 0))
            stopping = stop is not None and stop.requested
            if not open_jobs or not settings.provider.batch_wait or stopping:
                return report
            await asyncio.sleep(settings.provider.batch_poll)
    finally:
        await api.aclose()


async def no_batches_running(state: State, scopes: list[str], embedder: Embedder,
                             restart: bool = False, confirm: Confirm | None = None) -> None:
    """Before a synchronous run (a migration or a sync): no batch job of these collections
    may still be running (the run would pay for its texts again); `--restart` cancels them
    (after asking)."""
    ledger = BatchLedger(state)
    running = [job for job in ledger.jobs(open_only=True) if job.scope in scopes]
    if not running:
        return
    api = embedder.batches() if restart else None
    if api is None:
        texts = sum(job.texts for job in running)
        raise ConfigError(
            f"{counted(len(running), 'batch job')} with {counted(texts, 'text')} of "
            f"{', '.join(sorted({repr(j.scope) for j in running}))} "
            f"{has(len(running), 'is', 'are')} still running at the provider; a synchronous "
            f"run would pay for {has(texts, 'that text', 'those texts')} again. Collect "
            f"{has(len(running), 'it', 'them')} with `migrator migrate --batch` (--wait to wait "
            f"for {has(len(running), 'it', 'them')}), cancel {has(len(running), 'it', 'them')} "
            "and embed the rest synchronously with `migrator migrate --batch --batch-fallback "
            "sync`, or start over with `migrator migrate --restart`.")
    try:
        await _cancel_open(api, ledger, scopes, confirm)
    finally:
        await api.aclose()


def _parts(settings: Settings, embedder: Embedder) -> tuple[BatchAPI, CacheSlot]:
    api = embedder.batches()
    if api is None:
        raise ConfigError(
            f"Provider {settings.provider.name!r} has no batch API migrator speaks; batch "
            "mode works with providers openai and gemini. Drop --batch (provider.batch) to "
            "embed synchronously.")
    slot = embedder.cache_slot("document")
    if slot is None:
        raise ConfigError("Batch mode brings its vectors in through the embedding cache: "
                          "turn it on (migration.cache: true, or drop --no-cache).")
    return api, slot


async def _collect(api: BatchAPI, ledger: BatchLedger, slot: CacheSlot, report: BatchReport,
                   usage: Usage | None, *, keep: bool) -> None:
    for job in ledger.jobs(open_only=True):
        batch = await _started(api, ledger, job)
        if batch is None or not batch.finished:
            continue
        requests = ledger.requests(job)
        counts = {custom_id: len(keys) for custom_id, keys in requests.items()}
        answered: set[bytes] = set()
        problems: list[str] = []
        for file_id in (batch.output_file, batch.error_file):
            if not file_id:
                continue
            for line in await api.results(file_id, counts):
                keys = requests.get(line.custom_id)
                if line.vectors is None or keys is None:
                    problems.append(line.error or "no vectors")
                    continue
                chosen = keys if line.rows is None else [keys[row] for row in line.rows]
                slot.put(chosen, line.vectors, _shares(len(chosen), line.tokens))
                answered.update(chosen)
                if usage is not None:  # the bill, at the batch price
                    tokens = line.tokens if line.tokens is not None else round(
                        job.tokens * len(chosen) / max(job.texts, 1))  # estimated
                    usage.answered(len(chosen), tokens, line.tokens is None,
                                   price_factor=api.discount)
        unanswered = [key for keys in requests.values() for key in keys if key not in answered]
        refused_for_now = batch.status == "failed" and bool(
            batch.error_codes() & REFUSED_FOR_NOW)
        error = batch.describe_errors() if batch.status == "failed" else (
            "; ".join(sorted(set(problems))[:3]) or None)
        collected = len(answered)
        ledger.close_job(job, status="refused" if refused_for_now else (
            "collected" if batch.status != "failed" else "failed"),
            collected=collected, unanswered=unanswered, error=error,
            attempt=batch.status != "failed")
        report.collected_jobs += 1
        report.collected_texts += collected
        report.resent_texts += len(unanswered)
        report.refused_jobs += int(refused_for_now)
        if not keep:
            for file_id in (job.input_file, batch.output_file, batch.error_file):
                if file_id:
                    await api.delete_file(file_id)
            ledger.update(job.seq, files_deleted=1)
        if batch.status == "failed" and not refused_for_now:
            raise ProviderError(
                f"{api.label} failed batch {batch.id} (job {job.seq}): "
                f"{batch.describe_errors()}. Its {job.texts:,} texts are free to be sent "
                "again; fix the cause and run the same command again.", provider=api.label)


async def _cancel_open(api: BatchAPI, ledger: BatchLedger, scopes: list[str],
                       confirm: Confirm | None) -> None:
    """--restart: cancel the open jobs of `scopes` at the provider, delete their input
    files, and release their texts (a cancelled batch's partial output is not collected)."""
    jobs = [job for job in ledger.jobs(open_only=True) if job.scope in scopes]
    names = [f"batch job {j.seq} ({j.batch_id or 'not created'}, {j.texts:,} texts)"
             for j in jobs]
    if jobs and confirm is not None and not confirm(names):
        raise MigratorError("--restart was not confirmed; nothing was cancelled.")
    for job in jobs:
        if job.batch_id is not None:
            await api.cancel(job.batch_id)
        await api.delete_file(job.input_file)
        keys = [key for keys in ledger.requests(job).values() for key in keys]
        ledger.close_job(job, status="cancelled", collected=0, unanswered=keys,
                         error="cancelled by --restart", attempt=False)
        ledger.update(job.seq, files_deleted=1)
    for scope in scopes:
        ledger.mark_scanned(scope, False)


async def _started(api: BatchAPI, ledger: BatchLedger, job: JobRow) -> BatchJob | None:
    """The provider's batch of `job`, created now if a crash came between uploading its
    file and creating it."""
    if job.batch_id is None:
        batch = await api.find(job.input_file) or await api.create(
            job.input_file, {"migrator_job": str(job.seq), "scope": job.scope})
        ledger.update(job.seq, batch_id=batch.id, status=_open_status(batch))
        return None if not batch.finished else batch
    batch = await api.get(job.batch_id)
    ledger.update(job.seq, status=_open_status(batch))
    return batch


def _open_status(batch: BatchJob) -> str:
    # a finished batch stays open in the ledger until it is collected
    return "finalizing" if batch.finished else batch.status


def _shares(count: int, tokens: int | None) -> list[int]:
    if not tokens:
        return [0] * count
    base, extra = divmod(tokens, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


class _Files:
    """Requests gathered into input files within the provider's limits; each full file is
    uploaded, recorded and started."""

    def __init__(self, api: BatchAPI, ledger: BatchLedger, embedder: Embedder, scope: str,
                 report: BatchReport) -> None:
        self._api, self._ledger, self._scope, self._report = api, ledger, scope, report
        self._spec, self._batch = embedder.spec, embedder.batch_size
        self._requests: list[list[str]] = []
        self._keys: list[list[bytes]] = []
        self._pending: set[bytes] = set()
        self._inputs = 0
        self._bytes = 0
        self.refused = False  # the provider refused a batch for now: stop submitting

    def holds(self, key: bytes) -> bool:
        return key in self._pending

    async def add(self, text: str, key: bytes) -> None:
        if not self._requests or len(self._requests[-1]) >= self._batch:
            if (len(self._requests) >= MAX_REQUESTS_PER_FILE
                    or self._bytes >= MAX_FILE_BYTES * 0.9):
                await self.flush()
            self._requests.append([])
            self._keys.append([])
        self._requests[-1].append(text)
        self._keys[-1].append(key)
        self._pending.add(key)
        self._inputs += 1
        self._bytes += len(text.encode()) + 8
        if self._inputs >= MAX_INPUTS_PER_BATCH:
            await self.flush()

    async def flush(self) -> None:
        if not self._requests or self.refused:
            return
        lines = b"".join(self._api.request_line(custom_id(i), texts)
                         for i, texts in enumerate(self._requests))
        tokens = sum(estimate_total(texts) for texts in self._requests)
        price = self._spec.cost(tokens)
        cost = price * self._api.discount if price is not None else None
        file_id = await self._api.upload(lines, f"migrator-{self._scope}.jsonl")
        job = self._ledger.add(scope=self._scope, provider=self._api.label,
                               input_file=file_id, requests=self._keys, tokens=tokens,
                               cost=cost or 0.0)
        batch = await self._api.create(file_id, {"migrator_job": str(job.seq),
                                                 "scope": self._scope})
        self._ledger.update(job.seq, batch_id=batch.id, status=_open_status(batch))
        if batch.status == "failed" and batch.error_codes() & REFUSED_FOR_NOW:
            self.refused = True  # collected (and released) by the next pass
        report = self._report
        report.submitted_jobs += 1
        report.submitted_texts += self._inputs
        report.submitted_tokens += tokens
        report.submitted_cost = _add(report.submitted_cost, cost)
        report.synchronous_cost = _add(report.synchronous_cost, price)
        self._requests, self._keys, self._pending = [], [], set()
        self._inputs = self._bytes = 0


def _add(total: float | None, amount: float | None) -> float | None:
    return None if total is None or amount is None else total + amount


async def _submit(api: BatchAPI, ledger: BatchLedger, slot: CacheSlot, embedder: Embedder,
                  settings: Settings, source: QdrantStore, config: CollectionSettings,
                  schema: CollectionSchema, report: BatchReport) -> None:
    """Every text of one collection that neither the cache nor a job holds, into jobs."""
    text = TextSource.from_settings(config.text_field, config.text_template)
    pages = ScrollSource(source, schema.name, page_size=settings.migration.page_size,
                         vectors=[])
    files = _Files(api, ledger, embedder, config.name, report)
    while (page := await asyncio.to_thread(pages.next_page)) is not None:
        ready = prepare(page.points, text, embedder, settings.provider.long_input)
        keys = slot.keys(ready.unique)
        have = slot.found(keys) | ledger.claimed(keys)
        for unique, key in zip(ready.unique, keys, strict=True):
            if key not in have and not files.holds(key):
                await files.add(unique, key)
        if files.refused:
            break
        if page.next_offset is None:
            break
    await files.flush()
    ledger.mark_scanned(config.name, not files.refused)
