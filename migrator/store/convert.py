"""Conversions between qdrant_client's models and migrator's types, and Qdrant's error
answers as `StoreError`s."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from ..errors import CollectionExists, CollectionNotFound, StoreError
from .types import UNNAMED, ChangedSince, CollectionSchema, Point, VectorSpec

__all__ = ["DISTANCES", "diff_of", "error_from_response", "filter_of", "has_field", "plain",
           "point_of", "point_struct", "resized_vectors", "schema_of", "vector_spec",
           "vector_struct"]

DISTANCES = {d.value: d for d in qm.Distance}


def error_from_response(exc: UnexpectedResponse, doing: str, what: str,
                        location: str) -> StoreError:
    """Qdrant's answer to `doing` ("reading collection 'docs'") on `what` (the collection,
    or "it") as migrator's error."""
    body = exc.content[:200].decode("utf-8", "replace") if exc.content else exc.reason_phrase
    if exc.status_code == 404:
        return CollectionNotFound(f"{what.capitalize()} does not exist in {location}: {body}")
    if exc.status_code == 409:
        return CollectionExists(f"{what.capitalize()} already exists in {location}: {body}")
    if exc.status_code in (401, 403):
        return StoreError(
            f"Qdrant at {location} refused the API key while {doing} "
            f"(HTTP {exc.status_code}). Set QDRANT_API_KEY or source.api_key_env."
        )
    return StoreError(
        f"Qdrant at {location} failed {doing} (HTTP {exc.status_code}): {body}"
    )


def schema_of(name: str, info: Any) -> CollectionSchema:
    params = info.config.params
    vectors: dict[str, VectorSpec] = {}
    raw = params.vectors
    if isinstance(raw, qm.VectorParams):
        vectors[UNNAMED] = vector_spec(UNNAMED, raw)
    elif isinstance(raw, Mapping):
        for vector_name, vp in raw.items():
            vectors[vector_name] = vector_spec(vector_name, vp)
    return CollectionSchema(
        name=name,
        vectors=vectors,
        sparse_vectors=sorted((params.sparse_vectors or {}).keys()),
        points_count=int(info.points_count or 0),
        shard_number=params.shard_number,
        replication_factor=params.replication_factor,
        write_consistency_factor=params.write_consistency_factor,
        on_disk_payload=params.on_disk_payload,
        hnsw=info.config.hnsw_config.model_dump(exclude_none=True)
        if info.config.hnsw_config
        else None,
        quantization=info.config.quantization_config.model_dump(exclude_none=True)
        if info.config.quantization_config
        else None,
        payload_indexes={k: str(v.data_type.value) for k, v in info.payload_schema.items()},
        status=str(info.status.value),
        _info=info,
    )


def vector_spec(name: str, vp: qm.VectorParams) -> VectorSpec:
    return VectorSpec(
        name=name,
        size=vp.size,
        distance=vp.distance.value,
        on_disk=vp.on_disk,
        multivector=vp.multivector_config is not None,
    )


def resized_vectors(
    raw: Any, vector: str, size: int, distance: str | None
) -> qm.VectorParams | dict[str, qm.VectorParams]:
    def resize(vp: qm.VectorParams) -> qm.VectorParams:
        update: dict[str, Any] = {"size": size}
        if distance is not None:
            update["distance"] = DISTANCES[distance]
        return vp.model_copy(update=update)

    if isinstance(raw, qm.VectorParams):
        return resize(raw)
    return {name: resize(vp) if name == vector else vp for name, vp in raw.items()}


def diff_of(diff_cls: Any, config: Any) -> Any:
    if config is None:
        return None
    return diff_cls(**config.model_dump(exclude_none=True))


def point_of(record: Any) -> Point:
    raw = record.vector
    if raw is None:
        vectors: dict[str, Any] = {}
    elif isinstance(raw, dict):
        vectors = dict(raw)
    else:
        vectors = {UNNAMED: raw}
    # the record's payload is the client's own copy (local mode deep-copies it)
    return Point(id=record.id, payload=record.payload if record.payload is not None else {},
                 vectors=vectors)


def point_struct(point: Point) -> qm.PointStruct:
    """`point` as qdrant_client's model, unvalidated: its fields are of the model's types
    already (an int or string id, plain lists, a JSON payload), the client and the server
    check them again, and validating a model a point was a sixth of a local-mode write."""
    return qm.PointStruct.model_construct(id=point.id, payload=point.payload,
                                          vector=vector_struct(point.vectors))


def vector_struct(vectors: dict[str, Any]) -> Any:
    if set(vectors) == {UNNAMED}:
        return plain(vectors[UNNAMED])
    return {name: plain(v) for name, v in vectors.items()}


def plain(vector: Any) -> Any:
    return vector.tolist() if hasattr(vector, "tolist") else vector


def filter_of(changed: ChangedSince) -> qm.Filter:
    """Qdrant's filter for `changed`: a range on its field."""
    if changed.form == "datetime":
        since = datetime.datetime.fromtimestamp(changed.since, tz=datetime.timezone.utc)
        condition = qm.FieldCondition(key=changed.field, range=qm.DatetimeRange(gte=since))
    else:
        scale = 1000.0 if changed.form == "milliseconds" else 1.0
        condition = qm.FieldCondition(key=changed.field,
                                      range=qm.Range(gte=changed.since * scale))
    return qm.Filter(must=[condition])


def has_field(name: str) -> qm.Filter:
    """Points whose payload has `name` (set and not null)."""
    return qm.Filter(must_not=[qm.IsEmptyCondition(is_empty=qm.PayloadField(key=name)),
                               qm.IsNullCondition(is_null=qm.PayloadField(key=name))])
