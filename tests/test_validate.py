"""`validate`: each planted defect is found with the right ids; exit codes 0/1/2/3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from migrator import CollectionSettings, ProviderSettings, Settings, validate
from migrator.cli import cli
from migrator.store import Point, QdrantStore
from migrator.texts import TextSource
from migrator.verification.dimensions import scan_points

from .conftest import make_collection
from .loopback import LoopbackServer


def plant(client: QdrantClient, collection: str, point_id: int, vector: list[float],
          name: str = "") -> None:
    """Overwrite a stored vector behind Qdrant's back, as corruption would: local mode
    (like the server) refuses NaN and normalises Cosine vectors on the way in."""
    local = client._client.collections[collection]  # type: ignore[attr-defined]
    local.vectors[name][local.ids[point_id]] = np.asarray(vector, dtype=np.float32)


@pytest.fixture
def defective(memory_store: QdrantStore) -> QdrantStore:
    client = memory_store.client
    client.create_collection("docs", vectors_config={
        "text": qm.VectorParams(size=4, distance=qm.Distance.COSINE),
        "image": qm.VectorParams(size=2, distance=qm.Distance.DOT)})
    points = [qm.PointStruct(id=i, vector={"text": [1.0, float(i % 3), 0.5, 0.0],
                                           "image": [1.0, 0.0]},
                             payload={"text": f"text {i}"}) for i in range(1, 41)]
    points[6] = qm.PointStruct(id=7, vector={"image": [1.0, 0.0]}, payload={"text": "t"})
    points[8] = qm.PointStruct(id=9, vector={"text": [1.0, 0, 0, 0], "image": [1.0, 0.0]},
                               payload={"body": "elsewhere"})
    client.upsert("docs", points=points)
    plant(client, "docs", 3, [float("nan"), 0.0, 0.0, 0.0], "text")
    plant(client, "docs", 5, [0.0, 0.0, 0.0, 0.0], "text")
    plant(client, "docs", 11, [3.0, 0.0, 4.0, 0.0], "text")
    plant(client, "docs", 12, [0.1, 0.0, 0.1, 0.0], "text")
    return memory_store


def config(vector: str | None = None, **provider: Any) -> Settings:
    return Settings(provider=ProviderSettings(**{"name": "hashing", "model": "hash-words-v1",
                                                 "dimensions": 4, **provider}),
                    collections=[CollectionSettings(name="docs", vector=vector)])


def test_scan_finds_each_planted_defect_with_its_ids(defective: QdrantStore) -> None:
    report = validate(config("text"), source_store=defective, probe_provider=False)
    scan = next(c for c in report.checks if c.name == "scan")
    assert scan.status == "fail" and not report.passed
    ids = scan.data["ids"]
    assert ids == {"missing_vector": [7], "not_finite": [3], "all_zero": [5],
                   "not_unit": [11, 12], "missing_text": [9]}
    assert scan.data["scanned"] == 40
    assert scan.data["not_unit_share"] == 0.05
    assert scan.data["norm"]["max"] == 5.0
    only_unit = validate(config("text"), source_store=defective, probe_provider=False,
                         sample=2)  # ids 1 and 2: sound
    assert next(c for c in only_unit.checks if c.name == "scan").status == "pass"
    assert "1 missing vector (7)" in scan.detail and "2 not unit (11, 12)" in scan.detail


def test_a_clean_collection_passes(memory_store: QdrantStore) -> None:
    make_collection(memory_store.client, "docs", n=30, dims=8)
    report = validate(Settings(provider=ProviderSettings(name="hashing", model="hash-words-v1",
                                                         dimensions=8),
                               collections=[CollectionSettings(name="docs")]),
                      source_store=memory_store)
    assert report.passed, report.to_dict()
    assert [c.status for c in report.checks] == ["pass", "pass", "pass", "skip"]


def test_wrong_length_vectors_are_found() -> None:
    # Qdrant refuses to store one; the check guards what a server or a snapshot returns.
    points = [Point(1, {"text": "a"}, {"": [1.0, 0.0]}), Point(2, {"text": "b"}, {"": [1.0]})]
    check, sound = scan_points(points, vector="", size=2, distance="Dot",
                               text=TextSource("text"))
    assert check.data["ids"] == {"wrong_length": [2]} and sound.shape == (1, 2)


def test_config_vs_collection_size(memory_store: QdrantStore) -> None:
    make_collection(memory_store.client, "docs", n=5, dims=8)
    report = validate(config(dimensions=16), source_store=memory_store, probe_provider=False)
    check = next(c for c in report.checks if c.name == "config vs collection")
    assert check.status == "fail"
    assert "holds 8 values; hashing hash-words-v1 as configured gives 16" in check.detail


def test_probe_failure_is_a_failed_check(memory_store: QdrantStore) -> None:
    make_collection(memory_store.client, "docs", n=5, dims=1536)
    with LoopbackServer(dims=768) as server:
        report = validate(config(name="openai-compatible", model="text-embedding-3-small",
                                 dimensions=None, base_url=server.url),
                          source_store=memory_store)
    probe = report.checks[0]
    assert probe.status == "fail" and "768 values, expected 1536" in probe.detail


def test_fidelity_for_requested_sizes(memory_store: QdrantStore) -> None:
    client = memory_store.client
    client.create_collection("docs", vectors_config=qm.VectorParams(
        size=32, distance=qm.Distance.DOT))
    rng = np.random.default_rng(3)
    head = rng.standard_normal((120, 8))
    vectors = np.hstack([head, np.zeros((120, 24))])
    client.upsert("docs", points=[qm.PointStruct(id=i, vector=v.tolist(),
                                                 payload={"text": "x"})
                                  for i, v in enumerate(vectors)])
    report = validate(config(dimensions=32), source_store=memory_store, dims=[8, 4, 64],
                      probe_provider=False)
    fidelity = report.checks[-1]
    assert fidelity.status == "info"
    assert fidelity.data["recall_at_10"]["8"] == 1.0
    assert fidelity.data["recall_at_10"]["4"] < 1.0
    assert "64" not in fidelity.data["recall_at_10"]
    assert fidelity.detail.endswith("(64: not below 32, not truncations)")  # was dropped silently
    only_over = validate(config(dimensions=32), source_store=memory_store, dims=[64, 32],
                         probe_provider=False).checks[-1]
    assert (only_over.status, only_over.detail) == (
        "skip", "none of the sizes asked (32, 64) is below 32")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    client = QdrantClient(path=str(tmp_path / "q"))
    make_collection(client, "docs", n=20, dims=8)
    client.close()
    return tmp_path / "q"


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_cli_exit_codes(store_path: Path) -> None:
    base = ["validate", "--qdrant-path", str(store_path), "--collection", "docs",
            "--provider", "hashing", "--model", "hash-words-v1"]
    ok = run(*base, "--dimensions", "8", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["passed"] is True

    failed = run(*base, "--dimensions", "16")
    assert failed.exit_code == 3
    assert "FAIL    config vs collection" in failed.stdout
    assert failed.stderr == "Error: 1 check failed: config vs collection.\n"

    missing = run("validate", "--qdrant-path", str(store_path), "--collection", "nope")
    assert missing.exit_code == 1 and "'nope' does not exist" in missing.stderr

    bad = run("validate", "--qdrant-path", str(store_path), "--collection", "docs",
              "--provider", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1",
              "--model", "text-embedding-ada-002", "--dimensions", "100")
    assert bad.exit_code == 2 and "dimension_policy" in bad.stderr

    sizes = run(*base, "--dims", "two,four")
    assert sizes.exit_code == 2 and "not a comma-separated list" in sizes.stderr


def test_without_a_provider_the_collection_is_held_to_what_its_migration_recorded(
        store_path: Path, tmp_path: Path) -> None:
    """It was held to the default hashing model nobody chose: "FAIL config vs collection"
    (exit 3) for any collection not 384 wide, "PASS" for one that was."""
    where = ["--qdrant-path", str(store_path)]
    unrecorded = run("validate", *where, "--collection", "docs", "--json")
    assert unrecorded.exit_code == 0, unrecorded.output
    checks = {c["name"]: c for c in json.loads(unrecorded.stdout)["checks"]}
    assert checks["provider probe"]["status"] == "skip"
    assert checks["config vs collection"]["status"] == "skip"
    assert "no provider configured: give --provider and --model" in (
        checks["config vs collection"]["detail"])
    assert run("migrate", *where, "--state-dir", str(tmp_path / "s"), "--collection", "docs",
               "--target", "docs_v2", "--provider", "hashing", "--model", "hash-words-v1",
               "--dimensions", "32").exit_code == 0
    recorded = run("validate", *where, "--collection", "docs_v2")
    assert recorded.exit_code == 0, recorded.output
    assert ("vector (unnamed): 32 = hashing hash-words-v1 at 32 dims, as recorded by the "
            "migration that created it") in recorded.stdout


def test_vectors_not_unit_length_under_cosine_are_reported_not_failed() -> None:
    points = [Point(i, {"text": "a"}, {"": [3.0, 4.0]}) for i in range(3)]
    check, _ = scan_points(points, vector="", size=2, distance="Cosine", text=TextSource("text"))
    assert check.status == "pass"
    assert check.data["ids"] == {"not_unit": [0, 1, 2]} and check.data["not_unit_share"] == 1.0
