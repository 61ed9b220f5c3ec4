from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from migrator.store import QdrantStore

from .loopback import LoopbackServer

PROVIDER_KEYS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "OPENROUTER_API_KEY",
                 "OPENAI_COMPATIBLE_API_KEY", "QDRANT_API_KEY")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's MIGRATOR_* settings or API keys, and each runs in a
    directory of its own (defaults such as .migrator/ and qdrant_data/ land there)."""
    for name in list(os.environ):
        if name.startswith("MIGRATOR_") or name in PROVIDER_KEYS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def memory_store() -> Iterator[QdrantStore]:
    store = QdrantStore(QdrantClient(":memory:"), location="memory", local=True)
    yield store
    store.close()


@pytest.fixture
def path_store(tmp_path: Path) -> Iterator[QdrantStore]:
    store = QdrantStore(QdrantClient(path=str(tmp_path / "qdrant")), location="path", local=True)
    yield store
    store.close()


@pytest.fixture(params=["memory_store", "path_store"])
def store(request: pytest.FixtureRequest) -> QdrantStore:
    return request.getfixturevalue(request.param)


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    with LoopbackServer(dims=16) as server:
        yield server


def embedded_store(path: Path, collections: dict[str, int]) -> Path:
    """An embedded store at `path` holding `make_collection`s of the given sizes."""
    client = QdrantClient(path=str(path))
    for name, n in collections.items():
        make_collection(client, name, n=n)
    client.close()
    return path


def texts(n: int) -> list[str]:
    topics = ["ocean tides", "bread dough", "credit cards", "guitar chords", "star birth"]
    return [f"note {i} about {topics[i % len(topics)]} number {i * 7 % 13}" for i in range(n)]


def make_collection(
    client: QdrantClient,
    name: str,
    *,
    n: int = 50,
    named: bool = False,
    sparse: bool = False,
    dims: int = 8,
    uuid_ids: bool = False,
    payload: Any = None,
) -> list[Any]:
    """A source collection whose points carry text in `text` (or the given payload fn)."""
    vector_params = qm.VectorParams(size=dims, distance=qm.Distance.COSINE)
    client.create_collection(
        name,
        vectors_config={"dense": vector_params, "image": qm.VectorParams(
            size=4, distance=qm.Distance.DOT)} if named else vector_params,
        sparse_vectors_config={"keywords": qm.SparseVectorParams()} if sparse else None,
    )
    ids: list[Any] = []
    points = []
    for i, text in enumerate(texts(n)):
        pid: Any = str(uuid.UUID(int=i + 1)) if uuid_ids and i % 2 else i + 1
        ids.append(pid)
        dense = [float((i + j) % 5 + 1) for j in range(dims)]
        vector: Any = dense
        if named or sparse:
            vector = {"dense" if named else "": dense}
            if named:
                vector["image"] = [1.0, float(i), 0.5, 0.25]
            if sparse:
                vector["keywords"] = qm.SparseVector(indices=[i, i + 100], values=[1.0, 0.5])
        body = payload(i, text) if payload else {"text": text, "n": i, "tags": ["a", "b"]}
        points.append(qm.PointStruct(id=pid, vector=vector, payload=body))
    client.upsert(name, points=points)
    return ids


@contextlib.contextmanager
def held_by_a_child(code: str) -> Iterator[None]:
    """A child process that runs `code` (which takes a lock) and waits; killed with SIGKILL
    (no close, no cleanup: a crash) when the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-c", f"{code}\nprint('ready', flush=True)\n"
                               "import time\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        yield
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
