"""Named vectors added to and removed from an existing collection, and the writes that
touch one vector only: what an in-place migration does (Qdrant >= 1.18, and local mode).
`QdrantStore` has these methods; this module only keeps them apart."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from ..errors import StoreError
from .convert import DISTANCES, plain
from .types import Point, PointId

__all__ = ["NAMED_VECTORS_SINCE", "NamedVectors"]

NAMED_VECTORS_SINCE = (1, 18)  # create_vector_name / delete_vector_name


class NamedVectors:
    """The in-place operations of `QdrantStore` (a mixin: it supplies the client, the
    error mapping and the version check)."""

    client: QdrantClient
    location: str
    _call: Callable[..., contextlib.AbstractContextManager[None]]
    _supports: Callable[[tuple[int, int]], bool]

    def refuse_without_named_vectors(self, what: str) -> None:
        """Raise unless this Qdrant can add a named vector to an existing collection."""
        if not self._supports(NAMED_VECTORS_SINCE):
            with self._call("asking the version of", None):
                version = self.client.info().version
            raise StoreError(
                f"{what} needs Qdrant 1.18 or later (create_vector_name); {self.location} "
                f"runs {version}. Upgrade Qdrant, or use the new-collection strategy.")

    def add_vector(self, collection: str, name: str, *, size: int, distance: str,
                   like: str | None = None) -> None:
        """Add the dense vector `name` to `collection` (every point starts without it),
        with the HNSW, quantization and on-disk settings vector `like` has of its own
        (`create_vector_name` takes size and distance only: they follow as an update,
        which a server applies and local mode, having no index, ignores)."""
        config = qm.DenseVectorNameConfig(dense=qm.DenseVectorConfig(
            size=size, distance=DISTANCES[distance]))
        with self._call("adding a vector to", collection):
            self.client.create_vector_name(collection, name, config, wait=True)
            own = self._vector_params(collection, like) if like is not None else None
            if own is not None and (own.hnsw_config or own.quantization_config or own.on_disk):
                self.client.update_collection(collection, vectors_config={
                    name: qm.VectorParamsDiff(hnsw_config=own.hnsw_config,
                                              quantization_config=own.quantization_config,
                                              on_disk=own.on_disk)})

    def _vector_params(self, collection: str, name: str) -> qm.VectorParams | None:
        vectors = self.client.get_collection(collection).config.params.vectors
        if isinstance(vectors, dict):
            return vectors.get(name)
        return vectors if name == "" else None

    def drop_vector(self, collection: str, name: str) -> None:
        """Remove the vector `name` from `collection` and from every point."""
        with self._call("removing a vector from", collection):
            self.client.delete_vector_name(collection, name, wait=True)

    def set_vectors(self, collection: str, points: Sequence[Point]) -> int:
        """Set each point's vectors in `points.vectors`, and nothing else of it; a point
        deleted meanwhile is left deleted (never written back whole). Returns how many
        points were set."""
        for attempt in range(2):  # a point deleted between the check and the write: again
            present = self._present(collection, [p.id for p in points])
            chosen = [p for p in points if p.id in present]
            if not chosen:
                return 0
            structs = [qm.PointVectors(id=p.id, vector={n: plain(v) for n, v in
                                                        p.vectors.items()}) for p in chosen]
            try:
                with self._call("writing vectors to", collection):
                    self.client.update_vectors(collection, points=structs, wait=True)
            except (StoreError, KeyError) as exc:  # local mode: KeyError for a missing id
                gone = len(self._present(collection, [p.id for p in chosen])) < len(chosen)
                if gone and attempt == 0:
                    continue
                if isinstance(exc, StoreError):
                    raise  # not a point deleted meanwhile: the store's own error
                raise StoreError(f"Points of {collection!r} kept disappearing while their "
                                 "vectors were written; run again to resume.") from exc
            return len(chosen)
        return 0  # unreachable: the second attempt returns or raises

    def clear_vector(self, collection: str, name: str, ids: Sequence[PointId]) -> None:
        """Remove the vector `name` from these points (the rest of them stays)."""
        with self._call("removing vectors from", collection):
            self.client.delete_vectors(collection, vectors=[name],
                                       points=qm.PointIdsList(points=list(ids)), wait=True)

    def count_with(self, collection: str, vector: str) -> int:
        """Points of `collection` that have the vector `vector`."""
        with self._call("counting", collection):
            return int(self.client.count(collection, exact=True, count_filter=qm.Filter(
                must=[qm.HasVectorCondition(has_vector=vector)])).count)

    def _present(self, collection: str, ids: Sequence[PointId]) -> set[Any]:
        with self._call("reading", collection):
            records = self.client.retrieve(collection, ids=list(ids), with_payload=False,
                                           with_vectors=False)
        return {r.id for r in records}
