"""QdrantStore: every call migrator makes to Qdrant. Only this package (with `convert.py`)
imports qdrant_client.

Local mode (`path=`) and a server (`url=`) behave the same from the outside: the errors
both raise are mapped to `StoreError` subclasses here, so nothing above this module needs
to know which one it talks to.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..errors import CollectionExists, CollectionNotFound, ConfigError, StoreError
from ..settings import DEFAULT_STORE_PATH, StoreSettings
from .convert import (
    DISTANCES,
    diff_of,
    error_from_response,
    filter_of,
    has_field,
    point_of,
    point_struct,
    resized_vectors,
    schema_of,
)
from .named import NamedVectors
from .types import (
    TIME_INDEXES,
    UNNAMED,
    ChangedSince,
    CollectionSchema,
    Page,
    Point,
    PointId,
    VectorSpec,
    id_order,
    version_at_least,
)

__all__ = ["ChangedSince", "CollectionSchema", "id_order", "open_store", "opened", "Page",
           "Point", "PointId", "PROVENANCE_KEY", "QdrantStore", "UNNAMED", "VectorSpec",
           "version_at_least"]

PROVENANCE_KEY = "migrator"  # the key of migrator's entry in a collection's metadata


class QdrantStore(NamedVectors):
    """Operations on one Qdrant instance. Hand it a `QdrantClient`; see `open_store`. The
    in-place operations (named vectors) are in `named.py`."""

    def __init__(self, client: QdrantClient, *, location: str, local: bool,
                 identity: str | None = None) -> None:
        self.client = client
        self.location = location
        self.local = local
        self.identity = identity or location  # see StoreSettings.identity
        # Local mode keeps plain dicts in memory and is not safe across threads; the pipeline
        # runs store calls in worker threads, so serialise them. A server needs no lock.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if local else contextlib.nullcontext()
        )

    # ---- collections and aliases -------------------------------------------------------

    def collection_names(self) -> list[str]:
        with self._call("listing collections"):
            return sorted(c.name for c in self.client.get_collections().collections)

    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points to."""
        with self._call("listing aliases"):
            return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def resolve(self, name: str) -> str:
        """The collection `name` points to when it is an alias, else `name` itself.

        Raises:
            CollectionNotFound: `name` is neither a collection nor an alias.
        """
        aliases = self.aliases()
        if name in aliases:
            return aliases[name]
        if self.exists(name):
            return name
        raise CollectionNotFound(
            f"Collection or alias {name!r} does not exist in {self.location}. "
            f"Existing collections: {', '.join(self.collection_names()) or 'none'}"
            + (f"; aliases: {', '.join(sorted(aliases))}." if aliases else ".")
        )

    def exists(self, collection: str) -> bool:
        """Whether a *collection* of this name exists. An alias of that name does not count:
        local mode's `collection_exists` says yes for aliases, a server's says no."""
        return collection in self.collection_names()

    def describe(self, name: str) -> CollectionSchema:
        """The schema of a collection (an alias is resolved first)."""
        collection = self.resolve(name)
        with self._call("describing", collection):
            info = self.client.get_collection(collection)
        return schema_of(collection, info)

    def count(self, collection: str) -> int:
        with self._call("counting", collection):
            return int(self.client.count(collection, exact=True).count)

    def create_like(
        self,
        source: CollectionSchema,
        name: str,
        *,
        vector: str,
        size: int,
        distance: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Create `name` like `source`, with only `vector`'s size (and distance) changed.

        Other dense vectors, sparse vectors, HNSW, quantization, sharding, replication and
        payload indexes are copied. Payload indexes are skipped on the embedded store, where
        Qdrant ignores them. `provenance` is kept in the collection's own metadata where the
        store has it (see `provenance`).
        """
        params = source._info.config.params
        vectors = resized_vectors(params.vectors, vector, size, distance)
        metadata = self._metadata(provenance)
        with self._call("creating", name):
            if self.client.collection_exists(name):
                raise CollectionExists(f"Collection {name!r} already exists in {self.location}.")
            self.client.create_collection(
                name,
                vectors_config=vectors,
                sparse_vectors_config=params.sparse_vectors,
                shard_number=params.shard_number,
                replication_factor=params.replication_factor,
                write_consistency_factor=params.write_consistency_factor,
                on_disk_payload=params.on_disk_payload,
                hnsw_config=diff_of(qm.HnswConfigDiff, source._info.config.hnsw_config),
                quantization_config=source._info.config.quantization_config,
                **metadata,
            )
            if not self.local:
                for field_name, index in source._info.payload_schema.items():
                    self.client.create_payload_index(
                        name, field_name, field_schema=index.params or index.data_type, wait=True
                    )

    def create(self, name: str, *, vector: str, size: int, distance: str,
               provenance: dict[str, Any] | None = None) -> None:
        """Create a collection with one dense vector (`UNNAMED` for an unnamed one)."""
        params = qm.VectorParams(size=size, distance=DISTANCES[distance])
        metadata = self._metadata(provenance)
        with self._call("creating", name):
            if self.client.collection_exists(name):
                raise CollectionExists(
                    f"Collection {name!r} already exists in {self.location}; choose another "
                    "name, or delete it first."
                )
            self.client.create_collection(
                name, vectors_config=params if vector == UNNAMED else {vector: params},
                **metadata,
            )

    def provenance(self, collection: str) -> dict[str, Any]:
        """What migrator recorded in a collection's metadata when it created it (empty when
        nothing was, or the store keeps no metadata)."""
        with self._call("describing", collection):
            info = self.client.get_collection(collection)
        metadata = getattr(info.config, "metadata", None) or {}
        found = metadata.get(PROVENANCE_KEY)
        return dict(found) if isinstance(found, dict) else {}

    def _metadata(self, provenance: dict[str, Any] | None) -> dict[str, Any]:
        """`metadata=` for create_collection: local mode and servers >= 1.16 keep it."""
        if not provenance or not self._keeps_metadata():
            return {}
        return {"metadata": {PROVENANCE_KEY: provenance}}

    def _keeps_metadata(self) -> bool:
        return self._supports((1, 16))

    def delete_collection(self, collection: str) -> None:
        with self._call("deleting", collection):
            self.client.delete_collection(collection)

    def swap_alias(self, alias: str, collection: str) -> str | None:
        """Point `alias` at `collection` in one atomic call; return where it pointed before."""
        previous = self.aliases().get(alias)
        operations: list[Any] = []
        if previous is not None:
            operations.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
        operations.append(
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        with self._call("moving alias to", collection):
            self.client.update_collection_aliases(change_aliases_operations=operations)
        return previous

    # ---- points ----------------------------------------------------------------------

    def scroll(
        self,
        collection: str,
        *,
        limit: int,
        offset: PointId | None = None,
        vectors: Sequence[str] | bool = True,
        payload: bool = True,
        changed: ChangedSince | None = None,
    ) -> Page:
        """One page of points in id order, with payloads (unless `payload` is False) and
        the requested vectors; only those `changed` selects, when given."""
        with_vectors: bool | list[str] = vectors if isinstance(vectors, bool) else list(vectors)
        if with_vectors == []:
            with_vectors = False
        with self._call("reading", collection):
            records, next_offset = self.client.scroll(
                collection,
                limit=limit,
                offset=offset,
                with_payload=payload,
                with_vectors=with_vectors,
                scroll_filter=filter_of(changed) if changed is not None else None,
            )
        return Page([point_of(r) for r in records], next_offset)

    def time_form(self, collection: str, field: str) -> str | None:
        """How `field` holds the time of a point's last write ("datetime", "seconds" or
        "milliseconds", told apart by magnitude: 1e11 seconds is the year 5138), or None
        when no point has it yet.

        Raises:
            ConfigError: on a server, the field has no range index (datetime, integer or
                float), or a point holds something else than a time there.
        """
        indexes = self.describe(collection).payload_indexes
        if not self.local and indexes.get(field) not in TIME_INDEXES:
            raise ConfigError(
                f"sync.updated_field {field!r} has no range index in collection "
                f"{collection!r} (it has {indexes.get(field) or 'none'}): create a datetime, "
                "integer or float payload index on it, or unset sync.updated_field.")
        with self._call("reading", collection):
            records, _ = self.client.scroll(collection, limit=1, with_payload=[field])
            if records and (records[0].payload or {}).get(field) is None:
                # the first point lacks it: look further (a filter over every point in
                # local mode, so only then)
                records, _ = self.client.scroll(collection, limit=1, with_payload=[field],
                                                scroll_filter=has_field(field))
        if not records:
            return None
        value = (records[0].payload or {}).get(field)
        if isinstance(value, str) and _is_datetime(value):
            return "datetime"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return "milliseconds" if value > 1e11 else "seconds"
        raise ConfigError(
            f"sync.updated_field {field!r} of point {records[0].id!r} in {collection!r} holds "
            f"{value!r}, not a time (RFC 3339, or epoch seconds or milliseconds).")

    def upsert(self, collection: str, points: Sequence[Point], *,
               insert_only: bool = False) -> None:
        """Write points (idempotent: keyed by id) and wait until Qdrant has applied them.

        `insert_only` leaves points that already exist untouched (Qdrant >= 1.17 and local
        mode; see `conditional_writes`), so a newer point written meanwhile is never
        overwritten by an older copy.
        """
        structs = [point_struct(p) for p in points]
        mode = qm.UpdateMode.INSERT_ONLY if insert_only else None
        with self._call("writing to", collection):
            if mode is None:
                self.client.upsert(collection, points=structs, wait=True)
            else:
                self.client.upsert(collection, points=structs, wait=True, update_mode=mode)

    def retrieve(self, collection: str, ids: Sequence[PointId], *,
                 vectors: Sequence[str] | bool = True) -> list[Point]:
        """The points with these ids (those that exist), with the requested vectors."""
        with_vectors: bool | list[str] = vectors if isinstance(vectors, bool) else list(vectors)
        with self._call("reading", collection):
            records = self.client.retrieve(collection, ids=list(ids), with_payload=True,
                                           with_vectors=with_vectors)
        return [point_of(r) for r in records]

    def delete(self, collection: str, ids: Sequence[PointId]) -> None:
        with self._call("deleting from", collection):
            self.client.delete(collection, points_selector=qm.PointIdsList(points=list(ids)),
                               wait=True)

    def conditional_writes(self) -> bool:
        """Whether insert-only writes are supported: local mode, or a server >= 1.17."""
        return self._supports((1, 17))

    def _supports(self, since: tuple[int, int]) -> bool:
        """Whether a feature of Qdrant `since` is there: local mode has every one."""
        if self.local:
            return True
        with self._call("asking the server's version"):
            version = self.client.info().version
        return version_at_least(version, since)

    def search(
        self, collection: str, query: Iterable[float], *, vector: str = UNNAMED, limit: int = 5,
        exact: bool = False, with_payload: bool = True,
    ) -> list[tuple[PointId, float, dict[str, Any]]]:
        """Nearest points to `query`: (id, score, payload) best first. `exact` bypasses the
        HNSW index (the embedded store is always exact)."""
        params = qm.SearchParams(exact=True) if exact and not self.local else None
        with self._call("searching", collection):
            response = self.client.query_points(
                collection,
                query=[float(x) for x in query],
                using=vector or None,
                limit=limit,
                with_payload=with_payload,
                search_params=params,
            )
        return [(p.id, float(p.score), dict(p.payload or {})) for p in response.points]

    def wait_ready(self, collection: str, *, timeout: float,
                   on_wait: Callable[[str], None] | None = None) -> str:
        """Wait until a server collection is green with its optimizer idle.

        Returns what happened, for the report. The embedded store has no index to build and
        no optimizer: it is ready at once, and the answer says so.

        Raises:
            StoreError: not ready within `timeout` seconds.
        """
        if self.local:
            return "skipped: the embedded store has no index or optimizer to wait for"
        started = time.monotonic()
        while True:
            with self._call("checking the status of", collection):
                info = self.client.get_collection(collection)
            status = str(info.status.value)
            optimizer = info.optimizer_status
            idle = getattr(optimizer, "value", optimizer) == "ok"
            if status == "green" and idle:
                return f"green after {time.monotonic() - started:.1f} s"
            if time.monotonic() - started > timeout:
                raise StoreError(
                    f"Collection {collection!r} in {self.location} is still {status} (optimizer "
                    f"{getattr(optimizer, 'value', optimizer)}) after {timeout:.0f} s; wait and "
                    "run the same command again, or raise verify.readiness_timeout.")
            if on_wait is not None:
                on_wait(f"{collection}: {status}, optimizer {getattr(optimizer, 'value', 'busy')}")
            time.sleep(1.0)

    def close(self) -> None:
        # under the lock: closing local mode while another thread is inside a call of it
        # crashes the interpreter (SIGSEGV)
        with self._lock, contextlib.suppress(Exception):
            self.client.close()

    # ---- error mapping ---------------------------------------------------------------

    @contextlib.contextmanager
    def _call(self, action: str, collection: str | None = None) -> Iterator[None]:
        what = f"collection {collection!r}" if collection is not None else ""
        doing = f"{action} {what}".rstrip()  # "listing aliases", "reading collection 'docs'"
        with self._lock:
            try:
                yield
            except (CollectionExists, CollectionNotFound):
                raise
            except UnexpectedResponse as exc:
                raise error_from_response(exc, doing, what or "it", self.location) from exc
            except ResponseHandlingException as exc:
                raise StoreError(
                    f"Could not reach Qdrant at {self.location} while {doing}: "
                    f"{exc.source or exc}. Check the URL and that the server is running."
                ) from exc
            except ValueError as exc:  # local mode reports a missing collection this way
                if "not found" in str(exc):
                    raise CollectionNotFound(
                        f"Collection {collection!r} does not exist in {self.location}."
                    ) from exc
                raise StoreError(f"Qdrant refused {doing}: {exc}") from exc
            except Exception as exc:
                if type(exc).__module__.startswith(("grpc", "httpx", "httpcore")):
                    raise StoreError(
                        f"Could not reach Qdrant at {self.location} while {doing}: "
                        f"{exc}. Check the URL and that the server is running."
                    ) from exc
                raise


def _is_datetime(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def open_store(settings: StoreSettings, *, create: bool = False) -> QdrantStore:
    """Connect to the Qdrant that `settings` describe: a server by URL, else a local path.

    `path=":memory:"` gives an in-memory store (tests and benchmarks). An embedded store is
    created only with `create` (a store to write into): a mistyped path to read from is an
    error, not a new empty store.

    Raises:
        ConfigError: no embedded store at the path, and `create` is false.
        StoreError: the local directory is locked by another process or unusable.
    """
    if settings.url:
        client = QdrantClient(
            url=settings.url,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            prefer_grpc=settings.prefer_grpc,
            timeout=int(settings.timeout),
            # its background thread only warns, and warns again when the server is down;
            # connection problems surface as StoreError on the first call instead
            check_compatibility=False,
        )
        return QdrantStore(client, location=settings.location, local=False,
                           identity=settings.identity)
    path = str(settings.path or DEFAULT_STORE_PATH)
    if not create and path != ":memory:" and not os.path.isdir(path):
        raise ConfigError(
            f"There is no embedded Qdrant store at {path} (no such directory). Check "
            "--qdrant-path (or source.path), or give --qdrant-url for a server; nothing was "
            "created.")
    try:
        client = QdrantClient(":memory:") if path == ":memory:" else QdrantClient(path=path)
    except (RuntimeError, OSError) as exc:
        raise StoreError(
            f"Could not open the embedded store at {path}: {str(exc).rstrip('.')}. Another "
            "migrator or Qdrant client may be using it; stop it, or point source.path elsewhere."
        ) from exc
    return QdrantStore(client, location=settings.location, local=True,
                       identity=settings.identity)


@contextlib.contextmanager
def opened(
    source: StoreSettings,
    target: StoreSettings | None,
    *,
    source_store: QdrantStore | None = None,
    target_store: QdrantStore | None = None,
    create: bool = False,
) -> Iterator[tuple[QdrantStore, QdrantStore]]:
    """The (source, target) stores: the ones given, else opened from settings and closed
    afterwards. With no separate target settings, the target is the source store. `create`:
    a separate embedded target store (or, without one, the source store: ingest's) may be
    created."""
    owned: list[QdrantStore] = []
    try:
        src = source_store or _own(owned, open_store(source, create=create and target is None))
        if target_store is not None:
            dst = target_store
        elif target is None:
            dst = src
        else:
            dst = _own(owned, open_store(target, create=create))
        yield src, dst
    finally:
        for store in owned:
            store.close()


def _own(owned: list[QdrantStore], store: QdrantStore) -> QdrantStore:
    owned.append(store)
    return store
