"""`ingest()`: load texts from JSONL, CSV or a BEIR corpus into a new collection."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .blocking import run_blocking
from .databases import make_directory
from .embedding import Embedder, embedding
from .embedding.tokens import fit_all, token_counter
from .errors import BadInput, CollectionExists, ConfigError, InputTooLong
from .interrupts import Stop, stoppable
from .naming import check_new_name
from .ownership import refuse_if_served
from .pipeline import Pipeline, Progress, SkipLog, Stats
from .planning import local_mode_warning
from .records import detect_format, point_id, read_records
from .results import Bill
from .settings import Distance, Settings
from .spending import bill_of, paid_so_far
from .store import UNNAMED, Page, Point, QdrantStore, opened
from .texts import NOT_UNICODE, TextSource, unfilled_warning
from .vector_cache import open_cache
from .wording import counted, has

__all__ = ["BEIR_TEMPLATE", "check_records", "detect_format", "ingest", "IngestResult",
    "InputFormat", "point_id", "read_records", "RecordSource"]

InputFormat = Literal["auto", "jsonl", "csv", "beir"]
BEIR_TEMPLATE = "{title} {text}"  # how BEIR/MTEB embed documents: title, a space, the text


@dataclass
class IngestResult:
    """What `ingest()` wrote."""

    collection: str
    source: str
    format: str
    dims: int
    model: str
    provider: str
    seconds: float
    stats: Stats
    warnings: list[str] = field(default_factory=list)
    bill: Bill = field(default_factory=Bill)  # what the provider was paid, as for migrate

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__
                if k not in ("stats", "bill")}
        return {**data, "stats": self.stats.to_dict(), "bill": self.bill.to_dict()}


class RecordSource:
    """Pages of records turned into points (a `PageSource`)."""

    def __init__(self, records: Iterator[dict[str, Any]], *, page_size: int,
                 id_field: str | None) -> None:
        self._records = records
        self._page_size = page_size
        self._id_field = id_field
        self._row = 0

    def next_page(self) -> Page | None:
        points: list[Point] = []
        for record in self._records:
            value = record.get(self._id_field) if self._id_field else None
            points.append(Point(point_id(value, self._row), record, {}))
            self._row += 1
            if len(points) == self._page_size:
                return Page(points, next_offset=self._row)
        return Page(points, next_offset=None)


def ingest(
    path: Path | str,
    collection: str,
    settings: Settings,
    *,
    format: InputFormat = "auto",
    text_field: str | None = None,
    text_template: str | None = None,
    id_field: str | None = None,
    vector: str = UNNAMED,
    distance: Distance = "Cosine",
    store: QdrantStore | None = None,
    embedder: Embedder | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> IngestResult:
    """Embed the texts of a file with the configured provider into a new collection.

    Each record becomes one point: its id from `id_field` (`_id` for BEIR, `id` when
    present), its payload the whole record. Records without text are listed in
    `<state_dir>/<collection>.skipped.jsonl` and left out.

    Raises:
        ConfigError: unknown format, bad text settings, or a name Qdrant would refuse.
        CollectionExists: `collection` already exists.
        DataError: a line is not JSON.
    """
    try:
        check_new_name(collection)
    except ValueError as exc:
        raise ConfigError(f"--collection: {exc}; choose another name.") from exc
    source_path = Path(path)
    if not source_path.exists():
        raise ConfigError(f"{source_path} does not exist; give a JSONL or CSV file, or a BEIR "
                          "corpus directory.")
    fmt = detect_format(source_path) if format == "auto" else format
    if fmt == "beir" and text_field is None and text_template is None:
        text_template = BEIR_TEMPLATE
    if id_field is None:
        id_field = "_id" if fmt == "beir" else _guess_id_field(source_path, fmt)
    text = TextSource.from_settings(text_field, text_template)
    return run_blocking(_ingest(source_path, fmt, collection, settings, text, id_field, vector,
                                distance, store, embedder, on_progress), "ingest")


def _guess_id_field(path: Path, fmt: Literal["jsonl", "csv", "beir"]) -> str | None:
    first = next(read_records(path, fmt), {})
    return next((name for name in ("id", "_id") if name in first), None)


async def _ingest(path: Path, fmt: Literal["jsonl", "csv", "beir"], collection: str,
                  settings: Settings, text: TextSource, id_field: str | None, vector: str,
                  distance: Distance, store: QdrantStore | None, embedder: Embedder | None,
                  on_progress: Callable[[Progress], None] | None) -> IngestResult:
    started = time.perf_counter()
    make_directory(Path(settings.migration.state_dir))  # where records without text are listed
    async with stoppable("Run the same command again: it replaces what this run wrote."
                         ) as stop:
        # the cache: a run stopped half way, run again, pays for the other half only
        with opened(settings.source, None, source_store=store, create=True) as (target, _), \
                open_cache(settings.migration.state_dir, settings.migration.cache) as cache:
            async with embedding(settings.provider, embedder, cache=cache) as model:
                since = model.usage.snapshot() if model.usage is not None else None
                stop.paid = functools.partial(paid_so_far, model, since)
                warnings = [*model.limit_notes, *check_records(
                    path, fmt, text, id_field, model, settings.provider.long_input)]
                with model.usage.during("ingest") if model.usage is not None else (
                        contextlib.nullcontext()):
                    dims = await _embed_file(path, fmt, collection, settings, text, id_field,
                                             vector, distance, target, model, on_progress,
                                             stop)
                warnings += local_mode_warning(target, dims[1].written)
    return IngestResult(collection, str(path), fmt, dims[0], model.spec.model,
                        model.spec.provider, time.perf_counter() - started, dims[1], warnings,
                        bill_of(model, since))


def check_records(path: Path, fmt: Literal["jsonl", "csv", "beir"], text: TextSource,
                  id_field: str | None, model: Embedder, long_input: str) -> list[str]:
    """Read the whole input once before anything is created: every record gets a point of
    its own, with text, within the model's limit unless the long-input policy handles it.
    Returns warnings (a template field no record has).

    Raises:
        BadInput: ids missing, repeated or unusable, no record with text, a text not valid
            Unicode.
        InputTooLong: texts over the model's limit under `long_input: fail`.
    """
    limit, count = model.spec.max_tokens_per_input, token_counter(model)
    seen: set[Any] = set()
    repeated: list[Any] = []
    without_id: list[int] = []  # record numbers, from 1
    too_long: list[Any] = []
    keys: dict[str, None] = {}
    filled: set[str] = set()
    records = with_text = 0
    for row, record in enumerate(read_records(path, fmt)):
        records += 1
        keys.update(dict.fromkeys(record))
        filled |= text.filled(record)
        if id_field and record.get(id_field) in (None, ""):
            without_id.append(row + 1)
        pid = point_id(record.get(id_field) if id_field else None, row)
        if pid in seen:
            repeated.append(pid)
        seen.add(pid)
        body, reason = text.extract(record)
        if reason.startswith(NOT_UNICODE):
            raise BadInput(f"Record {pid!r} of {path}: {reason}. Fix that text in the file.")
        if body is None:
            continue
        with_text += 1
        if long_input == "fail" and len(body.encode("utf-8")) > limit and count(body) > limit:
            too_long.append(pid)  # a token is at least one byte: short texts need no count
    if without_id and len(without_id) == records:
        raise BadInput(
            f"No record of {path} has the id field {id_field!r}; {_its_keys(fmt, keys)}. "
            "Give --id-field one of them. Nothing was created.")
    if without_id:
        raise BadInput(
            f"{counted(len(without_id), 'record')} of {path} {has(len(without_id), 'has', 'have')}"
            f" no {id_field!r}, the id field of the others ("
            f"{has(len(without_id), 'record', 'records')} {_first(without_id, str)}): each "
            "needs an id of its own. Fill them in, or give --id-field another field. Nothing "
            "was created.")
    if repeated:
        raise BadInput(
            f"{counted(len(repeated), 'record')} of {path} "
            f"{has(len(repeated), 'repeats', 'repeat')} an id of an earlier one "
            f"({_first(repeated)}): "
            "each id is one point, so all but one of each would be lost. Give --id-field a "
            "field that is unique, or remove the repeats. Nothing was created.")
    if not records:
        raise BadInput(f"{path} holds no records (read as {fmt}); give a file with the texts "
                       "to ingest. Nothing was created.")
    if not with_text:
        raise BadInput(
            f"None of the {records} records of {path} has text in {text.describe()}; "
            f"{_its_keys(fmt, keys)}. Give --text-field or --text-template. Nothing was "
            "created.")
    if too_long:
        raise InputTooLong(
            f"{counted(len(too_long), 'record')} of {path} {has(len(too_long), 'is', 'are')} "
            f"longer than {model.spec.model} accepts ({limit} tokens): {_first(too_long)}. "
            "Set provider.long_input (--long-input) to truncate or chunk-mean, or shorten "
            "those texts. Nothing was created.")
    return unfilled_warning(path.name, [f for f in text.fields if f not in filled],
                            f"its {counted(records, 'record')}")


def _first(items: list[Any], shown: Callable[[Any], str] = repr) -> str:
    """The first ten of `items`, as a message lists them."""
    return ", ".join(shown(item) for item in items[:10])


def _its_keys(fmt: str, keys: dict[str, None]) -> str:
    return f"its {'columns' if fmt == 'csv' else 'keys'} are: {', '.join(sorted(keys)[:20])}"


async def _embed_file(path: Path, fmt: Literal["jsonl", "csv", "beir"], collection: str,
                      settings: Settings, text: TextSource, id_field: str | None, vector: str,
                      distance: Distance, target: QdrantStore, model: Embedder,
                      on_progress: Callable[[Progress], None] | None,
                      stop: Stop) -> tuple[int, Stats]:
    made: dict[str, Any] = {"ingest": str(path.resolve()), "provider": model.spec.provider,
                            "model": model.spec.model}
    if (served := target.aliases().get(collection)) is not None:  # before anything is paid
        raise ConfigError(f"{collection!r} is an alias in {target.location}, serving "
                          f"{served!r}: ingest writes into a new collection of its own. "
                          "Choose another --collection. Nothing was changed.")
    found = target.provenance(collection) if target.exists(collection) else None
    if found is not None and not _same_ingest(found, made):  # before anything is paid for
        raise CollectionExists(_taken(collection, target, found))
    dims = model.dims or int((await model.embed(["dimension probe"])).vectors.shape[1])
    made["dims"] = dims
    first = next((body for record in read_records(path, fmt)
                  if (body := text.extract(record)[0])), None)
    # an ingest run again: is it the model cached before? Asked of the text as the pipeline
    # prepares it (cut under long_input), the one the cache holds and the model accepts
    prepared = fit_all([first], model, settings.provider.long_input).unique if first else []
    if prepared:
        await model.check_cache(prepared[0])
    if found is not None:  # what an earlier run of this same command made (maybe unfinished)
        if not _same_ingest(found, made):  # at another size
            raise CollectionExists(_taken(collection, target, found))
        refuse_if_served(target, collection, "ingesting again would replace it")
        target.delete_collection(collection)
    target.create(collection, vector=vector, size=dims, distance=distance,
                  provenance={**made, "created_at": time.time()})
    skip_log = SkipLog(Path(settings.migration.state_dir) / f"{collection}.skipped.jsonl",
                       collection=collection)
    backfill = Pipeline(
        source=RecordSource(read_records(path, fmt), page_size=settings.migration.page_size,
                            id_field=id_field),
        write=lambda points: target.upsert(collection, points),
        embedder=model, text=text, vector=vector, dims=dims, skip_log=skip_log,
        collection=collection, concurrency=settings.provider.concurrency,
        queue_depth=settings.migration.queue_depth, on_progress=on_progress,
        long_input=settings.provider.long_input, stop=stop,
    )
    try:
        stats = await backfill.run()
    finally:
        skip_log.close()
    if stop.requested:
        raise stop.error(
            f"{stats.written:,} records of {path} are in {collection!r}. Run the same command "
            "again: it replaces what this run wrote.")
    return dims, stats


def _taken(collection: str, target: QdrantStore, found: dict[str, Any]) -> str:
    """Why ingest will not write into an existing `collection`, and what made it."""
    made = (f", made by `migrator ingest` of {found['ingest']} with {found.get('provider')} "
            f"{found.get('model')} at {found.get('dims')} dims" if found.get("ingest") else
            ", made by a migration" if found.get("migration") else "")
    return (f"Collection {collection!r} already exists in {target.location}{made}. ingest "
            "writes into a new collection, or replaces one the same command (same file, "
            "provider, model and size) made. Choose another --collection. Nothing was "
            "changed.")


def _same_ingest(found: dict[str, Any], made: dict[str, Any]) -> bool:
    return bool(found) and all(found.get(key) == value for key, value in made.items())
