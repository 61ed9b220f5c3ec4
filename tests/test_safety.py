"""Safety from the outside: the CLI in a child process, faults from the loopback server,
signals at many moments. Every run ends with its own message and exit code, never a crash,
and what it leaves resumes to exactly the source."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from migrator import (
    CollectionSettings,
    DimensionMismatch,
    MigrationSettings,
    ProviderResponseError,
    ProviderSettings,
    Settings,
    StoreSettings,
    migrate,
)
from migrator.cli import cli
from migrator.embedding.http import SAME_WRONG_ANSWERS
from migrator.interrupts import stoppable
from migrator.settings import VerifySettings
from migrator.state import State

from .conftest import embedded_store
from .loopback import Fault, LoopbackServer, vector_for

ROOT = Path(__file__).resolve().parent.parent
POINTS = 3000


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded store with `docs` of 3,000 points, built once and copied per test."""
    return embedded_store(tmp_path_factory.mktemp("source") / "q", {"docs": POINTS})


@pytest.fixture
def store(big_source: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "q"
    shutil.copytree(big_source, copy)
    return copy


def migrate_args(store: Path, server: LoopbackServer, *extra: str) -> list[str]:
    return ["migrate", "--qdrant-path", str(store), "--collection", "docs",
            "--provider", "openai-compatible", "--base-url", server.url, "--model", "m",
            "--page-size", "128", "--batch-size", "32", "--state-dir",
            str(store.parent / "state"), "-q", *extra]


def child(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    return subprocess.Popen([sys.executable, "-m", "migrator", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def ended(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    """Wait for a child; one that hangs is killed (and fails the test)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the child hung for {timeout} s: {err[-2000:]}")
    return process.returncode, out, err


def run_cli(args: list[str]) -> tuple[int, str, str]:
    return ended(child(args))


def signalled(args: list[str], server: LoopbackServer, *, after: int,
              signum: int = signal.SIGINT, timeout: float = 120) -> tuple[int, str, str]:
    """The CLI in a child, sent `signum` once `after` requests reached the server."""
    process = child(args)
    deadline = time.monotonic() + 60
    while server.requests < after and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signum)
    return ended(process, timeout)


def finish_and_count(store: Path, server: LoopbackServer) -> dict[str, Any]:
    """Run the same migration to the end; its JSON result."""
    code, out, err = run_cli(migrate_args(store, server, "--no-verify", "--json"))
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)["collections"][0]
    assert result["target_count"] == POINTS
    return result


def error(message: str, code: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}


FATAL = {
    "401 mid-run": ([Fault(401, error("Incorrect API key provided", "invalid_api_key"))],
                    "HTTP 401"),
    "insufficient_quota": ([Fault(429, error("You exceeded your current quota",
                                             "insufficient_quota"))], "quota"),
    "invalid answers": ([Fault(200, raw=b"{not json")] * 40, "not JSON"),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FATAL), ids=list(FATAL))
def test_a_fatal_provider_error_mid_backfill_ends_with_its_message(
        store: Path, fault: str) -> None:
    """Issue 11.5: the store was closed while the writer thread was inside `upsert`, and
    local mode segfaulted (exit 139) instead of printing the provider's error."""
    faults, said = FATAL[fault]
    with LoopbackServer(dims=8) as server:
        server.faults.extend([Fault(0)] * 12 + faults)
        code, _, err = run_cli(migrate_args(store, server))
        assert code == 1, err
        assert said in err and "Traceback" not in err
        assert "run the same command again" in err
        server.faults.clear()  # the cause is fixed
        finish_and_count(store, server)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "after"), [
    (signal.SIGINT, 130, 1), (signal.SIGINT, 130, 9), (signal.SIGINT, 130, 30),
    (signal.SIGTERM, 143, 4), (signal.SIGTERM, 143, 17)])
def test_first_signal_stops_gracefully_and_the_rerun_resumes(
        store: Path, signum: int, code: int, after: int) -> None:
    """Issue 11.6: no new requests, in-flight pages written and checkpointed, exit
    130/143 with one line saying how to resume; the same command then completes."""
    with LoopbackServer(dims=8, latency=0.03) as server:
        process = child(migrate_args(store, server, "--no-verify"))
        deadline = time.monotonic() + 60
        while server.requests < after and time.monotonic() < deadline:
            time.sleep(0.002)
        sent_before = server.requests
        process.send_signal(signum)
        returncode, _, err = ended(process, 120)
        assert returncode == code, err
        assert "Traceback" not in err
        assert "Stopped by " + signal.Signals(signum).name in err
        assert "again to resume" in err
        # what the stopped run paid for, as the server counted it
        paid = re.search(r"This run paid for ([\d,]+) texts? in ([\d,]+) requests?", err)
        assert paid is not None, err
        assert [int(n.replace(",", "")) for n in paid.groups()] == [server.texts,
                                                                    server.requests]
        # only what was in flight (4 requests, and as many dispatched while the signal
        # travelled) may still have been answered: not the ~90 the rest of the run needs
        assert server.requests - sent_before <= 2 * 4 + 1
        result = finish_and_count(store, server)
        if "checkpointed" in err:  # stopped in the backfill: its pages were kept
            written = int(err.split(" of ")[0].split()[-1].replace(",", ""))
            assert result["resumed_written"] == written


@pytest.mark.slow
def test_ctrl_c_stops_compare_gracefully_and_the_rerun_pays_nothing_twice(
        tmp_path: Path) -> None:
    """compare had no stop of its own: Ctrl-C dropped the answers in flight, and the run
    again paid for them twice."""
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"id": i, "text": f"note {i} on tides"}) + "\n"
                             for i in range(600)))
    with LoopbackServer(dims=8, latency=0.1) as server:
        (tmp_path / "c.yaml").write_text(json.dumps({"candidates": [
            {"provider": "openai-compatible", "model": "m", "base_url": server.url,
             "batch_size": 16, "concurrency": 3}]}))
        args = ["compare", str(texts), "--candidates", str(tmp_path / "c.yaml"),
                "--state-dir", str(tmp_path / "state"), "-o", str(tmp_path / "r.md")]
        code, _, err = signalled(args, server, after=6)
        assert code == 130, err
        assert "Traceback" not in err
        assert "compare stopped while measuring openai-compatible/m (candidate 1 of 1)" in err
        assert "pays only for the rest" in err and not (tmp_path / "r.md").exists()
        assert 0 < server.texts < 600
        code, _, err = run_cli(args)
        assert code == 0, err
    assert max(server.seen.values()) == 1  # every answer of the stopped run was cached


