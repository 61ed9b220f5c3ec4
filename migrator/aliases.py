"""`swap()`, `rollback()` and `drop_old()`: alias moves by hand, with the same refusals as
`migrate`, each one atomic and recorded in the state's alias history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CollectionNotFound, ConfigError, SchemaMismatch
from .naming import check_new_name
from .ownership import refuse_if_served, unfinished_reader
from .settings import Settings
from .state import MigrationRecord, Phase, State
from .store import QdrantStore, opened

__all__ = ["AliasMove", "drop_old", "old_collection", "rollback", "swap", "written_by"]


@dataclass
class AliasMove:
    alias: str
    previous: str | None
    current: str
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "from": self.previous, "to": self.current,
                "forced": self.forced}


def swap(settings: Settings, alias: str, collection: str, *,
         store: QdrantStore | None = None, force: bool = False) -> AliasMove:
    """Point `alias` at `collection` in one atomic call, and record the move.

    A collection that a migration recorded here is writing, or wrote and did not finish or
    failed to verify, is refused as `migrate` would refuse to swap to it; `force` moves the
    alias anyway, recorded as forced.

    Raises:
        ConfigError: `alias` is a collection's name, or a new alias's name Qdrant refuses;
            `collection` is an unfinished or failed migration's target (without `force`).
        CollectionNotFound: `collection` does not exist.
        SchemaMismatch: `collection` lacks a vector the alias serves now.
    """
    with opened(settings.target_store, None, source_store=store) as (target, _):
        current = _check_swap(target, alias, collection)
        if current == collection:  # a no-op changes nothing and records nothing
            return AliasMove(alias, current, collection)
        wrote = _written(settings, target, collection)
        unready = _unready(wrote)
        if unready and not force:
            remedy = ("`migrator status` shows which check failed and by how much; running "
                      "it again changes nothing until that is fixed" if _failed_gate(wrote)
                      else "Run that migration again to finish it (it resumes where it "
                      "stopped)")
            raise ConfigError(
                f"Collection {collection!r} is not ready to serve: {unready}. {remedy}. Or "
                "move the alias anyway with --force (recorded as forced). Nothing was "
                "changed.")
        previous = target.swap_alias(alias, collection)
        _record(settings, target, alias, previous or current, collection,
                forced=bool(unready))
    return AliasMove(alias, previous, collection, forced=bool(unready))


def rollback(settings: Settings, alias: str, *, store: QdrantStore | None = None) -> AliasMove:
    """Point `alias` back at the collection it pointed to before its last recorded move.

    Raises:
        ConfigError: no recorded move of `alias` to undo, or the alias moved since.
        CollectionNotFound: the previous collection is gone.
    """
    with opened(settings.target_store, None, source_store=store) as (target, _):
        current = target.aliases().get(alias)
        last = _last_move(_history(settings, target, alias), current)
        if current is None:
            raise ConfigError(
                f"There is no alias {alias!r} in {target.location} to roll back; nothing was "
                "changed. `migrator status` lists the aliases.")
        if last is not None and not last["from"]:
            raise ConfigError(
                f"Alias {alias!r} served nothing before its recorded move to {current!r}: it "
                "was created then, so there is no collection to roll back to. Point it "
                "elsewhere with `migrator swap`. Nothing was changed.")
        if last is None:
            raise ConfigError(
                f"There is no recorded move of alias {alias!r} to {current!r} to roll back "
                f"(history in {settings.migration.state_dir}); use `migrator swap` instead.")
        previous = last["from"]
        if previous not in target.collection_names():
            raise CollectionNotFound(
                f"Alias {alias!r} pointed to {previous!r} before, but that collection is gone "
                "(was it dropped?); nothing was changed.")
        target.swap_alias(alias, previous)
        _record(settings, target, alias, current, previous)
    return AliasMove(alias, current, previous)


def old_collection(settings: Settings, alias: str, *, store: QdrantStore | None = None,
                   force: bool = False) -> str:
    """The collection `alias` pointed to before its last move: what `drop_old` deletes,
    checked as `drop_old` checks it (ask before deleting, not after).

    Raises:
        ConfigError: no earlier collection of `alias` is recorded, or an unfinished
            migration recorded here reads it (unless `force`).
        CollectionNotFound: it was deleted already.
    """
    with opened(settings.target_store, None, source_store=store) as (target, _):
        old = _old(target, alias, _history(settings, target, alias))
        if not force:
            _refuse_if_read(settings, target, old)
        return old


def written_by(settings: Settings, collection: str, *, store: QdrantStore | None = None
               ) -> str | None:
    """What migration wrote `collection` into the target store, and whether it passed
    verification (None when no migration recorded here did): what a person asked to delete
    it should know, after a rollback above all."""
    with opened(settings.target_store, None, source_store=store) as (target, _):
        last = _written(settings, target, collection)
    if last is None:
        return None
    passed = (last.verification or {}).get("passed")
    checked = ("not verified" if passed is None else "verified" if passed
               else "failed verification")
    return (f"the migration of {last.source_collection!r} to {last.provider} {last.model} "
            f"wrote it, {checked}")


def drop_old(settings: Settings, alias: str, *, store: QdrantStore | None = None,
             expected: str | None = None, force: bool = False) -> str:
    """Delete the collection `alias` pointed to before its last move (only if it is
    `expected`, when given: the one a person was asked about). Returns its name.

    Raises:
        ConfigError: nothing recorded to drop, another alias still points at it, it is not
            `expected` any more, or an unfinished migration recorded here reads it (unless
            `force`: then it goes all the same).
        CollectionNotFound: it was deleted already.
    """
    with opened(settings.target_store, None, source_store=store) as (target, _):
        old = _old(target, alias, _history(settings, target, alias))
        if expected is not None and old != expected:
            raise ConfigError(f"Alias {alias!r} moved meanwhile: the collection before its "
                              f"last move is now {old!r}, not {expected!r}. Nothing was "
                              "deleted; run drop-old again.")
        refuse_if_served(target, old, "`drop-old` would delete it")
        if not force:
            _refuse_if_read(settings, target, old)
        target.delete_collection(old)
    return old


def _refuse_if_read(settings: Settings, target: QdrantStore, collection: str) -> None:
    reader = unfinished_reader(_records(settings), target, collection)
    if reader:
        raise ConfigError(
            f"Collection {collection!r} is not deleted: {reader}. Deleted, that migration "
            "could not resume, and the points it has not moved would be lost with it. "
            "Finish it first (run the same `migrator migrate` again), or give --force to "
            "delete it all the same.")


def _records(settings: Settings) -> list[MigrationRecord]:
    """The migrations recorded in the state directory (none when it has no state: a
    mistyped path creates nothing)."""
    state_dir = Path(settings.migration.state_dir)
    if not (state_dir / "state.db").exists():
        return []
    with State(state_dir) as state:
        return state.all()


def _written(settings: Settings, target: QdrantStore, collection: str
             ) -> MigrationRecord | None:
    """The last migration recorded here that wrote `collection` in `target`, if any."""
    wrote = [r for r in _records(settings) if r.target == collection and not r.in_place
             and r.store in (None, target.identity)]
    return max(wrote, key=lambda r: r.updated_at) if wrote else None


def _failed_gate(record: MigrationRecord | None) -> bool:
    """Whether `record`'s migration failed verification (running it again alone changes
    nothing)."""
    return record is not None and (record.verification or {}).get("passed") is False


def _unready(record: MigrationRecord | None) -> str | None:
    """Why the collection `record`'s migration wrote should not serve yet (it is being
    written, stopped, failed or failed verification), or None."""
    if record is None:
        return None
    wrote = (f"the migration of {record.source_collection!r} to {record.provider} "
             f"{record.model} wrote it")
    passed = (record.verification or {}).get("passed")
    if passed is False:
        return f"{wrote} and it failed verification"
    if passed or record.phase in (Phase.SWAPPED, Phase.COMPLETE):
        return None  # verified (an alias held back by another collection's failure), or done
    why = f": {_first_sentence(record.error)}" if record.error else ""
    if record.phase is Phase.FAILED:
        return f"{wrote} and failed{why}"
    done = record.counters.get("written", 0)
    of = f" of {record.total:,}" if record.total else ""
    return f"{wrote} and has not finished ({record.phase}, {done:,}{of} points written){why}"


def _first_sentence(text: str) -> str:
    """An error's first sentence (`migrator status` shows the whole of it)."""
    head, stop, _ = text.partition(". ")
    return head if stop else text.rstrip(".")


