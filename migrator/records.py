"""Reading input files: JSONL, CSV/TSV and BEIR directories, record ids as point ids,
BEIR qrels and queries, and labelled queries (`Query`, the one type `ingest`, `compare` and
verification share). Every error names the file, and the line where there is one."""

from __future__ import annotations

import csv
import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import BadInput, ConfigError, DataError
from .store import PointId

__all__ = ["detect_format", "point_id", "Query", "read_beir_queries", "read_labels",
           "read_qrels", "read_records"]


@dataclass
class Query:
    id: str
    text: str
    gains: dict[str, float] = field(default_factory=dict)  # document id -> graded relevance
    document: str | None = None  # the document this query was drawn from (self-retrieval)


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
    """The records of a JSONL file, a CSV file or a BEIR corpus, one dict each.

    Raises:
        BadInput: a line is not UTF-8 or not a JSON object; a CSV's quoting is broken, or
            a row has more fields than its header.
    """
    if fmt == "beir":
        path = path / "corpus.jsonl"
    if fmt == "csv":
        yield from _csv_records(path)
        return
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{number} is not valid JSON: {exc.msg}.") from exc
        if not isinstance(record, dict):
            raise BadInput(f"{path}:{number} is not a JSON object.")
        yield record


def _csv_records(path: Path) -> Iterator[dict[str, Any]]:
    """A CSV file's rows as dicts keyed by its header; a row that cannot be read as the
    header says, whole, is an error rather than a record cut short or run together."""
    lines = (line for _, line in _lines(path))
    header = next(lines, "")
    delimiter = _delimiter(path, header)
    # strict: a quote left open would otherwise swallow every line after it, silently
    reader = csv.DictReader(itertools.chain([header], lines), strict=True, delimiter=delimiter)
    read = 0  # lines read before the record being read
    try:
        columns = len(reader.fieldnames or ())
        read = reader.line_num
        for record in reader:
            if None in record:  # where DictReader puts fields past the header's
                raise BadInput(
                    f"{path}:{read + 1} has {columns + len(record[None])} fields and the "
                    f"header {columns}: a text holding {delimiter!r} must be in double "
                    "quotes. Fix the file (nothing is cut off silently).")
            yield record
            read = reader.line_num
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise BadInput(f"{path}:{read + 1} has a field longer than Python's csv module "
                           f"reads ({csv.field_size_limit():,} characters); give texts this "
                           "long as JSONL.") from exc
        raise BadInput(f"{path}:{read + 1} is not valid CSV ({exc}): a quoted field ends "
                       "with a quote, and a quote inside one is written twice (\"\"). Fix "
                       "the quoting.") from exc


def _delimiter(path: Path, header: str) -> str:
    """Tab for .tsv; else a comma, unless the header has none and is separated by one of
    `;` (what spreadsheets write where the comma is the decimal mark), `|` or tab."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    used = [sep for sep in ";|\t" if sep in header]
    return used[0] if "," not in header and len(used) == 1 else ","


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, without the byte order mark a spreadsheet's
    "CSV UTF-8" starts with (it would stick to the first column's name); a byte that is not
    UTF-8 is named exactly."""
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInput(
                    f"{path}:{number} is not UTF-8: byte 0x{raw[exc.start]:02x} at byte "
                    f"{offset + exc.start:,} of the file. Convert the file to UTF-8 (e.g. "
                    "`iconv -f latin1 -t utf-8`).") from exc
            offset += len(raw)
            yield number, text.removeprefix("\ufeff") if number == 1 else text


def point_id(value: Any, row: int) -> PointId:
    """A Qdrant id for a record: its integer or UUID id, else a stable UUID of its id.

    Raises:
        BadInput: the id is a boolean, a number with a fraction, or a structure.
    """
    if value is None:
        return row
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer() or (
            isinstance(value, (dict, list))):
        raise BadInput(f"Record {row + 1} has the id {value!r}, which cannot be a point id: "
                       "use an integer, a UUID or a string.")
    if isinstance(value, float):
        value = int(value)
    if isinstance(value, int) and value >= 0:
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, text))


def read_beir_queries(queries_file: Path, gains: dict[str, dict[str, float]]) -> list[Query]:
    """The queries of a BEIR set that have a relevant document (`gains`, from `read_qrels`),
    in file order: what `compare` scores and what verification's labelled check uses."""
    queries = []
    for row in read_records(queries_file, "jsonl"):
        query_id = str(row.get("_id"))
        if gains.get(query_id):
            text = str(row.get("text") or "").strip()
            if not text:
                raise DataError(f"{queries_file}: query {query_id!r} has relevance labels "
                                "but no text.")
            queries.append(Query(query_id, text, gains[query_id]))
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    """BEIR qrels (`query-id<TAB>corpus-id<TAB>score`): query -> document -> gain, positive
    scores only."""
    gains: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:  # a byte order mark or not
        reader = csv.DictReader(handle, delimiter="\t")
        needed = {"query-id", "corpus-id", "score"}
        if not needed <= set(reader.fieldnames or ()):
            raise DataError(f"{path} needs the header 'query-id<TAB>corpus-id<TAB>score'.")
        for number, row in enumerate(reader, start=2):
            try:
                score = float(row["score"])
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path}:{number}: score {row['score']!r} is not a "
                                "number.") from exc
            if score > 0:
                gains.setdefault(row["query-id"], {})[row["corpus-id"]] = score
    return gains


def read_labels(path: Path, *, limit: int | None = None) -> list[Query]:
    """Labelled queries from JSONL: {"query": text, "relevant_ids": [ids]} (each gain 1),
    or {"query": text, "relevant": {id: gain}}; an optional "id" names the query."""
    if not path.is_file():
        raise ConfigError(f"Labels file {path} does not exist; give JSONL of "
                          "{\"query\", \"relevant_ids\"}.")
    queries = []
    for number, row in enumerate(read_records(path, "jsonl"), start=1):
        relevant = row.get("relevant")
        if not isinstance(relevant, dict):
            ids = row.get("relevant_ids")
            relevant = {i: 1.0 for i in ids} if isinstance(ids, list) else None
        text = row.get("query")
        if not isinstance(text, str) or not text.strip() or not relevant:
            raise DataError(f"{path}: record {number} needs a \"query\" and a non-empty "
                            "\"relevant_ids\" list (or a \"relevant\" map of id to gain).")
        gains = {str(doc): float(gain) for doc, gain in relevant.items() if float(gain) > 0}
        queries.append(Query(str(row.get("id", number)), text, gains))
        if limit is not None and len(queries) >= limit:
            break
    if not queries:
        raise DataError(f"{path} holds no labelled query.")
    return queries
