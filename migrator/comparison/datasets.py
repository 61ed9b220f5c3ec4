"""What `compare` measures models on: documents, queries and (when known) relevance labels.

Three kinds of input:
- a BEIR directory (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`): documents are
  `title + " " + text` as BEIR and MTEB embed them; only queries with a relevant document
  in the split are scored, as BEIR does;
- a JSONL or CSV file of texts: no labels, so queries are a seeded sample of the documents
  themselves (self-retrieval) and models are compared by agreement;
- a sample of a Qdrant collection's payload text, the same way.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, DataError
from ..records import (
    Query,
    detect_format,
    point_id,
    read_beir_queries,
    read_labels,
    read_qrels,
    read_records,
)
from ..sampling import draw_sample
from ..settings import StoreSettings
from ..store import QdrantStore, opened
from ..texts import TextSource, unfilled_warning
from ..wording import counted, has

__all__ = ["collection_size", "Dataset", "DatasetKind", "DEFAULT_QUERIES", "DEFAULT_SAMPLE",
    "DEFAULT_SEED", "label", "load_beir", "load_collection", "load_dataset", "load_texts",
    "open_dataset", "sample_collection"]

DatasetKind = Literal["beir", "texts", "collection"]
DEFAULT_QUERIES = 200  # self-retrieval queries drawn from an unlabelled corpus
DEFAULT_SEED = 13
DEFAULT_SAMPLE = 2000  # documents drawn from a collection
FIRST_POINTS = 256  # whose payloads show a template field that none has (as `plan` reads)


@dataclass
class Dataset:
    name: str
    kind: DatasetKind
    doc_ids: list[str]
    doc_texts: list[str]
    queries: list[Query]
    population: int | None = None  # documents in the whole source, when sampled from one
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a template field nothing has

    @property
    def labelled(self) -> bool:
        return any(q.gains for q in self.queries)

    def fingerprint(self) -> str:
        """sha256 over documents and queries as embedded: two reports with the same value
        measured the same texts."""
        digest = hashlib.sha256()
        for doc_id, text in zip(self.doc_ids, self.doc_texts, strict=True):
            digest.update(f"d\0{doc_id}\0{text}\0".encode())
        for query in self.queries:
            labels = json.dumps(query.gains, sort_keys=True)
            digest.update(f"q\0{query.id}\0{query.text}\0{labels}\0".encode())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "documents": len(self.doc_ids),
                "queries": len(self.queries), "labelled": self.labelled,
                "population": self.population, "sha256": self.fingerprint(),
                "notes": list(self.notes), "warnings": list(self.warnings)}


def load_beir(directory: Path, *, split: str = "test", max_queries: int | None = None
              ) -> Dataset:
    """A BEIR dataset: every document, and the queries of `split` that have a relevant one."""
    corpus, queries_file = directory / "corpus.jsonl", directory / "queries.jsonl"
    qrels_file = directory / "qrels" / f"{split}.tsv"
    missing = [p.name if p.parent == directory else f"qrels/{p.name}"
               for p in (corpus, queries_file, qrels_file) if not p.is_file()]
    if missing:
        raise ConfigError(f"{directory} is not a BEIR dataset: {', '.join(missing)} missing. "
                          "A BEIR directory holds corpus.jsonl, queries.jsonl and "
                          f"qrels/{split}.tsv (choose another split with --split).")
    doc_ids, doc_texts = [], []
    for number, row in enumerate(read_records(corpus, "jsonl"), start=1):
        text = f"{row.get('title') or ''} {row.get('text') or ''}".strip()
        if "_id" not in row or not text:
            raise DataError(f"{corpus}: record {number} needs an \"_id\" and a title or text.")
        doc_ids.append(str(row["_id"]))
        doc_texts.append(text)
    gains = read_qrels(qrels_file)
    known = set(doc_ids)
    unknown = {d for labels in gains.values() for d in labels} - known
    if unknown:
        raise DataError(f"{qrels_file} names {counted(len(unknown), 'document')} missing from "
                        f"corpus.jsonl, e.g. {sorted(unknown)[:3]}.")
    queries = read_beir_queries(queries_file, gains)
    notes = [f"documents embedded as title + \" \" + text; {len(queries)} queries of split "
             f"{split!r} with at least one relevant document"]
    if max_queries is not None and len(queries) > max_queries:
        notes.append(f"first {max_queries} of {len(queries)} labelled queries scored")
        queries = queries[:max_queries]
    if not queries:
        raise DataError(f"No query in {queries_file} has a relevant document in {qrels_file}.")
    return Dataset(directory.name, "beir", doc_ids, doc_texts, queries, notes=notes)


def load_texts(path: Path, *, text: TextSource | None = None, id_field: str | None = None,
               sample: int | None = None, queries: int = DEFAULT_QUERIES,
               seed: int = DEFAULT_SEED, keep: Collection[str] = ()) -> Dataset:
    """A JSONL or CSV file of texts (a field, a dotted path or a template over each record,
    default the field `text`); records without text are left out and counted. Documents
    whose ids are in `keep` (the relevant ones of labelled queries) are always sampled."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; `compare` reads a BEIR directory (with "
                          "corpus.jsonl) or a JSONL/CSV file of texts.")
    if not path.is_file():
        raise ConfigError(f"Dataset {path} does not exist; give a BEIR directory, a JSONL/CSV "
                          "file of texts, or --collection.")
    fmt = detect_format(path)
    source = text or TextSource.from_settings(None, None)
    ids, texts, without = [], [], 0
    filled: set[str] = set()
    for number, record in enumerate(read_records(path, fmt), start=1):
        filled |= source.filled(record)
        value, _ = source.extract(record)
        if value is None:
            without += 1
            continue
        ident = record.get(id_field) if id_field else record.get("id", record.get("_id"))
        ids.append(str(ident if ident is not None else number))
        texts.append(value)
    if not texts:
        raise DataError(f"{path} has no record with text in its {source.describe()}; name it "
                        "with --text-field or --text-template.")
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: document ids repeat; name a unique id field with "
                        "--id-field (or leave ids out to number the records).")
    notes = [f"{counted(without, 'record')} without text in the {source.describe()} left out"
             ] if without else []
    dataset = _unlabelled(path.name, "texts", ids, texts, sample=sample, queries=queries,
                          seed=seed, population=len(texts), notes=notes, keep=set(keep))
    dataset.warnings = unfilled_warning(path.name, [f for f in source.fields if f not in filled],
                                        "its records")
    return dataset


