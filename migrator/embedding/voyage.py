"""Voyage `/v1/embeddings`: `input_type`, `truncation: false` (`true` under
`long_input: truncate`), `output_dimension`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from .base import InputKind
from .rest import RestEmbedder

__all__ = ["openai_style", "VoyageEmbedder"]


def openai_style(embedder: RestEmbedder, body: Any, count: int) -> np.ndarray:
    """`{"data": [{"index": i, "embedding": [...]}]}` in input order, each index once."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise embedder.missing(body, "embeddings")
    ordered: list[Any] = [None] * count
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or ordered[index] is not None:
            raise embedder.missing(body, f"a valid index for item {position}")
        ordered[index] = item.get("embedding")
    if any(row is None for row in ordered):
        raise embedder.missing(body, "an embedding for every input")
    return embedder.matrix(ordered, count)


class VoyageEmbedder(RestEmbedder):
    kinds_differ = True  # `input_type`: queries and documents get different vectors
    default_base_url = "https://api.voyageai.com"
    default_batch = 128
    cuts_when_asked = True

    def url(self) -> str:
        return f"{self.base_url}/v1/embeddings"

    def body(self, texts: Sequence[str], kind: InputKind) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.settings.model, "input": list(texts),
                                "input_type": kind,
                                "truncation": self.server_truncates}
        if self.asked_dims is not None:
            body["output_dimension"] = self.asked_dims
        return body

    def parse(self, body: Any, headers: httpx.Headers, count: int
              ) -> tuple[np.ndarray, int | None]:
        tokens = (body.get("usage") or {}).get("total_tokens") if isinstance(body, dict) else None
        return openai_style(self, body, count), int(tokens) if tokens else None
