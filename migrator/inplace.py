"""The in-place strategy: the new model's vector is added to the source collection itself
under a name of its own, filled point by point (only that vector is written: a point
deleted meanwhile stays deleted), caught up, verified against the old vector of the same
points; the application then switches its queries' `using`. No data is copied and no
alias moves.

What this migration embedded is kept in the state (each point's text hash): a catch-up
re-embeds a point whose text changed since, or that lacks the new vector. The state, not a
payload field, because an in-place migration must leave payloads exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable, Iterator
from typing import Any

from .catalog import ModelSpec
from .catchup import SyncStats
from .errors import ConfigError
from .jobs import Job, model_slug
from .settings import CollectionSettings, Settings
from .state import MigrationRecord, State
from .store import CollectionSchema, Page, Point, QdrantStore, opened
from .store.paging import pages
from .wording import vector_label

__all__ = ["drop_old_vector", "InPlaceCatchUp", "in_place", "name_old_vectors",
           "new_vector_name", "prepare", "refuse_rewriting", "text_sha", "using_hint",
           "writer"]

_MORE = "more"


def in_place(config: CollectionSettings, settings: Settings) -> bool:
    """Whether this collection migrates in place (its own setting, else the run's)."""
    return (config.strategy or settings.migration.strategy) == "in-place"


def name_old_vectors(settings: Settings, schemas: list[CollectionSchema],
                     records: list[MigrationRecord]) -> Settings:
    """A collection an in-place migration (of those `records`) added a vector to has two
    dense vectors: where `vector` is not set, the one to migrate is the other (the one it
    replaces). Returns the settings with it set (a copy; the caller's are left as they
    were)."""
    added = {(r.target, r.new_vector) for r in records if r.in_place and r.new_vector}
    collections = []
    for config, schema in zip(settings.collections, schemas, strict=True):
        others = [n for n in schema.vectors if (schema.name, n) not in added]
        if (config.vector is None and in_place(config, settings) and len(others) == 1
                and len(schema.vectors) > 1):
            config = config.model_copy(update={"vector": others[0]})
        collections.append(config)
    return settings.model_copy(update={"collections": collections})


def new_vector_name(config: CollectionSettings, spec: ModelSpec, dims: int) -> str:
    """`new_vector`, or the model and size: `text-embedding-3-small-512`."""
    if config.new_vector:
        return config.new_vector
    return f"{model_slug(spec)}-{dims}"


def check(config: CollectionSettings, settings: Settings, store: QdrantStore, *,
          schema: CollectionSchema, reads: str, writes: str,
          records: list[MigrationRecord]) -> bool:
    """Whether `config` migrates in place (reading vector `reads` of `schema` and writing
    `writes`; `records`, the migrations of the state directory); if so, what that cannot do
    is refused before anything is written."""
    if not in_place(config, settings):
        return False
    refuse_rewriting(config, schema, reads, records, writes)
    if config.alias:
        raise ConfigError(
            f"{config.name!r} migrates in place: no alias moves (the application switches "
            "the vector it queries with `using`). Drop `alias`, or use the new-collection "
            "strategy.")
    if settings.target is not None:
        raise ConfigError(
            f"{config.name!r} migrates in place, into the source collection itself: a "
            "separate target store makes no sense. Drop `target:` (--target-qdrant-*).")
    if config.target:
        raise ConfigError(f"{config.name!r} migrates in place: give --new-vector, not "
                          "--target.")
    store.refuse_without_named_vectors(f"The in-place migration of {config.name!r}")
    return True


def refuse_rewriting(config: CollectionSettings, schema: CollectionSchema, reads: str,
                     records: list[MigrationRecord], writes: str) -> None:
    """An in-place migration reads vector `reads` and writes `writes`: never the same one.
    That is a run of a migration whose old vector was removed (`drop-old-vector`): the only
    vector left, read by default, is the one it added.

    Raises:
        ConfigError: it would rewrite the vector it reads; nothing was changed.
    """
    if reads != writes:
        return
    added = [r for r in records if r.in_place and r.target == schema.name
             and r.new_vector == reads and r.vector not in schema.vectors]
    why = (f": the in-place migration to {added[-1].provider} {added[-1].model} added it, and "
           f"the vector it replaced ({vector_label(added[-1].vector)}) has been removed, so "
           "that migration is complete" if added else "")
    raise ConfigError(
        f"The in-place migration of {config.name!r} would read the vector it writes, "
        f"{reads!r}{why}. To move that vector to another model, run with that model; to "
        "embed it again with this one, give another --new-vector. Nothing was changed.")


def prepare(job: Job, store: QdrantStore, state: State, dims: int) -> None:
    """Add the new vector (size and distance of the run), or find the one an interrupted
    run of this migration added. A vector of that name it did not add is refused before
    the migration is recorded; the intent to add it is recorded before it is added, so a
    crash in between leaves a run that adds it, not one that refuses it."""
    record = job.record
    live = store.describe(job.schema.name)  # as it is now (a --restart may have dropped it)
    if job.target_vector in live.vectors or job.target_vector in live.sparse_vectors:
        if not record.created_vector:
            raise ConfigError(
                f"Collection {job.schema.name!r} already has a vector named "
                f"{job.target_vector!r} that this migration did not add. Choose another "
                "name with --new-vector (nothing was changed).")
        return
    record.created_vector = True
    if state.get(record.id) is None:
        state.create(record)
    else:
        state.update(record.id, created_vector=1)
    store.add_vector(job.schema.name, job.target_vector, size=dims, distance=job.distance,
                     like=job.vector)


def text_sha(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def writer(job: Job, store: QdrantStore, state: State) -> Callable[[list[Point]], None]:
    """Write a page's new vectors (and nothing else), then remember each point's text."""

    def write(points: list[Point]) -> None:
        store.set_vectors(job.schema.name, points)
        state.embedded(job.record.id, [(p.id, text_sha(job.text.extract(p.payload)[0] or ""))
                                       for p in points])

    return write


class InPlaceCatchUp:
    """A `PageSource` of the points to embed again: those without the new vector, and
    those whose text changed since it was embedded (by the hashes in the state). Points
    deleted meanwhile took their vectors with them."""

    def __init__(self, job: Job, store: QdrantStore, state: State, settings: Settings) -> None:
        self._job, self._store, self._state = job, store, state
        self._page_size = settings.migration.page_size
        self._pages = self._scan()
        self.stats = SyncStats()

    def _scan(self) -> Iterator[list[Point]]:
        for page in pages(self._store, self._job.schema.name, page_size=self._page_size,
                          vectors=[self._job.target_vector]):
            yield page.points

    def next_page(self) -> Page | None:
        out: list[Point] = []
        for points in self._pages:
            shas = self._state.embedded_shas(self._job.record.id, [p.id for p in points])
            for point in points:
                self._decide(point, shas, out)
            if len(out) >= self._page_size:
                return Page(out, _MORE)
        return Page(out, None)

    def _decide(self, point: Point, shas: dict[str, bytes], out: list[Point]) -> None:
        text = self._job.text.extract(point.payload)[0]
        has_vector = self._job.target_vector in point.vectors
        point.vectors = {}  # only the new vector is written
        if text is None:  # listed by the pipeline; a vector of its old text must go
            self.stats.without_text += 1
            if has_vector:
                self._store.clear_vector(self._job.schema.name, self._job.target_vector,
                                         [point.id])
                self.stats.deleted += 1
            out.append(point)
        elif not has_vector:
            self.stats.new += 1
            out.append(point)
        elif shas.get(_key(point.id)) != text_sha(text):
            self.stats.changed += 1
            out.append(point)
        else:
            self.stats.unchanged += 1


def _key(point_id: Any) -> str:
    return json.dumps(point_id)  # as the state keeps point ids


def using_hint(job: Job) -> str:
    """What the application must change: the vector its queries use."""
    name = job.target_vector
    return (f"Query {job.schema.name!r} with the new vector: REST `\"using\": \"{name}\"` in "
            f"/points/query; Python `client.query_points({job.schema.name!r}, query=..., "
            f"using={name!r})`; the other official clients take the same `using`. Then "
            f"`migrator drop-old-vector {shlex.quote(job.schema.name)} --vector "
            f"{shlex.quote(job.vector)}` frees the old one.")


def drop_old_vector(settings: Settings, collection: str, vector: str, *, force: bool = False,
                    store: QdrantStore | None = None) -> str:
    """Remove `vector` from `collection` once the application queries the new one. Refused
    while it is the collection's only dense vector, and unless an in-place migration that
    replaced it passed verification (`force` skips that one). Returns the collection.

    Raises:
        ConfigError: refused; nothing was removed.
    """
    label = vector_label(vector)
    state_dir = settings.migration.state_dir
    records: list[MigrationRecord] = []
    if (state_dir / "state.db").exists():
        with State(state_dir) as state:
            records = state.all()
    with opened(settings.target_store, None, source_store=store) as (target, _):
        name = target.resolve(collection)
        schema = target.describe(name)
        if vector not in schema.vectors:
            have = ", ".join(vector_label(n) for n in sorted(schema.vectors))
            raise ConfigError(f"Collection {name!r} has no dense vector {label} (it has "
                              f"{have}); nothing was removed.")
        if len(schema.vectors) == 1:
            raise ConfigError(f"{label} is the only dense vector of {name!r}: removing it "
                              "would leave nothing to search. Nothing was removed.")
        added = [r for r in records if r.in_place and r.target == name
                 and r.new_vector == vector and r.vector in schema.vectors]
        if added:  # --force is about verification, never about which vector goes
            raise ConfigError(
                f"{label} of {name!r} is the vector the in-place migration to "
                f"{added[-1].provider} {added[-1].model} added, not the one it replaced: that "
                f"is {vector_label(added[-1].vector)} (--vector {added[-1].vector!r}). To "
                "undo the migration, run it again with --restart. Nothing was removed.")
        replaced = [r for r in records if r.in_place and r.target == name and r.vector == vector
                    and r.new_vector in schema.vectors]
        verified = [r for r in replaced if (r.verification or {}).get("passed")]
        if not verified and not force:
            last = replaced[-1] if replaced else None
            why = ("no in-place migration of this state directory replaced it" if last is None
                   else f"the migration that added {last.new_vector!r} " + (
                       "failed verification" if last.verification else
                       "was not verified (--no-verify)"))
            raise ConfigError(f"Refusing to remove {label} from {name!r}: {why}. Verify the "
                              "new vector first: run that `migrator migrate` again with "
                              "verification on (it catches up, verifies and records the "
                              "result; `migrator verify` records nothing), or pass --force. "
                              "Nothing was removed.")
        target.drop_vector(name, vector)
    return name