def load_collection(store: QdrantStore, collection: str, text: TextSource, *,
                    sample: int, queries: int = DEFAULT_QUERIES, seed: int = DEFAULT_SEED,
                    keep: Collection[str] = ()) -> Dataset:
    """A seeded sample of a collection's payload texts (one payload-only pass), plus the
    points whose ids are in `keep` (the relevant ones of labelled queries)."""

    given, collection = collection, store.resolve(collection)  # an alias: what it serves
    population = store.count(collection)
    drawn, without = draw_sample(store, collection, text, sample, seed)
    if not drawn:
        raise DataError(f"Collection {collection!r} has no point with text in its "
                        f"{text.describe()}; name the field with --text-field.")
    wanted = {str(point_id(k, 0)) for k in keep}
    drawn += _fetch(store, collection, text, wanted - {str(i) for i, _ in drawn})
    drawn.sort(key=lambda item: str(item[0]))
    notes = [f"{counted(without, 'point')} without text left out"] if without else []
    if given != collection:
        notes.append(f"{given!r} is an alias of collection {collection!r}")
    dataset = _unlabelled(given, "collection", [str(i) for i, _ in drawn],
                          [t for _, t in drawn], sample=None, queries=queries, seed=seed,
                          population=population, notes=notes)
    first = store.scroll(collection, limit=FIRST_POINTS, vectors=False).points
    dataset.warnings = text.unfilled_warnings(given, [p.payload for p in first])
    return dataset


def _fetch(store: QdrantStore, collection: str, text: TextSource, wanted: set[str]
           ) -> list[tuple[Any, str]]:
    """(id, text) of the points with these ids; a missing point or one without text is an
    error: a relevant document that cannot be retrieved would make every model look worse."""
    if not wanted:
        return []
    points = store.retrieve(collection, [point_id(i, 0) for i in sorted(wanted)], vectors=False)
    found = [(p.id, text.extract(p.payload)[0]) for p in points]
    missing = wanted - {str(i) for i, t in found if t is not None}
    if missing:
        raise DataError(f"{counted(len(missing), 'relevant id')} "
                        f"{has(len(missing), 'is not a point', 'are not points')} with text "
                        f"in {collection!r}, e.g. {sorted(missing)[:3]}.")
    return [(i, t) for i, t in found if t is not None]


def _unlabelled(name: str, kind: DatasetKind, ids: list[str], texts: list[str], *,
                sample: int | None, queries: int, seed: int, population: int,
                notes: list[str], keep: set[str] | None = None) -> Dataset:
    if queries < 1 or (sample is not None and sample < 1):
        raise ConfigError("Draw at least one document and one query (--sample, --queries).")
    rng = random.Random(seed)
    if sample is not None and sample < len(ids):
        kept = [i for i, doc in enumerate(ids) if doc in (keep or ())]
        rest = [i for i, doc in enumerate(ids) if doc not in (keep or ())]
        chosen = sorted(kept + rng.sample(rest, max(0, min(len(rest), sample - len(kept)))))
        ids, texts = [ids[i] for i in chosen], [texts[i] for i in chosen]
        notes.append(f"seeded sample (seed {seed}) of {len(ids)} of {population} documents"
                     + (f", the {len(kept)} relevant ones included" if kept else ""))
    picked = sorted(rng.sample(range(len(ids)), min(queries, len(ids))))
    drawn = [Query(f"self:{ids[i]}", texts[i], document=ids[i]) for i in picked]
    notes.append(f"no relevance labels: {len(drawn)} documents drawn (seed {seed}) as "
                 "self-retrieval queries; models compared by agreement with a reference")
    return Dataset(name, kind, ids, texts, drawn, population=population, notes=notes)


