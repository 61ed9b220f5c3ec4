"""Ownership: which collections a migration may write into, catch up and delete.

A migration owns its target when it created it (recorded in the state, keyed by the
store's identity, and in the collection's own metadata where the store keeps it, so the
ownership survives a lost state directory) or when the user adopted it (`--adopt-target`,
refused while another alias serves it). `--restart` deletes only what the migration
created, never a collection an alias serves, and only after the user agreed to the list.
The one rule for deleting anything (`refuse_if_served`) is here, for every command that
deletes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ConfigError, MigratorError
from .settings import CollectionSettings
from .state import MigrationRecord, Phase, State
from .store import QdrantStore

__all__ = ["claim", "Confirm", "drop_left", "provenance", "refuse_if_served", "restart",
           "served_by", "unfinished_reader"]

Confirm = Callable[[list[str]], bool]  # asked with the collections --restart would delete


def provenance(record: MigrationRecord) -> dict[str, Any]:
    """What a target's own metadata says of the migration that created it."""
    return {"migration": record.id, "source": record.source_collection,
            "provider": record.provider, "model": record.model, "dims": record.dims,
            "vector": record.vector, "text": record.text, "created_at": time.time()}


def _created_here(target: QdrantStore, name: str, identity: str) -> bool:
    return target.provenance(name).get("migration") == identity


def restart(target: QdrantStore, state: State, planned: list[tuple[str, str]],
            confirm: Confirm | None) -> None:
    """Forget the progress of the `planned` (target name, migration id) pairs and delete
    the targets they created — for an in-place migration, the vector it added to the
    source, never the collection: never one an alias serves, and only after `confirm`
    agreed to the list (None: no question).

    Raises:
        ConfigError: an alias serves a collection that would be deleted.
        MigratorError: `confirm` said no; nothing was deleted.
    """
    forget: list[str] = []
    doomed: list[str] = []
    added: list[tuple[str, str]] = []  # (collection, vector) in-place migrations added
    for name, identity in planned:
        record = state.get(identity)
        if record is not None:
            forget.append(identity)
            if record.in_place:
                if record.created_vector and record.new_vector in target.describe(name).vectors:
                    added.append((name, record.new_vector))
                continue
        created = record.created_target if record is not None else None
        if target.exists(name) and (
                created or (created is None and _created_here(target, name, identity))):
            doomed.append(name)
    for name in doomed:
        refuse_if_served(target, name, "--restart would delete it")
    asked = doomed + [f"vector {vector!r} of {name!r}" for name, vector in added]
    if asked and confirm is not None and not confirm(asked):
        raise MigratorError("--restart was not confirmed; nothing was deleted.")
    for name in doomed:
        target.delete_collection(name)
    for name, vector in added:
        target.drop_vector(name, vector)
    for identity in forget:
        state.delete(identity)


def claim(target: QdrantStore, state: State, config: CollectionSettings, name: str,
          record: MigrationRecord, *, adopt: bool) -> None:
    """Make sure the migration of `record` may write into the existing collection `name`:
    it created it (by the state, or by the provenance in the collection's own metadata when
    the state was lost), or the user adopts it now and no other alias serves it.

    Raises:
        ConfigError: `name` is someone else's collection, or adopting it would rewrite what
            another alias serves.
    """
    if record.owns_target():
        return
    found = target.provenance(name)
    if found.get("migration") == record.id:
        record.created_target = True
        if state.get(record.id) is not None:
            state.update(record.id, created_target=1)
        return
    if not adopt:
        origin = (f"by another of migrator's migrations, {_unlike(found, record)}"
                  if found else "outside this migration")
        raise ConfigError(
            f"Target {name!r} already exists in {target.location} and was created "
            f"{origin}. migrator writes only into a collection its own migration created: "
            "the catch-up deletes every point the source lacks. Give another --target"
            + (" (or none, for the default name)" if config.target else "")
            + f", or --adopt-target if {name!r} really is meant to become a copy of "
            f"{config.name!r}. Nothing was changed.")
    served = sorted(a for a, c in target.aliases().items() if c == name and a != config.alias)
    if served:
        raise ConfigError(
            f"--adopt-target refused: {name!r} is served by alias {', '.join(served)}, "
            "and adopting it would rewrite what that alias serves. Give another --target, "
            f"or first point the alias elsewhere (`migrator rollback {served[0]}` or "
            f"`migrator swap {served[0]} OTHER`). Nothing was changed.")
    record.adopted = True
    if state.get(record.id) is not None:
        state.update(record.id, adopted=1)


