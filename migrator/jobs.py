"""The plan of a run, made before anything is written: each collection's `Job`, the
default target name, and the checks a target must pass to be written into."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .catalog import ModelSpec
from .errors import ConfigError, SchemaMismatch, StoreError
from .sampling import Reservoir
from .settings import CollectionSettings
from .state import MigrationRecord
from .store import CollectionSchema, QdrantStore, VectorSpec
from .texts import TextSource
from .wording import vector_label

__all__ = ["Job", "check_aliases", "check_default_target", "check_existing_target",
           "missing_target", "model_slug", "refuse_alias_target", "refuse_empty",
           "refuse_foreign_alias", "refuse_multivector", "refuse_shared",
           "refuse_source_as_target", "target_name"]

LONGEST_NAME = 255  # characters in a collection's name (Qdrant)


def target_name(source: str, spec: ModelSpec, dims: int | str) -> str:
    """The default target name, stable so that a re-run finds it.

    For example `docs__text-embedding-3-small-512`.
    """
    return f"{source}__{model_slug(spec)}-{dims}"


def check_default_target(source: str, spec: ModelSpec, dims: int | None) -> None:
    """The default target of `source` is a name Qdrant accepts, whatever size the probe
    finds (`dims`, when it is known before).

    Raises:
        ConfigError: the name would be too long: found before anything is paid for.
    """
    longest = target_name(source, spec, dims or 65_536)
    if len(longest) > LONGEST_NAME:
        raise ConfigError(
            f"The default target name of {source!r}, '<source>__{model_slug(spec)}-<size>', "
            f"would be {len(longest)} characters, over the {LONGEST_NAME} Qdrant allows. Name "
            "the target with --target (or `target` in the collection's settings).")


def refuse_alias_target(target: QdrantStore, source: str, name: str) -> None:
    """Raises ConfigError when the target `name` of `source` is an alias in `target`."""
    if name in target.aliases():
        raise ConfigError(
            f"The target {name!r} of {source!r} is an alias, not a collection: writing to it "
            "would write into the collection it serves. Give a new collection name with "
            "--target.")


def refuse_empty(source: QdrantStore, schema: CollectionSchema, verify: bool) -> None:
    """Raises ConfigError for a source collection without points when verification is on:
    there would be nothing to check before an alias moves."""
    if verify and not schema.points_count and not source.count(
            schema.name):  # exactly counted only when the collection's info says 0
        raise ConfigError(
            f"Collection {schema.name!r} has no points: there is nothing to re-embed, and "
            "nothing for verification to check before an alias moves. Migrate it once it "
            "has points, or with --no-verify to create the new collection empty. Nothing "
            "was created.")


def model_slug(spec: ModelSpec) -> str:
    """The model's name as it goes into a collection or vector name: `bge-m3` for
    `BAAI/bge-m3` (no character Qdrant refuses in a name)."""
    return re.sub(r"[^a-z0-9._-]+", "-", spec.model.lower().split("/")[-1]).strip("-")


@dataclass
class Job:
    """One collection of a migration run, as planned before anything is written."""

    config: CollectionSettings
    schema: CollectionSchema  # the source collection
    vector: str
    text: TextSource
    target: str
    target_exists: bool
    distance: str
    keep_vectors: list[str]
    record: MigrationRecord
    sample: Reservoir | None = None
    in_place: bool = False  # the new vector goes into the source collection itself
    target_vector: str = ""  # the vector written: `vector`, or in place the new one

    def __post_init__(self) -> None:
        if not self.target_vector:
            self.target_vector = self.vector


def check_existing_target(existing: CollectionSchema, vector: str, dims: int,
                           distance: str, keep: Sequence[str] = (), *,
                           distance_given: bool = True) -> None:
    """An existing target fits: its vector of this migration's size and distance, and the
    source's other vectors (`keep`), which are copied with each point. `distance_given`:
    the distance is the run's `--distance`, not the source's by default.

    Raises:
        SchemaMismatch: it does not; nothing was written.
    """
    label = vector_label(vector)
    have = existing.vectors.get(vector)
    if have is not None and have.size == dims and have.distance != distance:
        # a sync or a resume without the --distance the migration was started with
        why = "--distance" if distance_given else "the source's, as no --distance was given"
        raise SchemaMismatch(
            f"Target collection {existing.name!r} already exists, and its vector {label} is "
            f"compared by {have.distance} distance; this run's is {distance} ({why}), and "
            "vectors sized for one are wrong for the other. Give --distance "
            f"{have.distance.lower()} (the distance it was made with), or another --target. "
            "Nothing was written.")
    if have is None or have.size != dims:
        found = f"size {have.size}, {have.distance}" if have else "no such vector"
        raise SchemaMismatch(
            f"Target collection {existing.name!r} already exists, and its vector {label} "
            f"({found}) does not fit this migration (size {dims}, {distance}). Give another "
            "--target, or delete that collection if it is a leftover."
        )
    lacking = [n for n in keep if n not in existing.vectors and n not in existing.sparse_vectors]
    if lacking:
        raise SchemaMismatch(
            f"Target collection {existing.name!r} lacks the source's vector(s) "
            f"{', '.join(vector_label(n) for n in lacking)}, which are copied with "
            "each point (added to the source after the target was made?). Add them to the "
            "target, or run again with --restart to make it anew. Nothing was written.")


def refuse_multivector(vector: VectorSpec, collection: str) -> None:
    """Raises ConfigError when `vector` is a multivector: migrator re-embeds single dense
    vectors only."""
    if vector.multivector:
        raise ConfigError(f"Vector {vector_label(vector.name)} of collection {collection!r} is "
                          "a multivector; migrator re-embeds single dense vectors only.")


def refuse_source_as_target(name: str, collection: str, state_dir: Path) -> None:
    """A migration of `name` (resolved to `collection`) would write into `collection`.

    Raises:
        ConfigError: always; through an alias, the likely reason is a migration already
            swapped, run again with other settings.
    """
    if name == collection:
        raise ConfigError(f"The target of {name!r} is the source collection {collection!r} "
                          "itself; give a different --target.")
    raise ConfigError(
        f"{name!r} is an alias that serves {collection!r}, the target of an earlier "
        "migration, and no migration with these settings (model, size, text) from it is "
        f"recorded in {state_dir}. Give the settings of that migration (`migrator status` "
        "lists them), or the source collection itself with --collection.")


def missing_target(job: Job, records: list[MigrationRecord], target: QdrantStore
                   ) -> StoreError:
    """The error for a target that is not there to catch up (in place: the new vector in
    the source), with what to do: use the name under which the same collection was migrated
    with these settings (an alias, or the collection an alias served: each name is a
    migration of its own), give the settings of a migration recorded, or migrate first."""
    return StoreError(f"Target {job.target!r} ({job.target_vector or 'unnamed'}) of "
                      f"{job.config.name!r} does not exist in {target.location}; "
                      + _missing_target_advice(job, records, target))


def _missing_target_advice(job: Job, records: list[MigrationRecord], target: QdrantStore
                           ) -> str:
    planned = job.record
    found = [m for m in records if m.source_collection == job.schema.name
             and m.store == planned.store and target.exists(m.target)]
    same = [m for m in found if m.source != job.config.name and (
        m.provider, m.model, m.dims, m.text) == (
            planned.provider, planned.model, planned.dims, planned.text)]
    if same:
        return (f"the migration of {job.schema.name!r} with these settings was run as "
                f"{same[-1].source!r} (target {same[-1].target!r}): give --collection "
                f"{same[-1].source}.")
    if found:  # other settings: most likely the provider flags were left out
        shown = "; ".join(f"{m.provider} {m.model} at {m.dims} dims from {m.text} (target "
                          f"{m.target!r})" for m in found[-3:])
        return (f"this run has {planned.provider} {planned.model} at {planned.dims} dims from "
                f"{planned.text}, and the migrations of {job.schema.name!r} recorded are: "
                f"{shown}. Give the settings of the one to catch up.")
    return "run `migrator migrate` first."


def check_aliases(jobs: list[Job], target: QdrantStore) -> None:
    refuse_shared([(job.target, job.config.alias) for job in jobs])
    collections = set(target.collection_names())
    for job in jobs:
        alias = job.config.alias
        if alias is not None and (alias in collections or alias == job.target):
            raise ConfigError(
                f"Alias {alias!r} is the name of an existing collection, and Qdrant cannot "
                "give an alias a collection's name. Choose another alias name (nothing was "
                "changed)."
            )


def refuse_foreign_alias(target: QdrantStore, alias: str, source: str,
                         records: Sequence[MigrationRecord]) -> None:
    """Raises ConfigError when `alias` serves a collection that is neither `source` (the
    collection migrated, as resolved) nor a migration of it: moving it would switch whatever
    queries it to another collection's data (an alias mistyped, or one of another app's)."""
    current = target.aliases().get(alias)
    if current is None or current == source:
        return
    if any(r.source_collection == source and r.target == current and not r.in_place
           and r.store in (None, target.identity) for r in records):
        return  # an earlier migration of it: this one moves the alias on
    if current in target.collection_names() and (
            target.provenance(current).get("source") == source):
        return  # made by a migration of it whose state directory is elsewhere
    raise ConfigError(
        f"Alias {alias!r} serves {current!r}, which is neither {source!r} nor a migration of "
        f"it: moving it would switch whatever queries {alias!r} to the data of {source!r}. "
        f"Give the alias that serves {source!r}, or a new one; to move {alias!r} on purpose, "
        f"run `migrator swap {alias} <target>` once the migration is done. Nothing was "
        "changed.")


def refuse_shared(pairs: Sequence[tuple[str, str | None]]) -> None:
    """Raises ConfigError when two collections of one run have the same target (or the
    same alias), given as (target, alias) pairs."""
    seen_targets: set[str] = set()
    seen_aliases: set[str] = set()
    for name, alias in pairs:
        if name in seen_targets:
            raise ConfigError(f"Two collections in this run write to the same target "
                              f"{name!r}; give each its own target.")
        seen_targets.add(name)
        if alias is None:
            continue
        if alias in seen_aliases:
            raise ConfigError(f"Alias {alias!r} is given to two collections in this run.")
        seen_aliases.add(alias)
