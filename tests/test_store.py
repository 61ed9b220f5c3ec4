"""QdrantStore: describing, creating like, aliases; one error vocabulary for local and server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from migrator import CollectionExists, CollectionNotFound, ConfigError, StoreError
from migrator.store import QdrantStore, paging

from .conftest import make_collection


def test_describe_unnamed_named_and_sparse(memory_store: QdrantStore) -> None:
    make_collection(memory_store.client, "plain", n=3)
    make_collection(memory_store.client, "rich", n=3, named=True, sparse=True)
    plain = memory_store.describe("plain")
    assert plain.unnamed and plain.vectors[""].size == 8 and plain.points_count == 3
    rich = memory_store.describe("rich")
    assert set(rich.vectors) == {"dense", "image"} and rich.sparse_vectors == ["keywords"]
    assert rich.vector("image").distance == "Dot"
    with pytest.raises(ConfigError, match="no dense vector named 'nope'"):
        rich.vector("nope")
    with pytest.raises(ConfigError) as sparse:  # a sparse one is named as such
        rich.vector("keywords")
    assert ("'keywords' is a sparse vector, which migrator copies unchanged; its dense "
            "vectors: 'dense', 'image'); fix --vector") in str(sparse.value)
    assert rich.to_dict()["vectors"]["dense"]["size"] == 8


def test_resolve_alias(memory_store: QdrantStore) -> None:
    make_collection(memory_store.client, "docs_v1", n=1)
    memory_store.swap_alias("docs", "docs_v1")
    assert memory_store.resolve("docs") == "docs_v1"
    assert memory_store.resolve("docs_v1") == "docs_v1"
    assert memory_store.describe("docs").name == "docs_v1"
    with pytest.raises(CollectionNotFound, match="'x' does not exist"):
        memory_store.resolve("x")


def test_swap_alias_is_one_call_and_returns_the_previous_target(memory_store: QdrantStore) -> None:
    for name in ("a", "b"):
        make_collection(memory_store.client, name, n=1)
    assert memory_store.swap_alias("live", "a") is None
    assert memory_store.swap_alias("live", "b") == "a"
    assert memory_store.aliases() == {"live": "b"}


def test_create_like_changes_only_the_migrated_vector(memory_store: QdrantStore) -> None:
    make_collection(memory_store.client, "src", n=2, named=True, sparse=True)
    source = memory_store.describe("src")
    memory_store.create_like(source, "dst", vector="dense", size=64, distance="Dot")
    target = memory_store.describe("dst")
    assert (target.vectors["dense"].size, target.vectors["dense"].distance) == (64, "Dot")
    assert target.vectors["image"] == source.vectors["image"]
    assert target.sparse_vectors == source.sparse_vectors
    with pytest.raises(CollectionExists):
        memory_store.create_like(source, "dst", vector="dense", size=64)


def test_scroll_pages_in_id_order_with_selected_vectors(memory_store: QdrantStore) -> None:
    make_collection(memory_store.client, "docs", n=25, named=True)
    page = memory_store.scroll("docs", limit=10, vectors=["image"])
    assert [p.id for p in page.points] == list(range(1, 11)) and page.next_offset == 11
    assert set(page.points[0].vectors) == {"image"}
    last = memory_store.scroll("docs", limit=10, offset=21, vectors=False)
    assert len(last.points) == 5 and last.next_offset is None
    assert last.points[0].vectors == {}


def test_local_missing_collection_maps_to_collection_not_found(memory_store: QdrantStore) -> None:
    with pytest.raises(CollectionNotFound):
        memory_store.count("missing")


class ServerLike:
    """Stands in for a QdrantClient talking to a server that answers with errors."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise self.error
        return call


def server_error(status: int, body: bytes) -> UnexpectedResponse:
    return UnexpectedResponse(status, "reason", body, httpx.Headers())


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (server_error(404, b'{"status":{"error":"Not found: Collection `x` doesn\'t exist!"}}'),
         CollectionNotFound, "does not exist in http://q:6333"),
        (server_error(409, b"exists"), CollectionExists, "already exists"),
        (server_error(403, b"forbidden"), StoreError, "refused the API key"),
        (server_error(500, b"boom"), StoreError,
         "failed counting collection 'x' \\(HTTP 500\\): boom"),
        (ResponseHandlingException(ConnectionRefusedError("refused")), StoreError,
         "Could not reach Qdrant at http://q:6333"),
    ],
)
def test_server_errors_map_to_store_errors(error: Exception, expected: type[Exception],
                                           message: str) -> None:
    store = QdrantStore(ServerLike(error), location="http://q:6333", local=False)  # type: ignore[arg-type]
    with pytest.raises(expected, match=message):
        store.count("x")


