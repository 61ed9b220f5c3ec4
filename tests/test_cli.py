"""The command line: exit codes, stdout/stderr, --json, messages."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from migrator import (
    CollectionSettings,
    ConfigError,
    ProviderSettings,
    Settings,
    StoreSettings,
    plan,
    validate,
)
from migrator.cli import cli
from migrator.state import Phase, State
from migrator.vector_cache import EmbeddingCache

from .conftest import embedded_store, make_collection
from .loopback import LoopbackServer


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return embedded_store(tmp_path / "qdrant", {"docs": 40})


def run(*args: str, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def base(store_path: Path, tmp_path: Path) -> list[str]:
    return ["--qdrant-path", str(store_path), "--state-dir", str(tmp_path / "state"),
            "--provider", "hashing", "--model", "hash-words-v1", "--dimensions", "48"]


def test_migrate_json(store_path: Path, tmp_path: Path) -> None:
    result = run("migrate", *base(store_path, tmp_path), "--collection", "docs",
                 "--alias", "live", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["collections"][0]["target"] == "docs__hash-words-v1-48"
    assert data["collections"][0]["swapped"] is True
    stats = data["collections"][0]["stats"]
    assert stats["written"] == 40
    # counts, not the class's constants (it held "PAGE_COUNTERS": [...])
    assert all(isinstance(value, int | float) for value in stats.values()), stats
    assert result.stderr == ""  # not a TTY: no progress bar


def test_a_failed_command_with_json_prints_its_error_as_json(store_path: Path,
                                                             tmp_path: Path) -> None:
    """stdout was empty: a script reading it had nothing to parse."""
    missing = run("migrate", *base(store_path, tmp_path), "--collection", "nope", "--json")
    assert missing.exit_code == 1 and "'nope' does not exist" in missing.stderr
    error = json.loads(missing.stdout)["error"]
    assert error["type"] == "CollectionNotFound" and error["exit_code"] == 1
    assert error["message"] == missing.stderr.removeprefix("Error: ").strip()
    gated = run("migrate", *base(store_path, tmp_path)[:-1], "4", "--dimension-policy",
                "truncate", "--collection", "docs", "--json")
    assert gated.exit_code == 3, gated.output
    error = json.loads(gated.stdout)["error"]
    assert error["type"] == "VerificationFailed" and error["report"][0]["passed"] is False
    # a command that printed its result before it failed prints that result alone
    checked = run("verify", *base(store_path, tmp_path)[:-1], "4", "--dimension-policy",
                  "truncate", "--collection", "docs", "--json")
    assert checked.exit_code == 3 and json.loads(checked.stdout)["passed"] is False


def test_a_collection_too_big_for_the_embedded_store_is_warned_of_in_migrators_words(
        store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """qdrant-client's own warning was printed with a line of its source code."""
    from qdrant_client.local.local_collection import LocalCollection
    from qdrant_client.local.qdrant_local import QdrantLocal

    from migrator import planning

    for owner in (planning, LocalCollection, QdrantLocal):
        name = "LOCAL_MODE_LIMIT" if owner is planning else "LARGE_DATA_THRESHOLD"
        monkeypatch.setattr(owner, name, 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("migrate", *base(store_path, tmp_path), "--collection", "docs")
    assert result.exit_code == 0, result.output
    assert ("warning: 40 points is more than the embedded store handles well (10): it keeps "
            "every point in memory") in result.stdout
    assert [str(w.message) for w in caught if "Local mode" in str(w.message)] == []


def test_an_empty_collection_is_refused_unless_verification_is_off(tmp_path: Path) -> None:
    """It made the target, then failed verification with "self-retrieval recall@10 0.000"
    (no point to sample), exit 3."""
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    client.create_collection("empty", vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE))
    client.close()
    args = ["migrate", "--qdrant-path", str(store), "--state-dir", str(tmp_path / "s"),
            "--collection", "empty", "--alias", "live"]
    planned = run("plan", *args[1:])  # plan said nothing of it
    assert planned.exit_code == 0
    assert "migrate will refuse to start: Collection 'empty' has no points" in planned.stdout
    assert "refuse" not in run("plan", *args[1:], "--no-verify").stdout
    refused = run(*args)
    assert refused.exit_code == 2 and "Collection 'empty' has no points" in refused.stderr
    client = QdrantClient(path=str(store))
    assert [c.name for c in client.get_collections().collections] == ["empty"]
    client.close()
    made = run(*args, "--no-verify", "--json")
    assert made.exit_code == 0 and json.loads(made.stdout)["collections"][0]["swapped"]


def test_migrate_text_report(store_path: Path, tmp_path: Path) -> None:
    result = run("migrate", *base(store_path, tmp_path), "--collection", "docs,alias=live")
    assert result.exit_code == 0
    assert result.stdout.startswith("Migrated 1 collection with hashing hash-words-v1 "
                                    "(48 dims)")
    assert "live -> docs__hash-words-v1-48" in result.stdout


def test_missing_collection_exits_1(store_path: Path, tmp_path: Path) -> None:
    result = run("migrate", *base(store_path, tmp_path), "--collection", "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (f"Error: Collection or alias 'nope' does not exist in embedded "
                             f"store at {store_path}. Existing collections: docs.\n")