def _unlike(found: dict[str, Any], record: MigrationRecord) -> str:
    """How the migration that created a collection (its provenance) differs from `record`."""
    source = found.get("source")
    pairs = [("of", None if source is None else repr(source), repr(record.source_collection)),
             ("with the text from", found.get("text"), record.text),
             ("with model", found.get("model"), record.model),
             ("at size", found.get("dims"), record.dims)]
    differences = [f"{what} {theirs} (this run: {mine})" for what, theirs, mine in pairs
                   if theirs is not None and theirs != mine]  # older targets record less
    if differences:
        return ", ".join(differences)
    return (f"of {record.source_collection!r} with these same settings but into another store "
            "(a copy of this store's directory, or the same store by another URL?)")


def served_by(store: QdrantStore, collection: str) -> list[str]:
    """The aliases that point at `collection` now."""
    return sorted(a for a, c in store.aliases().items() if c == collection)


def unfinished_reader(records: Iterable[MigrationRecord], store: QdrantStore,
                      collection: str) -> str | None:
    """Which migration recorded here reads `collection` of `store` (its source, or the
    collection an in-place migration adds a vector to) and has not finished, said in a
    clause; None when none does. Deleting it would leave that migration nothing to read and
    lose the points it has not moved. A record keeps its target store, not its source's: a
    migration into `store` from a collection of the same name in another store counts too."""
    for record in records:
        if (record.source_collection == collection and record.store in (None, store.identity)
                and record.phase not in (Phase.COMPLETE, Phase.SWAPPED)):
            done = record.counters.get("written", 0)
            of = f" of {record.total:,}" if record.total else ""
            return (f"the migration of {collection!r} to {record.provider} {record.model} "
                    f"reads it and has not finished ({record.phase}, {done:,}{of} points "
                    "written)")
    return None


def drop_left(store: QdrantStore, old: str | None, new: str, *, unverified: str | None = None,
              records: Iterable[MigrationRecord] = ()) -> tuple[str | None, str | None]:
    """After a verified move to `new`: delete `old`, the collection the alias left, unless an
    alias still serves it, one of `records` (the other migrations recorded) still reads it,
    or the move was not verified (`unverified` says how: forced past a failed verification,
    or made with verification off; then it stays, the move itself succeeded). Returns (its
    name if deleted, else None; why it was kept, else None)."""
    if old is None or old == new or not store.exists(old):
        return None, None
    if unverified:
        return None, unverified
    served = served_by(store, old)
    if served:
        return None, f"alias {', '.join(served)} still serves it"
    reader = unfinished_reader(records, store, old)
    if reader:
        return None, reader
    store.delete_collection(old)
    return old, None


def refuse_if_served(store: QdrantStore, collection: str, why: str) -> None:
    """Raise ConfigError when any alias serves `collection`: nothing migrator deletes may
    be served. `why` says what was about to happen, e.g. "--restart would delete it".

    Raises:
        ConfigError: naming the aliases and what to run instead.
    """
    served = served_by(store, collection)
    if served:
        first = served[0]
        raise ConfigError(
            f"Collection {collection!r} is served by alias {', '.join(served)}, and {why}. "
            f"Point the alias elsewhere first (`migrator rollback {first}` or `migrator swap "
            f"{first} OTHER`); nothing was deleted.")
