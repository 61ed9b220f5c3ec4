"""`ingest()`: load texts from JSONL, CSV or a BEIR corpus into a new collection."""

from __future__ import annotations

import asyncio
import csv
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, DataError
from .pipeline import Backfill, Progress, SkipLog, Stats
from .providers import Embedder, build_embedder
from .settings import Distance, Settings
from .store import UNNAMED, Page, Point, PointId, QdrantStore, opened
from .texts import TextSource

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

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "stats"}
        data["stats"] = self.stats.to_dict()
        return data


def detect_format(path: Path) -> Literal["jsonl", "csv", "beir"]:
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return "beir"
        raise ConfigError(f"{path} is a directory without corpus.jsonl; a BEIR corpus "
                          "directory holds corpus.jsonl (and queries.jsonl, qrels/).")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    raise ConfigError(f"Cannot tell the format of {path}; give --format jsonl, csv or beir.")


def read_records(path: Path, fmt: Literal["jsonl", "csv", "beir"]) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file, a CSV file or a BEIR corpus, one dict each."""
    if fmt == "beir":
        path = path / "corpus.jsonl"
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as handle:
            dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
            yield from csv.DictReader(handle, dialect=dialect)
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number} is not valid JSON: {exc.msg}.") from exc
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number} is not a JSON object.")
            yield record


def point_id(value: Any, row: int) -> PointId:
    """A Qdrant id for a record: its integer or UUID id, else a stable UUID of its id."""
    if value is None:
        return row
    if isinstance(value, int) and value >= 0:
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, text))


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
        ConfigError: unknown format or bad text settings.
        CollectionExists: `collection` already exists.
        DataError: a line is not JSON.
    """
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
    return asyncio.run(_ingest(source_path, fmt, collection, settings, text, id_field, vector,
                               distance, store, embedder, on_progress))


def _guess_id_field(path: Path, fmt: Literal["jsonl", "csv", "beir"]) -> str | None:
    first = next(read_records(path, fmt), {})
    return next((name for name in ("id", "_id") if name in first), None)


async def _ingest(path: Path, fmt: Literal["jsonl", "csv", "beir"], collection: str,
                  settings: Settings, text: TextSource, id_field: str | None, vector: str,
                  distance: Distance, store: QdrantStore | None, embedder: Embedder | None,
                  on_progress: Callable[[Progress], None] | None) -> IngestResult:
    started = time.perf_counter()
    with opened(settings.source, None, source_store=store) as (target, _):
        model = embedder or build_embedder(settings.provider)
        try:
            dims = await _embed_file(path, fmt, collection, settings, text, id_field, vector,
                                     distance, target, model, on_progress)
        finally:
            if embedder is None:
                await model.aclose()
    return IngestResult(collection, str(path), fmt, dims[0], model.spec.model,
                        model.spec.provider, time.perf_counter() - started, dims[1])


async def _embed_file(path: Path, fmt: Literal["jsonl", "csv", "beir"], collection: str,
                      settings: Settings, text: TextSource, id_field: str | None, vector: str,
                      distance: Distance, target: QdrantStore, model: Embedder,
                      on_progress: Callable[[Progress], None] | None) -> tuple[int, Stats]:
    dims = model.dims or int((await model.embed(["dimension probe"])).vectors.shape[1])
    target.create(collection, vector=vector, size=dims, distance=distance)
    skip_log = SkipLog(Path(settings.migration.state_dir) / f"{collection}.skipped.jsonl",
                       collection=collection)
    backfill = Backfill(
        source=RecordSource(read_records(path, fmt), page_size=settings.migration.page_size,
                            id_field=id_field),
        write=lambda points: target.upsert(collection, points),
        embedder=model, text=text, vector=vector, dims=dims, skip_log=skip_log,
        collection=collection, concurrency=settings.provider.concurrency,
        queue_depth=settings.migration.queue_depth, on_progress=on_progress,
    )
    try:
        return dims, await backfill.run()
    finally:
        skip_log.close()