# the CLI in a child whose cache.db may hold only so many pages, through any connection:
# SQLite then fails as on a full disk ("database or disk is full")
SMALL_DISK = """
import sys
import migrator.databases as databases
import migrator.vector_cache as vector_cache
real = databases.connect
def connect(path, **options):
    db = real(path, **options)
    if path.name == "cache.db":
        db.execute("PRAGMA max_page_count = {pages}")
    return db
databases.connect = vector_cache.connect = connect
from migrator.cli.shell import main
sys.argv[0] = "migrator"
main()
"""


@pytest.mark.slow
def test_a_full_disk_ends_with_its_message_and_the_rerun_pays_only_what_was_lost(
        store: Path) -> None:
    """A state directory on a full disk ended the run with SQLite's traceback."""
    with LoopbackServer(dims=8) as server:
        process = subprocess.Popen(
            [sys.executable, "-c", SMALL_DISK.format(pages=10), *migrate_args(store, server)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        code, _, err = ended(process)
        assert code == 1, err
        assert "Traceback" not in err and "cache.db is full" in err
        assert "run the same command again" in err
        paid = server.texts
        assert 0 < paid < POINTS  # it stopped on the way
        finish_and_count(store, server)
        # what was committed before the disk filled is not paid again: only the answer that
        # did not fit and those in flight beside it (4 requests of 32 texts)
        assert server.texts - POINTS <= 4 * 32


@pytest.mark.slow
def test_a_stop_does_not_wait_out_the_retries_of_a_failing_provider(store: Path) -> None:
    """The first Ctrl-C while the server answered 503 waited for every request to go
    through all its retries and their backoff (minutes): a request is not sent again, nor
    sent at all, once the run is stopping."""
    with LoopbackServer(dims=8) as server:
        server.faults.extend([Fault(0)] * 6 + [Fault(503, error("overloaded", "server_error"))]
                             * 400)
        process = child(migrate_args(store, server, "--no-verify"))
        deadline = time.monotonic() + 60
        while server.requests < 14 and time.monotonic() < deadline:  # retrying by now
            time.sleep(0.002)
        sent = server.requests
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        returncode, _, err = ended(process, 60)
        assert time.monotonic() - started < 5, "the stop waited out the retries"
        assert returncode == 130, err
        assert "Traceback" not in err and "Stopped by SIGINT" in err
        assert server.requests - sent <= 4 + 1  # only what was in flight
        server.faults.clear()  # the provider is back
        finish_and_count(store, server)


@pytest.mark.slow
# The shortest gap is 20 ms, not 0: two signals sent back to back reach a process that has
# not been scheduled in between as one (the kernel keeps one pending signal of a kind), and
# one Ctrl-C rightly waits for the requests in flight. That failed about 1 run in 36; no
# hand presses Ctrl-C twice within 20 ms.
@pytest.mark.parametrize("gap", [0.02, 0.05])
def test_second_ctrl_c_aborts_at_once_without_corrupting(store: Path, gap: float) -> None:
    with LoopbackServer(dims=8, latency=0.2) as server:
        process = child(migrate_args(store, server, "--no-verify"))
        deadline = time.monotonic() + 60
        while server.requests < 6 and time.monotonic() < deadline:
            time.sleep(0.002)
        server.latency = 8.0  # from now on a graceful stop would wait this long
        time.sleep(0.3)  # every request in flight is one of those
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        time.sleep(gap)
        process.send_signal(signal.SIGINT)
        returncode, _, err = ended(process, 60)
        assert time.monotonic() - started < 6, "the second Ctrl-C waited for the provider"
        assert returncode == 130, err
        server.latency = 0.0
        assert "Traceback" not in err and "Stopped by SIGINT" in err
        finish_and_count(store, server)


# ---- ownership: migrator writes into and deletes only what it created -------------------

def hashing_args(store: Path, state: Path, *extra: str) -> list[str]:
    return ["--qdrant-path", str(store), "--state-dir", str(state), "--provider", "hashing",
            "--model", "hash-words-v1", "--dimensions", "48", *extra]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def two_sources(tmp_path: Path) -> Path:
    return embedded_store(tmp_path / "two", {"a": 120, "b": 30})


def count(store: Path, collection: str) -> int:
    client = QdrantClient(path=str(store))
    try:
        return int(client.count(collection, exact=True).count)
    finally:
        client.close()


def aliases(store: Path) -> dict[str, str]:
    client = QdrantClient(path=str(store))
    try:
        return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    finally:
        client.close()


def test_a_wrong_target_never_rewrites_another_migrations_collection(
        two_sources: Path, tmp_path: Path) -> None:
    """Issue 11.1: `migrate b --target <a's target>` deleted a's 120 points (exit 0) and
    a_live then served b's 30."""
    state = tmp_path / "state"
    first = invoke("migrate", *hashing_args(two_sources, state, "--collection", "a",
                                            "--alias", "a_live"))
    assert first.exit_code == 0, first.stderr
    a_target = aliases(two_sources)["a_live"]
    wrong = invoke("migrate", *hashing_args(two_sources, state, "--collection", "b",
                                            "--target", a_target))
    assert wrong.exit_code == 2
    assert f"{a_target!r} already exists" in wrong.stderr and "'a'" in wrong.stderr
    assert "--adopt-target" in wrong.stderr and "Traceback" not in wrong.stderr
    adopted = invoke("migrate", *hashing_args(two_sources, state, "--collection", "b",
                                              "--target", a_target, "--adopt-target"))
    assert adopted.exit_code == 2 and "served by alias a_live" in adopted.stderr
    assert count(two_sources, a_target) == 120
    assert aliases(two_sources) == {"a_live": a_target}


def test_an_alias_serving_another_collections_data_is_never_moved(
        two_sources: Path, tmp_path: Path) -> None:
    """`migrate b --alias a_live`, a_live serving a: the alias moved to b's data (exit 0),
    and everything that queried a_live got b's 30 points for a's 120."""
    state = tmp_path / "state"
    assert invoke("swap", "a_live", "a", "--qdrant-path", str(two_sources), "--state-dir",
                  str(state)).exit_code == 0
    planned = invoke("plan", *hashing_args(two_sources, state, "--collection", "b",
                                           "--alias", "a_live"))
    assert "migrate will refuse to start: Alias 'a_live' serves 'a', which is neither 'b' " \
           "nor a migration of it" in planned.stdout
    wrong = invoke("migrate", *hashing_args(two_sources, state, "--collection", "b",
                                            "--alias", "a_live"))
    assert wrong.exit_code == 2 and "migrator swap a_live <target>" in wrong.stderr
    assert aliases(two_sources) == {"a_live": "a"}
    assert collections(two_sources) == ["a", "b"]  # refused before anything was made
    # a's own migration moves it, and a later one of a moves it on (the chain)
    for dims in ("48", "24"):
        moved = invoke("migrate", *hashing_args(two_sources, state, "--collection", "a",
                                                "--alias", "a_live", "--dimensions", dims))
        assert moved.exit_code == 0, moved.stderr
        assert aliases(two_sources) == {"a_live": f"a__hash-words-v1-{dims}"}
    # with the state directory lost, the target's own metadata says it is a's migration
    fresh = invoke("migrate", *hashing_args(two_sources, tmp_path / "elsewhere", "--collection",
                                            "a", "--alias", "a_live", "--dimensions", "32"))
    assert fresh.exit_code == 0, fresh.stderr


def test_ownership_survives_a_lost_state_directory(two_sources: Path, tmp_path: Path) -> None:
    """The target's own metadata says which migration created it."""
    args = hashing_args(two_sources, tmp_path / "state", "--collection", "a")
    assert invoke("migrate", *args).exit_code == 0
    shutil.rmtree(tmp_path / "state")
    again = invoke("migrate", *args, "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["collections"][0]["target_count"] == 120
    restarted = invoke("migrate", *args, "--restart", "--yes", "--json")
    assert restarted.exit_code == 0, restarted.stderr
    assert json.loads(restarted.stdout)["collections"][0]["created"] is True


def test_adopting_an_existing_collection_is_explicit(two_sources: Path, tmp_path: Path) -> None:
    client = QdrantClient(path=str(two_sources))
    client.create_collection("mine", vectors_config=qm.VectorParams(
        size=48, distance=qm.Distance.COSINE))
    client.close()
    args = hashing_args(two_sources, tmp_path / "state", "--collection", "b",
                        "--target", "mine")
    refused = invoke("migrate", *args)
    assert refused.exit_code == 2 and "created outside this migration" in refused.stderr
    adopted = invoke("migrate", *args, "--adopt-target")
    assert adopted.exit_code == 0, adopted.stderr
    assert count(two_sources, "mine") == 30
    assert invoke("migrate", *args).exit_code == 0  # adopted once, recorded in the state
    # --restart forgets an adopted target's progress but never deletes it
    assert invoke("migrate", *args, "--restart", "--yes", "--adopt-target").exit_code == 0
    assert count(two_sources, "mine") == 30


def test_a_target_made_by_another_migration_says_what_differs(two_sources: Path,
                                                               tmp_path: Path) -> None:
    """"created by migrator's migration of 'a'" was all it said, to a user migrating 'a':
    another text template makes another migration with the same default target name."""
    args = hashing_args(two_sources, tmp_path / "state", "--collection", "a")
    assert invoke("migrate", *args).exit_code == 0
    refused = invoke("migrate", *args, "--text-template", "{text}!")
    assert refused.exit_code == 2, refused.output
    assert ("was created by another of migrator's migrations, with the text from field "
            "'text' (this run: template '{text}!')") in refused.stderr
    assert "Give another --target, or --adopt-target" in refused.stderr


def test_a_no_op_swap_records_nothing_and_rollback_still_works(
        two_sources: Path, tmp_path: Path) -> None:
    """Issue 11.3: one swap to the collection the alias already served broke rollback."""
    store = ["--qdrant-path", str(two_sources), "--state-dir", str(tmp_path / "state")]
    assert invoke("swap", "live", "a", *store).exit_code == 0
    assert invoke("swap", "live", "b", *store).exit_code == 0
    assert invoke("swap", "live", "b", *store).exit_code == 0  # no-op
    back = invoke("rollback", "live", *store)
    assert back.exit_code == 0, back.stderr
    assert aliases(two_sources) == {"live": "a"}


def test_a_question_nobody_can_answer_is_a_clear_refusal(two_sources: Path,
                                                         tmp_path: Path) -> None:
    """A deletion that asks, run where nothing can answer (cron, CI: stdin closed), said
    only click's "Aborted!" (exit 1) and printed nothing under --json."""
    store = ["--qdrant-path", str(two_sources), "--state-dir", str(tmp_path / "state")]
    assert invoke("swap", "live", "a", *store).exit_code == 0
    assert invoke("swap", "live", "b", *store).exit_code == 0
    code, out, err = ended(child(["drop-old", "live", *store, "--json"],
                                 stdin=subprocess.DEVNULL))
    assert code == 2, err
    assert "Give --yes to go ahead without being asked" in err and "Aborted" not in err
    assert json.loads(out)["error"]["exit_code"] == 2
    assert count(two_sources, "a") == 120  # nothing deleted
    migrate = ["migrate", *store, "--collection", "b", "--provider", "hashing", "--model",
               "hash-words-v1", "--dimensions", "16", "--no-verify", "-q"]
    assert run_cli(migrate)[0] == 0
    code, _, err = ended(child([*migrate, "--restart"], stdin=subprocess.DEVNULL))
    assert code == 2 and "--restart deletes 'b__hash-words-v1-16'" in err
    assert count(two_sources, "b__hash-words-v1-16") == 30
    declined = CliRunner().invoke(cli, ["drop-old", "live", *store, "--json"], input="n\n")
    assert declined.exit_code == 1
    assert json.loads(declined.stdout)["error"]["message"] == (
        "Not confirmed; 'a' was not deleted.")
    asked_twice = CliRunner().invoke(cli, ["drop-old", "live", *store], input="maybe\ny\n")
    assert asked_twice.exit_code == 0 and "Answer y or n." in asked_twice.stderr
    assert aliases(two_sources) == {"live": "b"} and "a" not in collections(two_sources)


def test_ctrl_c_at_the_restart_question_ends_at_once_deleting_nothing(
        two_sources: Path, tmp_path: Path) -> None:
    """Inside a run the first Ctrl-C only asks it to stop, and the question blocked the
    event loop: Ctrl-C at it did nothing until an answer came (and a "y" then deleted)."""
    migrate = ["migrate", "--qdrant-path", str(two_sources), "--state-dir",
               str(tmp_path / "state"), "--collection", "b", "--provider", "hashing",
               "--model", "hash-words-v1", "--dimensions", "16", "--no-verify", "-q"]
    assert run_cli(migrate)[0] == 0
    asking = child([*migrate, "--restart"], stdin=subprocess.PIPE)
    assert asking.stderr is not None
    stderr = asking.stderr.fileno()
    os.set_blocking(stderr, False)
    shown, deadline = b"", time.monotonic() + 60
    while b"Continue? [y/N]" not in shown and time.monotonic() < deadline:
        with contextlib.suppress(BlockingIOError):
            shown += os.read(stderr, 4096)
        time.sleep(0.05)
    asking.send_signal(signal.SIGINT)
    try:
        code = asking.wait(timeout=10)  # stdin stays open: no answer ever comes
    finally:
        asking.kill()
        for stream in (asking.stdin, asking.stdout, asking.stderr):
            if stream is not None:
                stream.close()
    assert code == 130
    assert count(two_sources, "b__hash-words-v1-16") == 30


def test_an_old_no_op_record_does_not_block_rollback(two_sources: Path, tmp_path: Path) -> None:
    state = State(tmp_path / "state")
    state.record_alias("live", None, "a")
    state.record_alias("live", "a", "b")
    state.record_alias("live", "b", "b")  # what a no-op swap recorded before
    state.close()
    client = QdrantClient(path=str(two_sources))
    client.update_collection_aliases(change_aliases_operations=[qm.CreateAliasOperation(
        create_alias=qm.CreateAlias(collection_name="b", alias_name="live"))])
    client.close()
    back = invoke("rollback", "live", "--qdrant-path", str(two_sources),
                  "--state-dir", str(tmp_path / "state"))
    assert back.exit_code == 0, back.stderr
    assert aliases(two_sources) == {"live": "a"}


def test_migrations_are_keyed_by_store(tmp_path: Path) -> None:
    """Issue 11.4: the same names on a second store were told to --restart an
    "interrupted migration"."""
    stores = [embedded_store(tmp_path / name, {"a": 20}) for name in ("one", "two")]
    for path in stores:
        result = invoke("migrate", *hashing_args(path, tmp_path / "state", "--collection", "a",
                                                 "--json"))
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["collections"][0]["created"] is True


# ---- vectors are right or not written -------------------------------------------------

def unknown_model(tmp_path: Path, url: str, **provider: Any) -> Settings:
    """A model the catalog lacks, on an OpenAI-compatible server (the loopback)."""
    return Settings(
        source=StoreSettings(path=tmp_path / "small"),
        provider=ProviderSettings(**{"name": "openai-compatible", "model": "served",
                                     "base_url": url, "batch_size": 16, "concurrency": 2,
                                     **provider}),
        collections=[CollectionSettings(name="docs")],
        migration=MigrationSettings(state_dir=tmp_path / "state", page_size=16),
        verify=VerifySettings(enabled=False),
    )


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return embedded_store(tmp_path / "small", {"docs": 40})


def stored(store: Path, collection: str) -> dict[Any, Any]:
    client = QdrantClient(path=str(store))
    try:
        if not client.collection_exists(collection):
            return {}
        points, _ = client.scroll(collection, limit=10_000, with_vectors=True)
        return {p.id: p for p in points}
    finally:
        client.close()


def test_truncate_for_a_model_the_catalog_lacks(small: Path, tmp_path: Path) -> None:
    """Issue 11.7: the policy was ignored and `dimensions` always sent (the server answered
    400); now the native size is learnt from the probe and the vectors are cut here."""
    with LoopbackServer(dims=8) as server:
        result = migrate(unknown_model(tmp_path, server.url, dimensions=4,
                                       dimension_policy="truncate"))
        assert all("dimensions" not in body for body in server.bodies)
    assert result.dims == 4 and result.dims_decision.action == "truncate"
    points = stored(small, result.collections[0].target)
    assert len(points) == 40
    for point in points.values():
        full = vector_for(point.payload["text"], 8)[:4]
        np.testing.assert_allclose(point.vector, full / np.linalg.norm(full), atol=1e-5)


def test_pad_for_a_model_the_catalog_lacks(small: Path, tmp_path: Path) -> None:
    with LoopbackServer(dims=8) as server:
        result = migrate(unknown_model(tmp_path, server.url, dimensions=12,
                                       dimension_policy="pad"))
    point = next(iter(stored(small, result.collections[0].target).values()))
    assert len(point.vector) == 12 and not any(point.vector[8:])


def test_a_size_the_policy_cannot_reach_is_said_once(small: Path, tmp_path: Path) -> None:
    """Truncating 8 values to 12 read "Preflight probe: Preflight probe: ... Nothing was
    created. The server may be shortening vectors silently ... Nothing was created.": the
    server did nothing of the kind; it was asked for no size."""
    with LoopbackServer(dims=8) as server, pytest.raises(DimensionMismatch) as refused:
        migrate(unknown_model(tmp_path, server.url, dimensions=12,
                              dimension_policy="truncate"))
    message = str(refused.value)
    assert message.count("Preflight probe") == 1 and message.count("Nothing was created") == 1
    assert "returned 8-dimensional vectors; the configuration says 12" in message
    assert "shortening vectors silently" not in message


def test_a_configured_size_is_never_dropped_silently(small: Path, tmp_path: Path) -> None:
    """Issue 11.7: with send_dimensions: false a 256-d target was built for a configured
    size the server never produced, exit 0."""
    with LoopbackServer(dims=8) as server, pytest.raises(DimensionMismatch,
                                                         match="dimension_policy: truncate"):
        migrate(unknown_model(tmp_path, server.url, dimensions=4, send_dimensions=False))
    assert stored(small, "docs__served-4") == {} and stored(small, "docs__served-8") == {}


def test_a_server_that_refuses_dimensions_is_exit_2_naming_the_policy(
        small: Path, tmp_path: Path) -> None:
    with LoopbackServer(dims=8) as server:
        server.faults.append(Fault(400, error("This model does not support 'dimensions'")))
        code, _, err = run_cli(["migrate", "--qdrant-path", str(small), "--collection", "docs",
                                "--provider", "openai-compatible", "--base-url", server.url,
                                "--model", "served", "--dimensions", "4",
                                "--state-dir", str(tmp_path / "state")])
    assert code == 2, err
    assert "dimension_policy: truncate" in err and "Nothing was created" in err
    assert "Traceback" not in err
    assert set(stored(small, "docs__served-4")) == set()


def short_answer(count: int, width: int) -> Fault:
    return Fault(200, {"data": [{"index": i, "embedding": [0.5] * width}
                                for i in range(count)]})


def test_one_short_answer_to_the_probe_creates_nothing(small: Path, tmp_path: Path) -> None:
    """Issue 11.8: one short answer sized the collection (7-d here) and wrote wrong
    vectors; the probe's requests must agree first."""
    with LoopbackServer(dims=8) as server:
        server.faults.append(short_answer(8, 7))
        with pytest.raises(DimensionMismatch, match="Nothing was created"):
            migrate(unknown_model(tmp_path, server.url))
        assert stored(small, "docs__served-7") == {}
        result = migrate(unknown_model(tmp_path, server.url))  # the retry is not blocked
    assert result.dims == 8 and result.collections[0].target_count == 40


def test_a_wrong_answer_after_a_cached_probe_never_poisons_the_cache(
        small: Path, tmp_path: Path) -> None:
    """Issue 11.9: with the probe answered from the cache, the expected width came from the
    first live answer; a wrong one was cached and every later run failed."""
    with LoopbackServer(dims=8) as server:
        migrate(unknown_model(tmp_path, server.url))
        client = QdrantClient(path=str(small))
        client.upsert("docs", points=[qm.PointStruct(id=1000 + i, vector=[1.0] * 8,
                                                     payload={"text": f"new text {i}"})
                                      for i in range(10)])
        client.close()
        server.faults.extend([short_answer(10, 5)] * SAME_WRONG_ANSWERS)  # every try
        with pytest.raises(ProviderResponseError):
            migrate(unknown_model(tmp_path, server.url))
        result = migrate(unknown_model(tmp_path, server.url))
    assert result.collections[0].target_count == 50
    for point in stored(small, result.collections[0].target).values():
        np.testing.assert_allclose(point.vector, vector_for(point.payload["text"], 8),
                                   atol=1e-5)


def test_a_bad_cached_row_is_a_miss_and_is_replaced(small: Path, tmp_path: Path) -> None:
    with LoopbackServer(dims=8) as server:
        migrate(unknown_model(tmp_path, server.url))  # the probe fixes the width at 8
        cache = sqlite3.connect(tmp_path / "state" / "cache.db")
        cache.execute("UPDATE vectors SET vector = ?, dims = 5",
                      (np.zeros(5, dtype="<f4").tobytes(),))
        cache.commit()
        cache.close()
        # a size asked for is the width every row must have, cached or not
        config = unknown_model(tmp_path, server.url, dimensions=8)
        result = migrate(config)
    assert result.collections[0].target_count == 40
    for point in stored(small, result.collections[0].target).values():
        np.testing.assert_allclose(point.vector, vector_for(point.payload["text"], 8),
                                   atol=1e-5)


def test_cache_commands_create_nothing_at_a_mistyped_path(tmp_path: Path) -> None:
    """Issue 11.17 (part): `cache stats` created an empty cache at a mistyped path."""
    stats = invoke("cache", "stats", "--state-dir", str(tmp_path / "typo"), "--json")
    assert stats.exit_code == 0 and json.loads(stats.stdout)["entries"] == 0
    said = invoke("cache", "stats", "--state-dir", str(tmp_path / "typo")).stdout
    assert said == (f"There is no embedding cache at {tmp_path / 'typo' / 'cache.db'} "
                    "(check --state-dir).\n")
    assert invoke("cache", "clear", "--yes", "--state-dir", str(tmp_path / "typo")).exit_code == 0
    assert not (tmp_path / "typo").exists()


# ---- failures leave nothing in the way ---------------------------------------------------

@pytest.mark.parametrize("text", [["--text-field", "body"], ["--text-template", "{body}"]])
def test_no_text_anywhere_is_found_by_the_preflight(two_sources: Path, tmp_path: Path,
                                                    text: list[str]) -> None:
    """Issue 11.11: a mistyped text field created an empty target and a failed row."""
    state = tmp_path / "state"
    result = invoke("migrate", *hashing_args(two_sources, state, "--collection", "a", *text))
    assert result.exit_code == 2, result.stderr
    assert "None of the first 120 points of 'a' has text" in result.stderr
    assert "n, tags, text" in result.stderr and "Nothing was created" in result.stderr
    client = QdrantClient(path=str(two_sources))
    assert sorted(c.name for c in client.get_collections().collections) == ["a", "b"]
    client.close()
    shown = invoke("status", "--qdrant-path", str(two_sources), "--state-dir", str(state),
                   "--json")
    assert json.loads(shown.stdout)["migrations"] == []


def test_sync_fails_when_points_have_no_text(two_sources: Path, tmp_path: Path) -> None:
    """Issue 11.17: sync under the default missing-text policy exited 0."""
    args = hashing_args(two_sources, tmp_path / "state", "--collection", "a")
    assert invoke("migrate", *args).exit_code == 0
    client = QdrantClient(path=str(two_sources))
    client.upsert("a", points=[qm.PointStruct(id=5000, vector=[1.0] * 8, payload={"n": 1})])
    client.close()
    synced = invoke("sync", *args)
    assert synced.exit_code == 1 and "1 point of 'a' has no text" in synced.stderr
    assert invoke("sync", *args, "--missing-text", "skip").exit_code == 0


def ingest_args(data: Path, store: Path, *extra: str) -> list[str]:
    """A child runs in the repository: its state (and cache) go beside the store, not there."""
    return ["ingest", str(data), "--collection", "notes", "--qdrant-path", str(store),
            "--state-dir", str(store.parent / "state"), "--provider", "hashing", "--model",
            "hash-words-v1", *extra]


def collections(store: Path) -> list[str]:
    client = QdrantClient(path=str(store))
    try:
        return sorted(c.name for c in client.get_collections().collections)
    finally:
        client.close()


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_an_ingest_whose_state_directory_cannot_be_made_creates_nothing(tmp_path: Path
                                                                        ) -> None:
    """It was a traceback once a record without text was to be listed, after the
    collection had been created and half filled."""
    data = write_jsonl(tmp_path / "notes.jsonl", [{"id": 1, "text": "tides"}, {"id": 2}])
    (tmp_path / "a-file").write_text("")
    result = invoke(*ingest_args(data, tmp_path / "q", "--state-dir",
                                 str(tmp_path / "a-file" / "state")))
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "cannot make its state directory" in result.stderr
    assert collections(tmp_path / "q") == []


def test_an_interrupted_ingest_is_replaced_by_the_same_command(tmp_path: Path) -> None:
    """Issue 11.12: a failed ingest left a collection that blocked the retry."""
    data = write_jsonl(tmp_path / "notes.jsonl",
                       [{"id": i, "text": f"note {i} on tides"} for i in range(2000)])
    store = tmp_path / "q"
    with LoopbackServer(dims=8, latency=0.05) as server:
        args = [*ingest_args(data, store, "-q"), "--provider", "openai-compatible",
                "--model", "m", "--base-url", server.url, "--batch-size", "32"]
        code, _, err = signalled(args, server, after=6)
        assert code == 130 and "Run the same command again" in err, err
        assert 0 < count(store, "notes") < 2000
        again = invoke(*args, "--json")
        assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["stats"]["written"] == 2000
    assert count(store, "notes") == 2000


def test_ingest_loses_nothing_silently(tmp_path: Path) -> None:
    """Issue 11.13: over-long texts were dropped as "without text", repeated ids collapsed
    into one point, and a missing text field gave an empty collection, all with exit 0."""
    store = tmp_path / "q"
    repeated = write_jsonl(tmp_path / "rep.jsonl", [{"id": 7, "text": f"t{i}"} for i in range(10)])
    result = invoke(*ingest_args(repeated, store))
    assert result.exit_code == 2 and "repeat an id" in result.stderr and "7" in result.stderr
    missing = write_jsonl(tmp_path / "miss.jsonl", [{"id": i, "body": "x"} for i in range(5)])
    result = invoke(*ingest_args(missing, store, "--text-field", "content"))
    assert result.exit_code == 2 and "keys are: body, id" in result.stderr
    result = invoke(*ingest_args(missing, store, "--id-field", "uid", "--text-field", "body"))
    assert result.exit_code == 2 and "has the id field 'uid'; its keys are: body" in result.stderr
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("id,title\n1,a\n2,b\n", encoding="utf-8")
    result = invoke(*ingest_args(csv_file, store))
    assert result.exit_code == 2 and "columns are: id, title" in result.stderr
    long = write_jsonl(tmp_path / "long.jsonl", [
        {"id": 1, "text": "short"}, {"id": 2, "text": " ".join(["word"] * 20_000)}])
    result = invoke(*ingest_args(long, store, "--provider", "openai-compatible",
                                 "--model", "text-embedding-3-small",
                                 "--base-url", "http://127.0.0.1:9"))
    assert result.exit_code == 1 and "longer than text-embedding-3-small" in result.stderr
    assert "--long-input" in result.stderr
    assert collections(store) == []
    truncated = invoke(*ingest_args(long, store, "--long-input", "truncate", "--json"))
    assert truncated.exit_code == 0 and json.loads(truncated.stdout)["stats"]["written"] == 2


@pytest.mark.parametrize(("name", "content", "said"), [
    ("bad.jsonl", b'{"id": 1, "text": "caf\xe9"}\n', "not UTF-8: byte 0xe9 at byte 22"),
    ("bad.jsonl", b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "\\ud83d"}\n', "lone surrogate"),
    ("bad.jsonl", b'{"id": true, "text": "ok"}\n', "has the id True"),
    ("bad.jsonl", b'{"id": 1.5, "text": "ok"}\n', "has the id 1.5"),
    ("bad.jsonl", b"", "holds no records (read as jsonl)"),  # it made an empty collection
    ("bad.jsonl", b"\n\n", "holds no records"),
    # the open quote swallowed record 2 into record 1's text: "Ingested 1 of 1 records"
    ("bad.csv", b'id,text\n1,"unterminated\n2,world\n',
     "bad.csv:2 is not valid CSV (unexpected end"),
    ("bad.csv", b'id,text\n1,fine\n2,"a"b\n', "bad.csv:3 is not valid CSV"),
    # the text was cut at its comma: "hello" embedded, " world" dropped
    ("bad.csv", b"id,text\n1,hello, world\n", "bad.csv:2 has 3 fields and the header 2"),
    ("bad.csv", b"id,text\n1," + b"x" * 200_000 + b"\n", "bad.csv:2 has a field longer than"),
    # a record without the id the others have was numbered by its row: point 1 here, or
    # silently a number another record may hold in a later file
    ("bad.jsonl", b'{"id": 7, "text": "a"}\n{"text": "b"}\n',
     "1 record of {path} has no 'id', the id field of the others (record 2)"),
    ("bad.csv", b"id,text\n7,a\n,b\n,c\n", "no 'id', the id field of the others (records 2, 3)"),
])
def test_bad_input_files_are_exit_2_with_a_sentence(tmp_path: Path, name: str, content: bytes,
                                                    said: str) -> None:
    """Issue 11.15: tracebacks for non-UTF-8 input, a lone surrogate and odd ids; and CSV
    records merged or cut without a word."""
    data = tmp_path / name
    data.write_bytes(content)
    result = invoke(*ingest_args(data, tmp_path / "q"))
    assert result.exit_code == 2, result.output
    assert said.format(path=data) in result.stderr and "Traceback" not in result.stderr
    assert collections(tmp_path / "q") == []


@pytest.mark.parametrize("header", ["id;text", "id|text"])
def test_a_csv_separated_otherwise_than_by_commas_is_read(tmp_path: Path, header: str) -> None:
    """What a spreadsheet writes where the comma is the decimal mark: read as one column
    named 'id;text', it had "no text"."""
    sep = header[2]
    data = tmp_path / "rows.csv"
    data.write_text(f"{header}\n1{sep}first, with a comma\n2{sep}second\n", encoding="utf-8")
    result = invoke(*ingest_args(data, tmp_path / "q"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stats"]["written"] == 2


def test_a_non_utf8_csv_names_the_line(tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_bytes(b"id,text\n1,fine\n2,caf\xe9\n")
    result = invoke(*ingest_args(data, tmp_path / "q"))
    assert result.exit_code == 2 and "bad.csv:3 is not UTF-8" in result.stderr


def test_a_lone_surrogate_in_a_source_point_is_listed_not_a_crash(
        two_sources: Path, tmp_path: Path) -> None:
    client = QdrantClient(path=str(two_sources))
    client.upsert("b", points=[qm.PointStruct(id=999, vector=[1.0] * 8,
                                              payload={"text": "bad \ud83d text"})])
    client.close()
    args = hashing_args(two_sources, tmp_path / "state", "--collection", "b")
    result = invoke("migrate", *args)
    assert result.exit_code == 1 and "999" in result.stderr and "Traceback" not in result.stderr
    skipped = (tmp_path / "state" / "b__hash-words-v1-48.skipped.jsonl").read_text()
    assert "lone surrogate" in skipped
    assert invoke("migrate", *args, "--missing-text", "skip").exit_code == 0


@pytest.mark.parametrize(("flag", "value", "said"), [
    ("--qdrant-url", "not a url", "'not a url' is not an http(s) URL"),
    ("--qdrant-url", "ftp://user:secret@host/x", "'ftp://***@host/x' is not an http(s) URL"),
    ("--qdrant-url", "http://localhost:99999", "Port out of range"),
    ("--base-url", "not a url", "provider.base_url: 'not a url' is not an http(s) URL"),
])
def test_a_malformed_url_is_exit_2_at_once(tmp_path: Path, flag: str, value: str,
                                           said: str) -> None:
    """Issues 11.15/11.16: tracebacks, and 141 s of retries for a base URL that is not a
    URL."""
    result = invoke("migrate", "--collection", "docs", "--provider", "openai-compatible",
                    "--model", "m", "--state-dir", str(tmp_path / "s"), flag, value)
    assert result.exit_code == 2, result.output
    assert said in result.stderr and "secret" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_no_server_at_the_base_url_names_it(small: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(["migrate", "--qdrant-path", str(small), "--collection", "docs",
                            "--provider", "openai-compatible", "--model", "m",
                            "--base-url", "http://127.0.0.1:9/v1",
                            "--state-dir", str(tmp_path / "s")])
    assert code == 1 and "could not connect to http://127.0.0.1:9/v1" in err
    assert "Traceback" not in err and collections(small) == ["docs"]


def test_a_corrupt_cache_says_so_and_cache_clear_clears_it(small: Path, tmp_path: Path) -> None:
    """Issue 11.14: a corrupt cache.db had state.db's message (move it aside), and `cache
    clear` could not clear it."""
    args = hashing_args(small, tmp_path / "state", "--collection", "docs")
    assert invoke("migrate", *args).exit_code == 0
    (tmp_path / "state" / "cache.db").write_bytes(b"this is not a database" * 100)
    for leftover in (tmp_path / "state").glob("cache.db-*"):
        leftover.unlink()
    broken = invoke("migrate", *args)
    assert broken.exit_code == 1 and "embedding cache" in broken.stderr
    assert "migrator cache clear" in broken.stderr and "move it aside" not in broken.stderr
    assert invoke("cache", "clear", "--yes", "--state-dir", str(tmp_path / "state")).exit_code == 0
    assert invoke("migrate", *args).exit_code == 0


def test_permission_problems_are_not_called_corruption(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11.14: a state.db the user may not write was reported as corrupt, with the
    advice to move it aside (which discards the alias history rollback needs)."""
    state = tmp_path / "state"
    State(state).close()
    real = os.access
    # the tests run as root, whom no permission bit stops: play a user who may not write
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "state.db"
                        and real(p, mode))
    result = invoke("status", "--state-dir", str(state), "--qdrant-path", ":memory:")
    assert result.exit_code == 1, result.output
    assert "cannot read and write" in result.stderr and "not corrupt" in result.stderr
    assert "move it aside" not in result.stderr


@pytest.mark.parametrize("command", [
    ["plan", "--collection", "docs"], ["status"], ["verify", "--collection", "docs"],
    ["migrate", "--collection", "docs"], ["swap", "live", "docs"],
])
def test_a_mistyped_store_path_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    """Issue 11.17: plan and status created an empty store at a mistyped path."""
    result = invoke(*command, "--qdrant-path", str(tmp_path / "typo"),
                    "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 2, result.output
    assert "There is no embedded Qdrant store at" in result.stderr
    assert not (tmp_path / "typo").exists()


def test_unknown_migrator_variables_are_errors(tmp_path: Path) -> None:
    """Issue 11.17: MIGRATOR_FOO and a mistyped section were ignored silently."""
    result = CliRunner().invoke(cli, ["status", "--state-dir", str(tmp_path)],
                                env={"MIGRATOR_FOO": "1", "MIGRATOR_PROVIDRE__MODEL": "m"})
    assert result.exit_code == 2
    assert "MIGRATOR_FOO: no key 'foo'" in result.stderr
    assert ("MIGRATOR_PROVIDRE__MODEL: no key 'providre' (did you mean "
            "MIGRATOR_PROVIDER__MODEL?)") in result.stderr


def test_a_size_over_qdrants_limit_is_refused_by_the_preflight(tmp_path: Path) -> None:
    result = invoke("plan", "--collection", "docs", "--dimensions", "100000",
                    "--dimension-policy", "pad")
    assert result.exit_code == 2 and "less than or equal to 65536" in result.stderr


def test_plan_does_not_name_a_size_it_does_not_know(small: Path) -> None:
    """Issue 11.17: plan named the target of a model the catalog lacks `docs__served-0`."""
    result = invoke("plan", "--qdrant-path", str(small), "--collection", "docs",
                    "--provider", "openai-compatible", "--model", "served",
                    "--base-url", "http://127.0.0.1:9/v1", "--json")
    assert result.exit_code == 0, result.output
    target = json.loads(result.stdout)["collections"][0]["target"]
    assert target == "docs__served-<size found by the probe>"


def test_verify_with_a_model_of_another_size_says_so(small: Path, tmp_path: Path) -> None:
    """Issue 11.17: `verify` with a model of the wrong size showed a numpy error."""
    state = tmp_path / "state"
    assert invoke("migrate", *hashing_args(small, state, "--collection", "docs")).exit_code == 0
    result = invoke("verify", "--qdrant-path", str(small), "--state-dir", str(state),
                    "--collection", "docs", "--target", "docs__hash-words-v1-48",
                    "--provider", "hashing", "--model", "hash-words-v1", "--dimensions", "32")
    assert result.exit_code == 1, result.output
    assert "produces 32-dimensional vectors" in result.stderr and "size 48" in result.stderr


def test_an_applications_own_signal_handler_is_left_alone() -> None:
    """migrate() as a library call inside an application that handles SIGTERM itself."""
    def mine(signum: int, frame: Any) -> None:
        return None

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        async def body() -> None:
            async with stoppable():
                assert signal.getsignal(signal.SIGTERM) is mine
                assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler

        asyncio.run(body())
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_size_asked_for_must_come_back_exactly(small: Path, tmp_path: Path) -> None:
    """Issue 11.7: a server that ignores `dimensions` (as Ollama does) is caught by the
    probe, exit 2, nothing created."""
    with LoopbackServer(dims=8, honour_dimensions=False) as server:
        code, _, err = run_cli(["migrate", "--qdrant-path", str(small), "--collection", "docs",
                                "--provider", "openai-compatible", "--base-url", server.url,
                                "--model", "served", "--dimensions", "4",
                                "--state-dir", str(tmp_path / "state")])
        assert all(body.get("dimensions") == 4 for body in server.bodies)
    assert code == 2 and "returned vectors of 8 values, expected 4" in err, err
    assert collections(small) == ["docs"]