def test_unreachable_server_is_a_store_error() -> None:
    from migrator.settings import StoreSettings
    from migrator.store import open_store

    store = open_store(StoreSettings(url="http://127.0.0.1:9", timeout=2))
    try:
        with pytest.raises(StoreError, match="Could not reach Qdrant at http://127.0.0.1:9 "
                                             "while listing collections: "):  # not "... Qdrant:"
            store.collection_names()
    finally:
        store.close()


# qdrant-client leaves the lock file of a failed open to the garbage collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_locked_embedded_store_is_a_clear_error(tmp_path: Any) -> None:
    from migrator.settings import StoreSettings
    from migrator.store import open_store

    holder = QdrantClient(path=str(tmp_path))
    try:
        with pytest.raises(StoreError, match="Another migrator or Qdrant client"):
            open_store(StoreSettings(path=tmp_path))
    finally:
        holder.close()


def test_upsert_writes_payloads_and_vectors(memory_store: QdrantStore) -> None:
    from migrator.store import Point

    memory_store.create("c", vector="", size=2, distance="Cosine")
    memory_store.upsert("c", [Point(7, {"a": 1}, {"": [1.0, 0.0]})])
    hits = memory_store.search("c", [1.0, 0.0], limit=1)
    assert hits[0][0] == 7 and hits[0][2] == {"a": 1}
    assert qm.Distance.COSINE.value == memory_store.describe("c").vectors[""].distance


@pytest.mark.parametrize("uuid_ids", [False, True])
def test_pages_read_local_mode_in_large_scrolls_and_resume_between_them(
        memory_store: QdrantStore, monkeypatch: pytest.MonkeyPatch, uuid_ids: bool) -> None:
    """Local mode sorts every id on each scroll: a whole read takes LOCAL_READ points a call
    (was a call a page), and every page's next_offset is where the next page starts."""
    monkeypatch.setattr(paging, "LOCAL_READ", 20)
    make_collection(memory_store.client, "docs", n=47, uuid_ids=uuid_ids)
    calls: list[int] = []
    scroll = memory_store.scroll
    monkeypatch.setattr(memory_store, "scroll", lambda *a, **k: calls.append(k["limit"])
                        or scroll(*a, **k))
    pages = list(paging.pages(memory_store, "docs", page_size=6, vectors=False))
    assert calls == [20, 20, 20]
    assert [len(p.points) for p in pages] == [6, 6, 6, 2, 6, 6, 6, 2, 6, 1]
    everything = memory_store.scroll("docs", limit=100, vectors=False).points
    assert [p.id for page in pages for p in page.points] == [p.id for p in everything]
    for page, after in zip(pages, pages[1:], strict=False):
        assert page.next_offset == after.points[0].id
        resumed = next(paging.pages(memory_store, "docs", page_size=6, start=page.next_offset,
                                    vectors=False))
        assert resumed.points[: len(after.points)] == after.points
    assert pages[-1].next_offset is None


def test_pages_on_a_server_scroll_a_page_a_call(memory_store: QdrantStore,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    make_collection(memory_store.client, "docs", n=13)
    monkeypatch.setattr(memory_store, "local", False)
    calls: list[int] = []
    scroll = memory_store.scroll
    monkeypatch.setattr(memory_store, "scroll", lambda *a, **k: calls.append(k["limit"])
                        or scroll(*a, **k))
    pages = list(paging.pages(memory_store, "docs", page_size=5, vectors=False))
    assert calls == [5, 5, 5] and [len(p.points) for p in pages] == [5, 5, 3]


def test_pages_of_an_empty_collection(memory_store: QdrantStore) -> None:
    memory_store.client.create_collection("docs", vectors_config=qm.VectorParams(
        size=4, distance=qm.Distance.COSINE))
    assert [(p.points, p.next_offset) for p in paging.pages(memory_store, "docs", page_size=5)] \
        == [([], None)]
