"""Against a real Qdrant server: run with MIGRATOR_TEST_QDRANT_URL=http://localhost:6333."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from migrator import CollectionNotFound, CollectionSettings, MigrationSettings, migrate
from migrator.settings import ProviderSettings, Settings, StoreSettings
from migrator.store import QdrantStore, open_store

from .conftest import make_collection

URL = os.environ.get("MIGRATOR_TEST_QDRANT_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not URL, reason="set MIGRATOR_TEST_QDRANT_URL to test a Qdrant server"),
]


@pytest.fixture
def server() -> Iterator[tuple[QdrantStore, str]]:
    prefix = f"mt_{uuid.uuid4().hex[:8]}"
    store = open_store(StoreSettings(url=URL))
    yield store, prefix
    for alias, _ in store.aliases().items():
        if alias.startswith(prefix):
            store.client.delete_alias(alias)
    for name in store.collection_names():
        if name.startswith(prefix):
            store.delete_collection(name)
    store.close()


def test_migrate_on_a_server_copies_indexes_and_swaps(server: tuple[QdrantStore, str],
                                                      tmp_path: Path) -> None:
    store, prefix = server
    source = f"{prefix}_docs"
    make_collection(store.client, source, n=300, named=True, sparse=True)
    store.client.create_payload_index(source, "n", qm.PayloadSchemaType.INTEGER, wait=True)
    settings = Settings(
        source=StoreSettings(url=URL),
        provider=ProviderSettings(name="hashing", model="hash-words-v1", dimensions=64),
        collections=[CollectionSettings(name=source, vector="dense", alias=f"{prefix}_live")],
        migration=MigrationSettings(state_dir=tmp_path, page_size=64),
    )
    result = migrate(settings)
    target = result.collections[0].target
    schema = store.describe(f"{prefix}_live")
    assert schema.name == target and schema.vectors["dense"].size == 64
    assert schema.payload_indexes == {"n": "integer"}
    assert store.count(target) == 300
    # ownership survives a lost state directory: the server keeps the provenance
    assert store.provenance(target)["migration"] == result.collections[0].migration_id


def test_missing_collection_on_a_server(server: tuple[QdrantStore, str]) -> None:
    store, prefix = server
    with pytest.raises(CollectionNotFound):
        store.count(f"{prefix}_nothing")
    assert isinstance(store.client, QdrantClient)
