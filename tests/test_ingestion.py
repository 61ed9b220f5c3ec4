from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from migrator import ConfigError, MigrationSettings, ProviderSettings, Settings, ingest
from migrator.cli import cli
from migrator.errors import BadInput
from migrator.records import point_id
from migrator.store import QdrantStore

from .loopback import Fault, LoopbackServer


def config(tmp_path: Path) -> Settings:
    return Settings(provider=ProviderSettings(name="hashing", model="hash-words-v1", dimensions=16),
                    migration=MigrationSettings(state_dir=tmp_path / "state", page_size=7))


def test_jsonl_with_ids_and_a_record_without_text(memory_store: QdrantStore,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    rows = [{"id": i, "text": f"row {i}"} for i in range(20)] + [{"id": 99, "title": "no text"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    result = ingest(path, "c", config(tmp_path), store=memory_store)
    assert (result.stats.written, result.stats.skipped, result.dims) == (20, 1, 16)
    point = memory_store.client.retrieve("c", [7])[0]
    assert point.payload == {"id": 7, "text": "row 7"}
    skipped = (tmp_path / "state" / "c.skipped.jsonl").read_text()
    assert '"id": 99' in skipped


def test_csv(memory_store: QdrantStore, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("headline,date\nfirst story,2020\nsecond story,2021\n")
    result = ingest(path, "c", config(tmp_path), text_field="headline", store=memory_store)
    assert result.stats.written == 2 and result.format == "csv"
    assert memory_store.client.retrieve("c", [1])[0].payload == {"headline": "second story",
                                                                 "date": "2021"}


@pytest.mark.parametrize("name, body", [
    ("excel.csv", "id,text\n10,first story\n11,second story\n"),
    ("bom.jsonl", '{"id": 10, "text": "first story"}\n{"id": 11, "text": "second story"}\n'),
])
def test_a_byte_order_mark_is_not_part_of_the_first_field(memory_store: QdrantStore,
                                                          tmp_path: Path, name: str,
                                                          body: str) -> None:
    """A spreadsheet's "CSV UTF-8" starts with a byte order mark: it stuck to the first
    column's name ('\\ufeffid'), so the ids were not found and the records were numbered by
    row, under a payload key no one could type."""
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    result = ingest(path, "c", config(tmp_path), store=memory_store)
    assert result.stats.written == 2
    points = {p.id: p.payload for p in memory_store.client.scroll("c", limit=10)[0]}
    assert set(points) == {10, 11} and points[10]["text"] == "first story"
    assert all(not key.startswith("\ufeff") for payload in points.values() for key in payload)


def test_beir_corpus_uses_title_and_text(memory_store: QdrantStore, tmp_path: Path) -> None:
    corpus = tmp_path / "beir"
    corpus.mkdir()
    (corpus / "corpus.jsonl").write_text(
        json.dumps({"_id": "4983", "title": "Tides", "text": "The moon pulls."}) + "\n"
        + json.dumps({"_id": "doc-b", "title": "Bread", "text": "Dough rises."}) + "\n")
    result = ingest(corpus, "beir", config(tmp_path), store=memory_store)
    assert result.format == "beir" and result.stats.written == 2
    assert memory_store.client.retrieve("beir", [4983])[0].payload["title"] == "Tides"
    stable = str(uuid.uuid5(uuid.NAMESPACE_URL, "doc-b"))
    assert memory_store.client.retrieve("beir", [stable])[0].payload["_id"] == "doc-b"


def test_point_ids() -> None:
    u = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"
    assert [point_id(5, 0), point_id("12", 0), point_id(u, 0), point_id(None, 3)] == [5, 12, u, 3]


def test_bad_inputs(memory_store: QdrantStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ingest(tmp_path / "missing.jsonl", "c", config(tmp_path), store=memory_store)
    (tmp_path / "x.bin").write_text("")
    with pytest.raises(ConfigError, match="Cannot tell the format"):
        ingest(tmp_path / "x.bin", "c", config(tmp_path), store=memory_store)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(BadInput, match="bad.jsonl:2 is not valid JSON"):
        ingest(bad, "d", config(tmp_path), store=memory_store)
    with pytest.raises(ConfigError, match="'a/b' holds '/'"):
        ingest(bad, "a/b", config(tmp_path), store=memory_store)
    with pytest.raises(ConfigError, match="cannot be named ''"):
        ingest(bad, "", config(tmp_path), store=memory_store)


def test_a_template_field_no_record_has_is_warned_of(memory_store: QdrantStore,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "title": "a", "text": "x"}\n{"id": 2, "title": "b"}\n')
    typo = ingest(path, "c", config(tmp_path), text_template="{title} {txet}",
                  store=memory_store)
    assert typo.warnings == ["The text template of 'in.jsonl' has {txet}, which none of its 2 "
                             "records has: it renders empty in every text. A typo?"]
    sometimes = ingest(path, "d", config(tmp_path), text_template="{title} {text}",
                       store=memory_store)
    assert sometimes.warnings == []  # a field some records have is fine


def test_an_ingest_run_again_after_a_failure_pays_only_for_what_it_had_not(
        tmp_path: Path) -> None:
    """A stopped or failed ingest is run again by design, and paid every text again."""
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"note {i} on a subject {i % 7}"})
                            + "\n" for i in range(120)))
    with LoopbackServer(dims=16) as server:
        args = ["ingest", str(path), "--collection", "notes", "--qdrant-path",
                str(tmp_path / "q"), "--state-dir", str(tmp_path / "state"), "--provider",
                "openai-compatible", "--model", "served", "--base-url", server.url,
                "--batch-size", "8", "--concurrency", "1"]
        server.faults.extend([None] * 6 + [Fault(401, {"error": {"message": "bad key"}})])  # type: ignore[list-item]
        env = {"OPENAI_API_KEY": "k"}
        failed = CliRunner().invoke(cli, args, env=env)
        assert failed.exit_code == 1 and "bad key" in failed.stderr, failed.stderr
        paid_before, asked_before = server.texts, server.requests
        assert 0 < paid_before < 120
        again = CliRunner().invoke(cli, args, env=env)
        assert again.exit_code == 0, again.stderr
        # its bill, as the server counted it (the report said nothing of what was paid);
        # the cache answered every text the failed run paid for, its size probe too
        row = re.search(r"^ingest +(\d+) +(\d+) +(\d+) +", again.stdout, re.MULTILINE)
        assert row is not None, again.stdout
        assert [int(n) for n in row.groups()] == [server.requests - asked_before,
                                                  server.texts - paid_before, paid_before]
    assert max(server.seen.values()) == 1  # not one text paid twice (the size probe's neither)
    assert f"{paid_before - 1} texts came from the embedding cache (not paid again)" in (
        again.stdout)  # the record texts the failed run paid for (not its size probe)


def test_ingest_into_a_collection_it_did_not_make_is_refused_before_a_request(
        tmp_path: Path) -> None:
    """It paid for a size probe first, then said "already exists; choose another name, or
    delete it first" (migrator deletes nothing it did not make)."""
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": 1, "text": "a note"}\n')
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": 1, "text": "another note"}\n')
    with LoopbackServer(dims=16) as server:
        args = ["--collection", "notes", "--qdrant-path", str(tmp_path / "q"), "--state-dir",
                str(tmp_path / "state"), "--provider", "openai-compatible", "--model",
                "served", "--base-url", server.url]
        env = {"OPENAI_API_KEY": "k"}
        assert CliRunner().invoke(cli, ["ingest", str(other), *args], env=env).exit_code == 0
        paid = server.texts
        refused = CliRunner().invoke(cli, ["ingest", str(path), *args], env=env)
        assert server.texts == paid  # not one text for a run that cannot write
    assert refused.exit_code == 1
    assert (f"Collection 'notes' already exists in embedded store at {tmp_path / 'q'}, made by "
            f"`migrator ingest` of {other} with openai-compatible served at 16 dims") in (
        refused.stderr)
    assert "Choose another --collection. Nothing was changed." in refused.stderr
    client = QdrantClient(path=str(tmp_path / "q"))
    client.update_collection_aliases(change_aliases_operations=[qm.CreateAliasOperation(
        create_alias=qm.CreateAlias(collection_name="notes", alias_name="live"))])
    client.close()
    with LoopbackServer(dims=16) as server:  # an alias: it said "delete it first" of it
        args[args.index("notes")] = "live"
        args[args.index("--base-url") + 1] = server.url
        aliased = CliRunner().invoke(cli, ["ingest", str(path), *args], env=env)
        assert server.texts == 0
    assert aliased.exit_code == 2
    assert "'live' is an alias in embedded store at" in aliased.stderr
    assert "serving 'notes'" in aliased.stderr and "delete" not in aliased.stderr


def test_the_distance_flag_takes_any_case_as_migrate_does(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": 1, "text": "a cat"}\n{"id": 2, "text": "a dog"}\n')
    store = tmp_path / "q"
    result = CliRunner().invoke(cli, [
        "ingest", str(path), "--collection", "notes", "--qdrant-path", str(store),
        "--state-dir", str(tmp_path / "state"), "--provider", "hashing", "--model",
        "hash-words-v1", "--distance", "euclid"])  # was refused: only "Euclid"
    assert result.exit_code == 0, result.stderr
    client = QdrantClient(path=str(store))
    try:
        assert client.get_collection("notes").config.params.vectors.distance == "Euclid"
    finally:
        client.close()