def test_missing_api_key_exits_2_and_names_the_variable(store_path: Path,
                                                        tmp_path: Path) -> None:
    result = run("migrate", "--qdrant-path", str(store_path), "--collection", "docs",
                 "--provider", "openai", "--model", "text-embedding-3-small")
    assert result.exit_code == 2
    assert "No API key for provider 'openai': set the environment variable OPENAI_API_KEY" in (
        result.stderr)


def test_bad_config_value_exits_2_and_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("provider:\n  dimensions: -3\n")
    result = run("migrate", "--config", str(config))
    assert result.exit_code == 2
    assert "provider.dimensions: Input should be greater than 0 (got -3)" in result.stderr


def test_unknown_config_key_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("collections:\n  - name: docs\n    text_feild: body\n")
    result = run("plan", "--config", str(config))
    assert result.exit_code == 2
    assert "collections.0.text_feild: unknown key" in result.stderr


def test_bad_flag_value_is_a_usage_error(store_path: Path) -> None:
    result = run("migrate", "--qdrant-path", str(store_path), "--dimensions", "many")
    assert result.exit_code == 2
    assert "'many' is not a valid integer" in result.stderr


def test_alias_naming_a_collection_exits_2_and_changes_nothing(store_path: Path,
                                                               tmp_path: Path) -> None:
    result = run("migrate", *base(store_path, tmp_path), "--collection", "docs",
                 "--alias", "docs")
    assert result.exit_code == 2
    assert "Alias 'docs' is the name of an existing collection" in result.stderr
    client = QdrantClient(path=str(store_path))
    try:
        assert [c.name for c in client.get_collections().collections] == ["docs"]
    finally:
        client.close()


def test_missing_text_exits_1_and_lists_ids(tmp_path: Path) -> None:
    path = tmp_path / "q"
    client = QdrantClient(path=str(path))
    make_collection(client, "docs", n=10,
                    payload=lambda i, t: {"body": t} if i == 4 else {"text": t})
    client.close()
    result = run("migrate", "--qdrant-path", str(path), "--state-dir", str(tmp_path / "s"),
                 "--collection", "docs", "--alias", "live")
    assert result.exit_code == 1
    assert "1 point of 'docs' has no text in field 'text': 5." in result.stderr
    assert "No alias was moved." in result.stderr


def test_debug_env_shows_the_traceback(store_path: Path) -> None:
    from migrator import CollectionNotFound

    with pytest.raises(CollectionNotFound):
        run("migrate", "--qdrant-path", str(store_path), "--collection", "nope",
            env={"MIGRATOR_DEBUG": "1"})


def test_migrate_through_an_openai_compatible_server(store_path: Path, tmp_path: Path) -> None:
    with LoopbackServer(dims=12, api_key="local-key") as server:
        result = run("migrate", "--qdrant-path", str(store_path), "--collection", "docs",
                     "--provider", "openai-compatible", "--model", "mini",
                     "--base-url", server.url, "--api-key-env", "LOCAL_KEY", "--json",
                     env={"LOCAL_KEY": "local-key"})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["dims"] == 12
    assert "local-key" not in result.stdout + result.stderr


def test_wrong_key_exits_1_without_printing_it(store_path: Path) -> None:
    with LoopbackServer(dims=12, api_key="right") as server:
        result = run("migrate", "--qdrant-path", str(store_path), "--collection", "docs",
                     "--provider", "openai-compatible", "--model", "mini",
                     "--base-url", server.url, env={"OPENAI_COMPATIBLE_API_KEY": "wrong-key"})
    assert result.exit_code == 1
    assert "HTTP 401: Incorrect API key provided" in result.stderr
    assert "wrong-key" not in result.stderr


@pytest.mark.parametrize("target", ["a/b", ""])
def test_a_target_qdrant_would_refuse_costs_nothing(store_path: Path, target: str) -> None:
    with LoopbackServer(dims=12) as server:
        result = run("migrate", "--qdrant-path", str(store_path), "--collection", "docs",
                     "--target", target, "--provider", "openai-compatible", "--model", "mini",
                     "--base-url", server.url)
        assert server.requests == 0  # refused before the probe
    assert result.exit_code == 2 and "target" in result.stderr


def test_a_default_target_name_too_long_for_qdrant_costs_nothing(tmp_path: Path) -> None:
    """It failed at creation, after the probe had been paid for."""
    long_name = "d" * 250
    store = embedded_store(tmp_path / "q", {long_name: 20})
    with LoopbackServer(dims=12) as server:
        result = run("migrate", "--qdrant-path", str(store), "--collection", long_name,
                     "--provider", "openai-compatible", "--model", "mini",
                     "--base-url", server.url, "--state-dir", str(tmp_path / "state"))
        assert server.requests == 0
    assert result.exit_code == 2, result.output
    assert "over the 255 Qdrant allows" in result.stderr and "--target" in result.stderr
    planned = run("plan", "--qdrant-path", str(store), "--collection", long_name,
                  "--provider", "openai-compatible", "--model", "mini")
    assert planned.exit_code == 0 and "migrate will refuse to start" in planned.stdout


