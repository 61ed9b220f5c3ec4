"""The commands that move aliases by hand and remove what a migration replaced: `swap`,
`rollback`, `drop-old`, `drop-old-vector`; each a thin layer over one library function."""

from __future__ import annotations

from typing import Any

import click

from .. import report
from ..aliases import drop_old as run_drop_old
from ..aliases import old_collection, written_by
from ..aliases import rollback as run_rollback
from ..aliases import swap as run_swap
from ..errors import MigratorError
from ..inplace import drop_old_vector as run_drop_old_vector
from ..wording import vector_label
from .shell import alias_options, ask, cli, emit, json_option, settings_from

__all__ = ["drop_old_command", "drop_old_vector_command", "rollback", "swap_command"]


@cli.command("swap")
@click.argument("alias")
@click.argument("collection")
@alias_options
@click.option("--force", is_flag=True,
              help="Move the alias to a migration's target that is unfinished, failed or "
              "failed verification (recorded as forced).")
@json_option("Print the move as JSON.")
def swap_command(alias: str, collection: str, force: bool, as_json: bool,
                 **options: Any) -> None:
    """Point ALIAS at COLLECTION, atomically, and record the move.

    Refused when ALIAS is a collection's name, COLLECTION does not exist, COLLECTION lacks
    a vector the alias serves now, or a migration recorded here is writing COLLECTION, or
    wrote it and did not finish or failed verification (--force overrides that one).

    \b
    Example:
      migrator swap docs_live docs__text-embedding-3-small-512
    """
    emit(run_swap(settings_from(options), alias, collection, force=force), as_json,
         report.alias_move)


@cli.command()
@click.argument("alias")
@alias_options
@json_option("Print the move as JSON.")
def rollback(alias: str, as_json: bool, **options: Any) -> None:
    """Point ALIAS back at the collection it pointed to before its last move.

    \b
    Example:
      migrator rollback docs_live
    """
    emit(run_rollback(settings_from(options), alias), as_json, report.alias_move)


@cli.command("drop-old")
@click.argument("alias")
@alias_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--force", is_flag=True,
              help="Delete it even though an unfinished migration recorded here reads it "
                   "(that migration cannot resume then).")
@json_option("Print what was deleted as JSON.")
def drop_old_command(alias: str, yes: bool, force: bool, as_json: bool, **options: Any
                     ) -> None:
    """Delete the collection ALIAS pointed to before its last move (never automatic).

    Refused while an alias serves it or an unfinished migration reads it.

    \b
    Example:
      migrator drop-old docs_live --yes
    """
    settings = settings_from(options)
    expected = None
    if not yes:
        expected = old_collection(settings, alias, force=force)
        wrote = written_by(settings, expected)
        if not ask(f"Delete the collection {expected!r}{f' ({wrote})' if wrote else ''} from "
                   f"{settings.target_store.location}, which alias {alias!r} pointed to "
                   "before its last move?"):
            raise MigratorError(f"Not confirmed; {expected!r} was not deleted.")
    deleted = run_drop_old(settings, alias, expected=expected, force=force)
    click.echo(report.to_json({"alias": alias, "deleted": deleted}) if as_json
               else f"Deleted {deleted!r}.")


@cli.command("drop-old-vector")
@click.argument("collection")
@click.option("--vector", required=True,
              help="The vector to remove (the one an in-place migration replaced; '' for the "
              "unnamed one).")
@click.option("--force", is_flag=True,
              help="Remove it although the new vector did not pass verification.")
@alias_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@json_option("Print what was removed as JSON.")
def drop_old_vector_command(collection: str, vector: str, force: bool, yes: bool,
                            as_json: bool, **options: Any) -> None:
    """Remove the vector an in-place migration replaced, once queries use the new one.

    Refused while it is the collection's only dense vector, and unless the in-place
    migration that added its replacement passed verification (--force overrides that).

    \b
    Example:
      migrator drop-old-vector docs --vector dense --yes
    """
    settings = settings_from(options)
    if not yes and not ask(f"Remove vector {vector_label(vector)} from {collection!r} and "
                           "from every point in it?"):
        raise MigratorError(f"Not confirmed; vector {vector_label(vector)} of "
                            f"{collection!r} was not removed.")
    removed_from = run_drop_old_vector(settings, collection, vector, force=force)
    click.echo(report.to_json({"collection": removed_from, "removed_vector": vector})
               if as_json else f"Removed vector {vector_label(vector)} from {removed_from!r}.")