def _old(target: QdrantStore, alias: str, history: list[dict[str, Any]]) -> str:
    last = _last_move(history, target.aliases().get(alias))
    old = last["from"] if last else None
    if not old:
        created = " (its last move created it: it served nothing before)" if last else ""
        raise ConfigError(f"There is no previous collection of alias {alias!r} "
                          f"recorded{created}; nothing was deleted.")
    if old not in target.collection_names():
        raise CollectionNotFound(f"Collection {old!r}, which alias {alias!r} pointed to "
                                 "before its last move, does not exist any more; nothing was "
                                 "deleted.")
    return str(old)


def _check_swap(target: QdrantStore, alias: str, collection: str) -> str | None:
    collections = target.collection_names()
    if alias in collections:
        raise ConfigError(f"{alias!r} is the name of a collection, and Qdrant cannot give an "
                          "alias a collection's name; nothing was changed.")
    if collection not in collections:
        names = ", ".join(collections) or "none"
        raise CollectionNotFound(f"Collection {collection!r} does not exist in "
                                 f"{target.location} (collections: {names}); nothing was "
                                 "changed.")
    current = target.aliases().get(alias)
    if current is None:  # a new alias: a name Qdrant accepts (not '' from an unset variable)
        try:
            check_new_name(alias, "alias")
        except ValueError as exc:
            raise ConfigError(f"{exc}; nothing was changed.") from exc
    if current is not None and current != collection:
        served = set(target.describe(current).vectors)
        offered = set(target.describe(collection).vectors)
        if not served <= offered:
            missing = ", ".join(sorted(n or "(unnamed)" for n in served - offered))
            raise SchemaMismatch(
                f"Alias {alias!r} serves vector(s) {missing} from {current!r}, which "
                f"{collection!r} does not have; queries through the alias would break. "
                "Nothing was changed.")
    return current


def _last_move(history: list[dict[str, Any]], current: str | None) -> dict[str, Any] | None:
    """The last recorded move of an alias to `current` from another collection (no-op moves
    recorded by older versions are passed over)."""
    return next((h for h in reversed(history)
                 if h["to"] == current and h["from"] != current), None)


def _history(settings: Settings, target: QdrantStore, alias: str) -> list[dict[str, Any]]:
    """The recorded moves of `alias` in `target`: a move of an alias of the same name in
    another store says nothing of what to roll back or delete here."""
    state_dir = Path(settings.migration.state_dir)
    if not (state_dir / "state.db").exists():
        return []
    with State(state_dir) as state:
        return state.alias_history(alias, store=target.identity)


def _record(settings: Settings, target: QdrantStore, alias: str, previous: str | None,
            collection: str, *, forced: bool = False) -> None:
    with State(Path(settings.migration.state_dir)) as state:
        state.record_alias(alias, previous, collection, store=target.identity, forced=forced)