def test_credentials_in_a_base_url_are_never_printed(store_path: Path) -> None:
    result = run("migrate", "--qdrant-path", str(store_path), "--collection", "docs",
                 "--provider", "openai-compatible", "--model", "mini",
                 "--base-url", "http://user:hunter2@127.0.0.1:9/v1")  # nothing listens
    assert result.exit_code == 1 and "could not connect to http://***@127.0.0.1:9" in (
        result.stderr)
    assert "hunter2" not in result.output


def test_a_key_pasted_as_the_variables_name_is_never_printed(store_path: Path) -> None:
    for command in ("migrate", "plan"):
        result = run(command, "--qdrant-path", str(store_path), "--collection", "docs",
                     "--provider", "openai", "--model", "text-embedding-3-small",
                     "--api-key-env", "sk-proj-abc123-xyz")
        assert result.exit_code == 2 and "sk-proj-abc123-xyz" not in result.output


def test_plan_is_read_only(store_path: Path) -> None:
    result = run("plan", "--qdrant-path", str(store_path), "--collection", "docs",
                 "--provider", "openai", "--model", "text-embedding-3-small",
                 "--dimensions", "512", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    plan = data["collections"][0]
    assert plan["schema"]["points_count"] == 40 and plan["target_size"] == 512
    assert plan["target"] == "docs__text-embedding-3-small-512"
    assert data["estimated_cost_usd"] > 0
    assert any("OPENAI_API_KEY" in w for w in data["warnings"])
    text = run("plan", "--qdrant-path", str(store_path), "--collection", "docs").stdout
    assert "Source 'docs': 40 points" in text


def test_plan_says_where_a_recorded_run_of_the_migration_got(store_path: Path,
                                                             tmp_path: Path) -> None:
    """plan knew nothing of the state: a finished migration read as a whole new one."""
    args = [*base(store_path, tmp_path), "--collection", "docs"]
    assert run("migrate", *args, "--alias", "live").exit_code == 0
    finished = run("plan", *args).stdout
    assert ("is swapped, 40 of 40 points written; migrate would catch up only what changed "
            "since") in finished
    assert "already exists and no migration recorded here created it" not in finished
    with State(tmp_path / "state") as state:
        (record,) = state.all()
        state.update(record.id, phase=Phase.BACKFILLING, finished=False,
                     counters={"written": 16})
    planned = json.loads(run("plan", *args, "--json").stdout)["collections"][0]
    assert planned["recorded"] == {"migration": record.id, "phase": "backfilling",
                                   "finished": False, "written": 16, "total": 40}
    assert "16 of 40 points written; migrate resumes from its checkpoint" in run(
        "plan", *args).stdout
    other = json.loads(run("plan", *args[:-3], "64", "--collection", "docs", "--json").stdout)
    assert other["collections"][0]["recorded"] is None  # another size: another migration
    (tmp_path / "state" / "state.db").write_text("not a database")  # plan stands without it
    unread = run("plan", *args)
    assert unread.exit_code == 0 and "warning: Earlier runs are not shown: The state file" in (
        unread.stdout)


def test_plan_warns_of_the_targets_migrate_refuses(store_path: Path, tmp_path: Path) -> None:
    """A target that is an alias went unmentioned; a collection of someone else's read as one
    migrate "will write into if its vector fits" (it refuses it without --adopt-target)."""
    args = [*base(store_path, tmp_path), "--collection", "docs"]
    assert run("migrate", *args, "--target", "mine", "--alias", "live").exit_code == 0
    client = QdrantClient(path=str(store_path))
    client.create_collection("theirs", vectors_config=qm.VectorParams(
        size=48, distance=qm.Distance.COSINE))
    client.close()
    onto_alias = run("plan", *args, "--target", "live").stdout
    assert ("migrate will refuse to start: The target 'live' of 'docs' is an alias, not a "
            "collection") in onto_alias
    theirs = run("plan", *args, "--target", "theirs").stdout
    assert "Target 'theirs' already exists and no migration recorded here created it" in theirs
    assert "or with --adopt-target" in theirs
    refused = run("migrate", *args, "--target", "theirs")
    assert refused.exit_code == 2 and "--adopt-target" in refused.stderr


def test_ingest_then_migrate(tmp_path: Path) -> None:
    data = tmp_path / "notes.jsonl"
    data.write_text("".join(json.dumps({"id": i, "body": f"note {i} on tides"}) + "\n"
                            for i in range(30)))
    path = str(tmp_path / "q")
    result = run("ingest", str(data), "--collection", "notes", "--text-field", "body",
                 "--qdrant-path", path, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["written"] == 30
    again = run("ingest", str(data), "--collection", "notes", "--text-field", "body",
                "--qdrant-path", path, "--json")  # the same command replaces its own
    assert again.exit_code == 0 and json.loads(again.stdout)["stats"]["written"] == 30
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": 1, "body": "another file"}) + "\n")
    refused = run("ingest", str(other), "--collection", "notes", "--text-field", "body",
                  "--qdrant-path", path)
    assert refused.exit_code == 1 and "'notes' already exists" in refused.stderr


def test_models_lists_the_catalog() -> None:
    result = run("models", "--provider", "openai")
    assert result.exit_code == 0
    assert "text-embedding-3-small  1536" in result.stdout
    data = json.loads(run("models", "--json").stdout)
    assert {m["provider"] for m in data} >= {"openai", "cohere", "voyage", "hashing", "local"}
    typo = run("models", "--provider", "opneai")  # was: an empty table, exit 0
    assert typo.exit_code == 2 and "'opneai' is not one of 'hashing', 'openai'" in typo.stderr
    azure = run("models", "--provider", "azure")  # was an empty table: Azure serves OpenAI's
    assert re.search(r"azure +text-embedding-3-large +3072", azure.stdout)
    served = run("models", "--provider", "tei")  # was only a table's header
    assert served.stdout.startswith("tei: any model the server has, listed or not.")
    assert "provider.price_per_mtok" in served.stdout


@pytest.mark.parametrize("command", ["migrate", "plan", "ingest", "models", "demo", "validate",
                                     "sync", "status", "cache"])
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout


def test_demo_offline_with_hashing(tmp_path: Path) -> None:
    result = run("demo", "--dir", str(tmp_path / "demo"), "--hashing-only", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["migration"]["collections"][0]["target_count"] == 320
    assert data["migration"]["collections"][0]["swapped"] is True
    assert len(data["searches"]) == 3
    # a second run replaces what the first made, and nothing else: it deleted the whole
    # directory, with the notes and configs a user had put beside the demo's store
    (tmp_path / "demo" / "my-config.yaml").write_text("mine")
    assert run("demo", "--dir", str(tmp_path / "demo"), "--hashing-only").exit_code == 0
    assert (tmp_path / "demo" / "my-config.yaml").read_text() == "mine"
    assert json.loads(run("status", "--qdrant-path", str(tmp_path / "demo" / "qdrant"),
                          "--state-dir", str(tmp_path / "demo" / ".migrator"), "--json"
                          ).stdout)["migrations"][0]["phase"] == "swapped"  # one run, anew
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    refused = run("demo", "--dir", str(tmp_path / "other"))
    assert refused.exit_code == 2 and "was not made by `migrator demo`" in refused.stderr
    under_a_file = run("demo", "--dir", str(tmp_path / "other" / "keep.txt" / "demo"))
    assert under_a_file.exit_code == 2 and "Traceback" not in under_a_file.stderr
    assert "Cannot make the demo's directory" in under_a_file.stderr


def test_a_state_directory_that_cannot_be_made_is_named(store_path: Path, tmp_path: Path
                                                        ) -> None:
    (tmp_path / "a-file").write_text("")
    result = run("migrate", *base(store_path, tmp_path), "--collection", "docs",
                 "--state-dir", str(tmp_path / "a-file" / "state"))
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert (f"migrator cannot make its state directory {tmp_path / 'a-file' / 'state'} (Not a "
            "directory") in result.stderr and "Choose a --state-dir" in result.stderr
    client = QdrantClient(path=str(store_path))
    assert [c.name for c in client.get_collections().collections] == ["docs"]  # none created
    client.close()


def test_restart_asks_first_naming_what_it_deletes(store_path: Path, tmp_path: Path) -> None:
    args = ["migrate", *base(store_path, tmp_path), "--collection", "docs"]
    assert run(*args).exit_code == 0
    refused = CliRunner().invoke(cli, [*args, "--restart"], input="n\n")
    assert refused.exit_code == 1
    assert "--restart deletes 'docs__hash-words-v1-48'" in refused.stderr
    client = QdrantClient(path=str(store_path))
    assert client.collection_exists("docs__hash-words-v1-48")
    client.close()
    accepted = CliRunner().invoke(cli, [*args, "--restart"], input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert "resumed" not in accepted.stdout


def test_status_sync_and_cache_commands(store_path: Path, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    empty = run("status", "--qdrant-path", str(store_path), *state)  # say, a mistyped one
    assert f"No migrations recorded in {tmp_path / 'state'}." in empty.stdout
    assert run("migrate", *base(store_path, tmp_path), "--collection", "docs",
               "--alias", "live").exit_code == 0
    shown = run("status", "--qdrant-path", str(store_path), *state)
    assert shown.exit_code == 0
    assert "live -> docs__hash-words-v1-48" in shown.stdout and "swapped" in shown.stdout
    # hashing reports no tokens: marked as an estimate, not shown as tokens paid
    assert "points' tokens" in shown.stdout and "tokens paid" not in shown.stdout
    assert re.search(r"40/40 +~\d", shown.stdout) and "~ estimated" in shown.stdout
    synced = run("sync", *base(store_path, tmp_path), "--collection", "docs", "--json")
    assert synced.exit_code == 0, synced.stderr
    assert json.loads(synced.stdout)["collections"][0]["sync"]["unchanged"] == 40
    stats = run("cache", "stats", *state, "--json")
    assert json.loads(stats.stdout)["entries"] == 0  # hashing is cheaper to compute than store
    with EmbeddingCache(tmp_path / "state") as cache:
        cache.put_many("ns", [b"a" * 32, b"b" * 32], np.ones((2, 4), dtype=np.float32),
                       [1, 1])
    assert json.loads(run("cache", "stats", *state, "--json").stdout)["entries"] == 2
    cache_file = tmp_path / "state" / "cache.db"
    asked = CliRunner().invoke(cli, ["cache", "clear", *state], input="n\n")
    assert asked.exit_code == 1 and f"every cached embedding in {cache_file}" in asked.output
    cleared = run("cache", "clear", *state, "--yes")
    assert cleared.stdout == f"Removed 2 cached embeddings from {cache_file}.\n"
    again = json.loads(run("cache", "clear", *state, "--yes", "--json").stdout)
    assert again == {"path": str(cache_file), "exists": True, "removed": 0}
    nowhere = run("cache", "clear", "--state-dir", str(tmp_path / "stat"), "--json")
    assert json.loads(nowhere.stdout)["exists"] is False
    mistyped = run("cache", "clear", "--state-dir", str(tmp_path / "stat"), "--yes")
    assert mistyped.stdout.startswith("There is no embedding cache at ")  # not "Removed 0"
    assert not (tmp_path / "stat").exists()


def test_a_corrupt_state_file_exits_1(store_path: Path, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_text("not a database")
    result = run("migrate", *base(store_path, tmp_path), "--collection", "docs")
    assert result.exit_code == 1 and "corrupt or truncated" in result.stderr


def test_status_says_when_a_swapped_alias_was_moved_away(store_path: Path, tmp_path: Path
                                                         ) -> None:
    where = ["--qdrant-path", str(store_path), "--state-dir", str(tmp_path / "state")]
    assert run("migrate", *base(store_path, tmp_path), "--collection", "docs",
               "--target", "docs_v2", "--alias", "live").exit_code == 0
    assert "  swapped  " in run("status", *where).stdout
    assert run("rollback", "live", *where).exit_code == 2  # a new alias: nothing to go back to
    assert run("swap", "live", "docs", *where).exit_code == 0
    shown = run("status", *where).stdout
    assert "swapped (alias 'live' moved to 'docs' since)" in shown
    assert run("rollback", "live", *where).exit_code == 0
    assert "  swapped  " in run("status", *where).stdout


def test_status_of_a_migration_into_another_store_does_not_call_it_deleted(
        store_path: Path, tmp_path: Path) -> None:
    """Read against the source store, its target was "swapped (target deleted)"."""
    other = tmp_path / "other"
    assert run("migrate", *base(store_path, tmp_path), "--collection", "docs",
               "--target-qdrant-path", str(other), "--alias", "live").exit_code == 0
    where = ["--qdrant-path", str(store_path), "--state-dir", str(tmp_path / "state")]
    shown = run("status", *where)
    assert f"swapped (target in {other.resolve()})" in shown.stdout
    assert "deleted" not in shown.stdout
    (row,) = json.loads(run("status", *where, "--json").stdout)["migrations"]
    assert row["target_deleted"] is False and row["target_store_shown"] is False
    there = run("status", *where, "--target-qdrant-path", str(other))
    assert "  swapped  " in there.stdout and "live -> docs__hash-words-v1-48" in there.stdout


def test_drop_old_and_rollback_read_the_moves_of_the_store_they_act_on(tmp_path: Path) -> None:
    """Two stores with the same names (production and a staging copy of it), one state
    directory: the moves of 'live' recorded in one made drop-old in the other delete a
    collection there, the one with the name the first store's alias had left."""
    prod, staging = tmp_path / "prod", tmp_path / "staging"
    for path in (prod, staging):
        client = QdrantClient(path=str(path))
        make_collection(client, "docs_v1", n=5)
        make_collection(client, "docs_v2", n=5)
        client.close()
    state = ["--state-dir", str(tmp_path / "state")]
    for path in (prod, staging):
        assert run("swap", "live", "docs_v1", "--qdrant-path", str(path), *state).exit_code == 0
    assert run("swap", "live", "docs_v2", "--qdrant-path", str(prod), *state).exit_code == 0
    client = QdrantClient(path=str(staging))  # the same move in staging, made by hand
    client.update_collection_aliases(change_aliases_operations=[qm.CreateAliasOperation(
        create_alias=qm.CreateAlias(collection_name="docs_v2", alias_name="live"))])
    client.close()
    refused = run("drop-old", "live", "--qdrant-path", str(staging), *state, "--yes")
    assert refused.exit_code == 2 and "no previous collection of alias 'live'" in refused.stderr
    client = QdrantClient(path=str(staging))
    assert {c.name for c in client.get_collections().collections} == {"docs_v1", "docs_v2"}
    client.close()
    assert run("rollback", "live", "--qdrant-path", str(staging), *state).exit_code == 2
    assert run("drop-old", "live", "--qdrant-path", str(prod), *state, "--yes"
               ).stdout == "Deleted 'docs_v1'.\n"


def test_swap_to_a_failed_migrations_target_exits_2_unless_forced(tmp_path: Path) -> None:
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    make_collection(client, "docs", n=20, payload=lambda i, t: {"text": t} if i % 4 else {})
    client.close()
    where = ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state")]
    assert run("migrate", *base(store, tmp_path), "--collection", "docs",
               "--target", "docs_v2").exit_code == 1  # 5 points without text
    refused = run("swap", "live", "docs_v2", *where)
    assert refused.exit_code == 2 and "'docs_v2' is not ready to serve" in refused.stderr
    assert "Traceback" not in refused.output
    forced = run("swap", "live", "docs_v2", *where, "--force", "--json")
    assert json.loads(forced.stdout) == {"alias": "live", "from": None, "to": "docs_v2",
                                         "forced": True}
    assert "live: (new) -> docs_v2 (forced)" in run("status", *where).stdout


def test_drop_old_of_a_source_an_unfinished_migration_reads_exits_2_unless_forced(
        tmp_path: Path) -> None:
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    make_collection(client, "docs", n=20, payload=lambda i, t: {"text": t} if i % 4 else {})
    make_collection(client, "other", n=3)
    client.close()
    where = ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state")]
    assert run("swap", "live", "docs", *where).exit_code == 0
    assert run("migrate", *base(store, tmp_path), "--collection", "docs",
               "--target", "docs_v2").exit_code == 1  # 5 points without text: failed
    assert run("swap", "live", "other", *where).exit_code == 0
    refused = run("drop-old", "live", *where, "--yes")
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert ("Collection 'docs' is not deleted: the migration of 'docs' to hashing "
            "hash-words-v1 reads it and has not finished (failed") in refused.stderr
    asked = run("drop-old", "live", *where)  # refused before asking, not after
    assert asked.exit_code == 2 and "Delete the collection" not in asked.output
    forced = run("drop-old", "live", *where, "--yes", "--force", "--json")
    assert json.loads(forced.stdout) == {"alias": "live", "deleted": "docs"}


def test_swap_rollback_and_drop_old_commands(store_path: Path, tmp_path: Path) -> None:
    where = ["--qdrant-path", str(store_path), "--state-dir", str(tmp_path / "state")]
    assert run("migrate", *base(store_path, tmp_path), "--collection", "docs",
               "--target", "docs_v2").exit_code == 0
    first = run("swap", "live", "docs", *where)
    assert first.stdout == "Alias 'live' now points to 'docs' (a new alias).\n"
    assert run("swap", "live", "docs_v2", *where).exit_code == 0
    refused = run("swap", "docs", "docs_v2", *where)
    assert refused.exit_code == 2 and "'docs' is the name of a collection" in refused.stderr
    back = run("rollback", "live", *where, "--json")
    assert json.loads(back.stdout) == {"alias": "live", "from": "docs_v2", "to": "docs",
                                       "forced": False}
    nothing = run("rollback", "nothing", *where)
    assert nothing.exit_code == 2 and "There is no alias 'nothing' in" in nothing.stderr
    assert "None" not in nothing.stderr
    declined = CliRunner().invoke(cli, ["drop-old", "live", *where], input="n\n")
    assert ("Delete the collection 'docs_v2' (the migration of 'docs' to hashing "
            f"hash-words-v1 wrote it, verified) from embedded store at {store_path}, which "
            "alias 'live' pointed to") in declined.output  # the store: one state, several
    assert declined.exit_code == 1
    asked = CliRunner().invoke(cli, ["drop-old", "live", *where, "--json"], input="y\n")
    assert json.loads(asked.stdout) == {"alias": "live", "deleted": "docs_v2"}
    again = run("drop-old", "live", *where, "--yes")  # it is gone: saying 'Deleted' is untrue
    assert again.exit_code == 1 and "'docs_v2'" in again.stderr
    assert "does not exist any more; nothing was deleted" in again.stderr
    shown = run("status", *where)  # the migration's target is gone: its row says so
    assert "complete (target deleted)" in shown.stdout or "swapped (target deleted)" in (
        shown.stdout)
    rows = json.loads(run("status", *where, "--json").stdout)["migrations"]
    assert [m["target_deleted"] for m in rows] == [True]


def test_cache_commands_read_the_state_dir_from_config_and_environment(
        store_path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with EmbeddingCache(state) as cache:
        cache.put_many("ns", [b"a" * 32], np.ones((1, 4), dtype=np.float32), [1])
    by_env = run("cache", "stats", "--json", env={"MIGRATOR_MIGRATION__STATE_DIR": str(state)})
    assert json.loads(by_env.stdout)["entries"] > 0
    config = tmp_path / "m.yaml"
    config.write_text(f"migration:\n  state_dir: {state}\n")
    by_file = run("cache", "stats", "--json", "-c", str(config))
    assert json.loads(by_file.stdout)["entries"] > 0
    assert run("cache", "clear", "--yes", "-c", str(config)).exit_code == 0
    assert json.loads(run("cache", "stats", "--json", "-c", str(config)).stdout)["entries"] == 0


def test_an_updated_field_that_holds_no_time_is_refused_before_anything(
        store_path: Path, tmp_path: Path) -> None:
    result = run("migrate", *base(store_path, tmp_path), "--collection", "docs",
                 "--updated-field", "tags")
    assert result.exit_code == 2
    assert "sync.updated_field 'tags' of point 1 in 'docs' holds ['a', 'b'], not a time" in (
        result.stderr)
    client = QdrantClient(path=str(store_path))
    assert [c.name for c in client.get_collections().collections] == ["docs"]  # nothing made
    client.close()
    synced = run("sync", *base(store_path, tmp_path), "--collection", "docs",
                 "--updated-field", "n")  # epoch seconds 0..39, but no target yet
    assert synced.exit_code == 1 and "does not exist" in synced.stderr


def test_migrating_an_alias_that_serves_a_migrated_target_says_why_it_is_refused(
        store_path: Path, tmp_path: Path) -> None:
    """Through the alias, the source is the earlier migration's target: with other text
    settings no migration from it is recorded. Was: 'the target is the source itself'."""
    where = ["--qdrant-path", str(store_path), "--state-dir", str(tmp_path / "state")]
    assert run("swap", "live", "docs", *where).exit_code == 0
    moved = run("migrate", *base(store_path, tmp_path), "--collection", "live", "--alias",
                "live", "--json")
    assert json.loads(moved.stdout)["collections"][0]["alias"] == "live"
    again = run("sync", *base(store_path, tmp_path), "--collection", "live",
                "--text-template", "{text}!")
    assert again.exit_code == 2
    assert ("'live' is an alias that serves 'live__hash-words-v1-48', the target of an "
            "earlier migration") in again.stderr and "migrator status" in again.stderr
    same = run("sync", *base(store_path, tmp_path), "--collection", "live")
    assert same.exit_code == 0, same.stderr  # its own settings: the recorded source


@pytest.mark.parametrize("command", [
    ["verify", "--sample", "0"], ["verify", "--k", "0"], ["plan", "--sample", "0"],
    ["validate", "--sample", "0"], ["validate", "--sample", "-3"], ["validate", "--dims", "0"],
    ["validate", "--dims", ","], ["validate", "--dims", "256,-1"],
])
def test_a_sample_or_k_under_one_is_refused_at_once(store_path: Path,
                                                     command: list[str]) -> None:
    """verify --sample 0 was a pydantic traceback, plan --sample 0 Qdrant's complaint about a
    scroll limit, and validate --sample 0 (or --dims 0) said "All checks passed" having
    checked nothing."""
    result = run(*command, "--qdrant-path", str(store_path), "--provider", "hashing",
                 "--model", "hash-words-v1", "--collection", "docs")
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{command[1]}'" in result.stderr


def test_the_api_refuses_a_sample_under_one(store_path: Path) -> None:
    config = Settings(source=StoreSettings(path=store_path),
                      provider=ProviderSettings(name="hashing", model="hash-words-v1"),
                      collections=[CollectionSettings(name="docs")])
    with pytest.raises(ConfigError, match="sample is 0"):
        plan(config, sample=0)
    with pytest.raises(ConfigError, match="sample is 0"):
        validate(config, sample=0)


@pytest.mark.parametrize("alias", ["", "a/b", "x" * 256])
def test_swap_refuses_a_new_alias_qdrant_would_refuse_or_should_not_have(
        store_path: Path, tmp_path: Path, alias: str) -> None:
    """`migrator swap "$ALIAS" docs` with ALIAS unset made an alias named ''."""
    where = ["--qdrant-path", str(store_path), "--state-dir", str(tmp_path / "state")]
    result = run("swap", alias, "docs", *where)
    assert result.exit_code == 2 and "nothing was changed" in result.stderr
    client = QdrantClient(path=str(store_path))
    assert client.get_aliases().aliases == []
    client.close()


def test_a_swap_to_where_the_alias_points_says_nothing_changed(
        store_path: Path, tmp_path: Path) -> None:
    where = ["--qdrant-path", str(store_path), "--state-dir", str(tmp_path / "state")]
    assert run("swap", "live", "docs", *where).exit_code == 0
    again = run("swap", "live", "docs", *where)
    assert again.stdout == "Alias 'live' points to 'docs' already; nothing was changed.\n"


def test_plan_warns_of_what_migrate_refuses_in_the_source(tmp_path: Path) -> None:
    """A multivector source, the source named as its own target, an alias on an in-place
    migration: migrate refused each, plan said nothing of them."""
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    make_collection(client, "docs", n=10)
    make_collection(client, "more", n=10)
    client.create_collection("colbert", vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE, multivector_config=qm.MultiVectorConfig(
            comparator=qm.MultiVectorComparator.MAX_SIM)))
    client.upsert("colbert", [qm.PointStruct(id=1, vector=[[1.0, 0, 0, 0], [0, 1.0, 0, 0]],
                                             payload={"text": "late interaction"})])
    client.close()
    args = ["--qdrant-path", str(store), "--state-dir", str(tmp_path / "state"),
            "--provider", "hashing", "--model", "hash-words-v1"]
    cases = [
        (["--collection", "colbert"], "is a multivector; migrator re-embeds single dense"),
        (["--collection", "docs", "--target", "docs"],
         "The target of 'docs' is the source collection 'docs' itself"),
        (["--collection", "docs,alias=live", "--strategy", "in-place"],
         "'docs' migrates in place: no alias moves"),
        (["--collection", "docs,target=one", "--collection", "more,target=one"],
         "Two collections in this run write to the same target 'one'"),
        (["--collection", "docs,alias=live", "--collection", "more,alias=live"],
         "Alias 'live' is given to two collections in this run."),
    ]
    for flags, message in cases:
        planned = run("plan", *args, *flags)
        assert planned.exit_code == 0, planned.stderr
        assert "migrate will refuse to start: " in planned.stdout and message in planned.stdout
        refused = run("migrate", *args, *flags)
        assert refused.exit_code == 2 and message in refused.stderr, refused.stderr


def test_drop_old_keeps_what_an_unverified_move_left(store_path: Path, tmp_path: Path) -> None:
    """`--no-verify --drop-old` moved the alias with no check at all and deleted the
    collection it left: the one way back. --drop-old is for a verified move."""
    args = [*base(store_path, tmp_path), "--collection", "docs", "--alias", "live"]
    assert run("migrate", *args).exit_code == 0
    first = QdrantClient(path=str(store_path))
    old = first.get_aliases().aliases[0].collection_name
    first.close()
    moved = run("migrate", *args[:-5], "32", "--collection", "docs", "--alias", "live",
                "--no-verify", "--drop-old", "--json")
    assert moved.exit_code == 0, moved.stderr
    (result,) = json.loads(moved.stdout)["collections"]
    assert result["swapped"] and result["dropped"] is None
    assert result["kept"] == "the move was not verified (--no-verify)"
    client = QdrantClient(path=str(store_path))
    assert old in [c.name for c in client.get_collections().collections]
    client.close()
    text = run("migrate", *args[:-5], "16", "--collection", "docs", "--alias", "live",
               "--no-verify").stdout
    assert "The alias of 'docs' was moved without verification (--no-verify)." in text


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_in_a_command_without_a_run_says_to_run_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool) -> None:
    """It said "Run the same command again to resume" of a status or a validate (nothing
    resumes), and `--json` got no error document."""
    import migrator.cli.commands

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(migrator.cli.commands, "run_status", stopped)
    result = run("status", "--state-dir", str(tmp_path), *(["--json"] if as_json else []))
    assert result.exit_code == 130
    assert "Interrupted (Ctrl-C) before the command finished; run it again." in result.stderr
    assert "resume" not in result.stderr
    if as_json:
        assert json.loads(result.stdout)["error"]["type"] == "Interrupted"


def test_plan_says_migrate_refuses_what_it_cannot_read(store_path: Path,
                                                       tmp_path: Path) -> None:
    """plan said "they will be skipped and listed (missing_text: skip)" of a field no point
    has, and nothing of a sync.updated_field that holds no time; migrate refuses both before
    anything is created."""
    args = [*base(store_path, tmp_path), "--collection", "docs", "--text-field", "body",
            "--missing-text", "skip"]
    planned = run("plan", *args).stdout
    assert ("migrate will refuse to start: None of the first 40 points of 'docs' has text in "
            "field 'body'") in planned
    assert "skipped and listed" not in planned
    refused = run("migrate", *args)
    assert refused.exit_code == 2 and "None of the first 40 points of 'docs'" in refused.stderr
    some = run("plan", *base(store_path, tmp_path), "--collection", "docs").stdout
    assert "migrate will refuse" not in some
    config = tmp_path / "uf.yaml"
    config.write_text("sync:\n  updated_field: text\n")  # a text, not a time
    timed = run("plan", "-c", str(config), *base(store_path, tmp_path), "--collection", "docs")
    assert "migrate will refuse to start: sync.updated_field 'text' of point 1" in timed.stdout


@pytest.mark.parametrize("args", [
    ["ingest", "missing.jsonl", "--collection", "x"],
    ["compare", "missing.jsonl", "--candidate", "hashing:hash-words-v1"],
])
def test_a_missing_input_file_is_named_in_the_json_error_document(tmp_path: Path,
                                                                  args: list[str]) -> None:
    """click refused the path itself: a usage message, and no error document for --json."""
    result = run(*args, "--qdrant-path", str(tmp_path / "q"), "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ConfigError" and "missing.jsonl does not exist" in error["message"]
    assert not (tmp_path / "q").exists()


def test_plan_says_what_migrate_does_with_texts_over_the_models_limit(tmp_path: Path) -> None:
    """Plan estimated the tokens of texts migrate would refuse to send, and said nothing."""
    store = tmp_path / "q"
    client = QdrantClient(path=str(store))
    make_collection(client, "docs", n=10, payload=lambda i, text: {
        "text": " ".join(f"word{j}" for j in range(3 if i % 2 else 30))})
    client.close()
    args = ["plan", "--qdrant-path", str(store), "--collection", "docs", "--provider",
            "openai-compatible", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    env = {"MIGRATOR_PROVIDER__MAX_TOKENS_PER_INPUT": "20"}
    failing = run(*args, env=env)
    assert ("5 of 10 sampled texts are over m's limit of 20 tokens per input: migrate lists "
            "such texts, sends none of them and stops before any swap") in failing.stdout
    cut = run(*args, "--long-input", "truncate", env=env)
    assert "they will be cut at the limit (long_input: truncate)" in cut.stdout
    assert "over m's limit" not in run(*args).stdout  # 8,192 for a model the catalog lacks


def test_drop_old_after_a_rollback_says_it_deletes_a_verified_migration(
        store_path: Path, tmp_path: Path) -> None:
    """After a rollback, drop-old deletes the migration's own collection: the question
    named only the collection, not that a verified migration wrote it."""
    where = ["--qdrant-path", str(store_path), "--state-dir", str(tmp_path / "state")]
    assert run("swap", "live", "docs", *where).exit_code == 0
    assert run("migrate", *base(store_path, tmp_path), "--collection", "docs",
               "--alias", "live").exit_code == 0
    assert run("rollback", "live", *where).exit_code == 0
    asked = CliRunner().invoke(cli, ["drop-old", "live", *where], input="n\n")
    assert asked.exit_code == 1
    assert ("Delete the collection 'docs__hash-words-v1-48' (the migration of 'docs' to "
            "hashing hash-words-v1 wrote it, verified) from") in asked.stderr
