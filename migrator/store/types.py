"""What migrator knows of a Qdrant collection and its points, free of qdrant_client: the
schema, points, pages and id order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["ChangedSince", "CollectionSchema", "id_order", "Page", "Point", "PointId",
           "TIME_INDEXES", "UNNAMED", "VectorSpec", "version_at_least"]

PointId = int | str | uuid.UUID
UNNAMED = ""  # key of the unnamed (default) dense vector in our vector dicts



TIME_INDEXES = ("datetime", "integer", "float")  # payload indexes a time range can use


@dataclass(frozen=True)
class ChangedSince:
    """The points whose payload `field` holds a time at or after `since` (epoch seconds);
    `form` is how the field holds it: "datetime" (RFC 3339), "seconds" or "milliseconds"."""

    field: str
    since: float
    form: str


@dataclass(frozen=True)
class VectorSpec:
    """One dense vector of a collection."""

    name: str  # UNNAMED for the collection's single unnamed vector
    size: int
    distance: str
    on_disk: bool | None = None
    multivector: bool = False


@dataclass
class CollectionSchema:
    """What a collection looks like: enough to describe it and to create one like it."""

    name: str
    vectors: dict[str, VectorSpec]
    sparse_vectors: list[str]
    points_count: int
    shard_number: int | None
    replication_factor: int | None
    write_consistency_factor: int | None
    on_disk_payload: bool | None
    hnsw: dict[str, Any] | None
    quantization: dict[str, Any] | None
    payload_indexes: dict[str, str]
    status: str
    _info: Any = field(default=None, repr=False, compare=False)

    @property
    def unnamed(self) -> bool:
        return UNNAMED in self.vectors

    def vector(self, name: str | None) -> VectorSpec:
        """The dense vector a migration replaces: `name`, or the only one when name is None."""
        if name is None:
            if len(self.vectors) == 1:
                return next(iter(self.vectors.values()))
            if not self.vectors:
                sparse = ", ".join(repr(n) for n in self.sparse_vectors) or "none"
                raise ConfigError(
                    f"Collection {self.name!r} has no dense vector (sparse vectors: "
                    f"{sparse}): migrator re-embeds a collection's dense vector with a new "
                    "model, and this one has none to replace.")
            names = ", ".join(repr(n) if n else "(unnamed)" for n in sorted(self.vectors))
            raise ConfigError(
                f"Collection {self.name!r} has several dense vectors ({names}); name one "
                "with --vector NAME (`vector` in the collection's configuration; --vector '' "
                "for the unnamed one).")
        if name not in self.vectors:
            names = ", ".join(repr(n) if n else "(unnamed)" for n in sorted(self.vectors))
            sparse = (f"{name!r} is a sparse vector, which migrator copies unchanged; "
                      if name in self.sparse_vectors else "")
            raise ConfigError(
                f"Collection {self.name!r} has no dense vector named {name!r} ({sparse}its "
                f"dense vectors: {names or 'none'}); fix --vector (`vector` in the "
                "collection's configuration).")
        return self.vectors[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "points_count": self.points_count,
            "status": self.status,
            "vectors": {
                (n or "(unnamed)"): {"size": v.size, "distance": v.distance, "on_disk": v.on_disk}
                for n, v in self.vectors.items()
            },
            "sparse_vectors": self.sparse_vectors,
            "shard_number": self.shard_number,
            "replication_factor": self.replication_factor,
            "write_consistency_factor": self.write_consistency_factor,
            "on_disk_payload": self.on_disk_payload,
            "hnsw": self.hnsw,
            "quantization": self.quantization,
            "payload_indexes": self.payload_indexes,
        }


@dataclass(slots=True)
class Point:
    """A point as migrator moves it. `vectors` maps vector name (UNNAMED for the default
    vector) to a dense list/array or a sparse vector, exactly as read from the source."""

    id: PointId
    payload: dict[str, Any]
    vectors: dict[str, Any]


@dataclass(frozen=True)
class Page:
    points: list[Point]
    next_offset: PointId | None


def version_at_least(version: str, minimum: tuple[int, int]) -> bool:
    parts = []
    for piece in version.lstrip("v").split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= minimum


def id_order(point_id: PointId) -> tuple[int, int, str]:
    """Qdrant's scroll order: integer ids first, ascending, then UUIDs in byte order."""
    if isinstance(point_id, int):
        return (0, point_id, "")
    return (1, 0, str(point_id).lower())