def label(dataset: Dataset, queries: list[Query], source: str) -> Dataset:
    """`dataset` scored with these labelled queries instead of self-retrieval."""
    if dataset.kind == "collection":  # ids as the store spells them (ingest's derived UUIDs)
        queries = [Query(q.id, q.text, {str(point_id(d, 0)): g for d, g in q.gains.items()})
                   for q in queries]
    unknown = {d for q in queries for d in q.gains} - set(dataset.doc_ids)
    if unknown:
        raise DataError(f"{counted(len(unknown), 'relevant id')} in {source} "
                        f"{has(len(unknown), 'is not a document', 'are not documents')} of "
                        f"{dataset.name}, e.g. {sorted(unknown)[:3]}.")
    notes = [n for n in dataset.notes if not n.startswith("no relevance labels")]
    notes.append(f"{len(queries)} labelled queries from {source}")
    return Dataset(dataset.name, dataset.kind, dataset.doc_ids, dataset.doc_texts, queries,
                   population=dataset.population, notes=notes, warnings=dataset.warnings)


def load_dataset(path: Path, *, split: str = "test", text: TextSource | None = None,
                 id_field: str | None = None, sample: int | None = None,
                 queries: int | None = None, seed: int = DEFAULT_SEED,
                 keep: Collection[str] = ()) -> Dataset:
    """A BEIR directory or a JSONL/CSV file, by what `path` is."""
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        if sample is not None:
            raise ConfigError("--sample does not apply to a BEIR dataset: its labels are scored "
                              "against the whole corpus. Limit the queries instead.")
        return load_beir(path, split=split, max_queries=queries)
    return load_texts(path, text=text, id_field=id_field, sample=sample,
                      queries=DEFAULT_QUERIES if queries is None else queries, seed=seed,
                      keep=keep)


def sample_collection(store: StoreSettings, collection: str, text: TextSource, *,
                      sample: int, queries: int = DEFAULT_QUERIES, seed: int = DEFAULT_SEED,
                      keep: Collection[str] = ()) -> Dataset:
    """`load_collection` on the store the settings describe (opened and closed here)."""
    with opened(store, None) as (source, _):
        return load_collection(source, collection, text, sample=sample, queries=queries,
                               seed=seed, keep=keep)


def collection_size(store: StoreSettings, collection: str) -> int:
    """Points in a collection (or the collection an alias names): what to extrapolate to."""
    with opened(store, None) as (source, _):
        return source.count(source.resolve(collection))


def open_dataset(path: Path | None = None, *, collection: str | None = None,
                 store: StoreSettings | None = None, text: TextSource | None = None,
                 labels: Path | None = None, split: str = "test", id_field: str | None = None,
                 sample: int | None = None, queries: int | None = None,
                 seed: int = DEFAULT_SEED) -> Dataset:
    """What `compare` measures on: a BEIR directory or JSONL/CSV file at `path`, or a sample
    of `collection` in `store`; scored with `labels` (JSONL) when given.

    Raises:
        ConfigError: neither or both of `path` and `collection`; labels for a BEIR set.
        DataError: unreadable records, relevant ids that are not documents.
    """
    if (path is None) == (collection is None):
        raise ConfigError("Give a dataset (a BEIR directory or a JSONL/CSV file) or a "
                          "collection to sample, not both and not neither.")
    labelled = read_labels(labels, limit=queries) if labels is not None else []
    keep = {doc for query in labelled for doc in query.gains}
    if path is not None:
        dataset = load_dataset(path, split=split, text=text, id_field=id_field, sample=sample,
                               queries=queries, seed=seed, keep=keep)
    elif collection is not None:  # one of the two, as checked above
        dataset = sample_collection(store or StoreSettings(), collection,
                                    text or TextSource.from_settings(None, None),
                                    sample=sample or DEFAULT_SAMPLE,
                                    queries=queries or DEFAULT_QUERIES, seed=seed, keep=keep)
    if not labelled:
        return dataset
    if dataset.kind == "beir":
        raise ConfigError("A BEIR dataset brings its own labels (qrels); --labels is for a "
                          "JSONL/CSV file or a collection.")
    return label(dataset, labelled, str(labels))
