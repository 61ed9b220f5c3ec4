"""Cohere `/v2/embed`: `input_type` per use, `truncate: NONE` so nothing is cut silently
(`END` under `long_input: truncate`), `output_dimension` for embed-v4."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from .base import InputKind
from .rest import RestEmbedder

__all__ = ["CohereEmbedder", "INPUT_TYPES"]

INPUT_TYPES = {"document": "search_document", "query": "search_query"}


class CohereEmbedder(RestEmbedder):
    kinds_differ = True  # `input_type`: queries and documents get different vectors
    default_base_url = "https://api.cohere.com"
    default_batch = 96
    cuts_when_asked = True

    def url(self) -> str:
        return f"{self.base_url}/v2/embed"

    def body(self, texts: Sequence[str], kind: InputKind) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.settings.model, "texts": list(texts),
                                "input_type": INPUT_TYPES[kind], "embedding_types": ["float"],
                                "truncate": "END" if self.server_truncates else "NONE"}
        if self.asked_dims is not None:
            body["output_dimension"] = self.asked_dims
        return body

    def parse(self, body: Any, headers: httpx.Headers, count: int
              ) -> tuple[np.ndarray, int | None]:
        embeddings = body.get("embeddings") if isinstance(body, dict) else None
        if not isinstance(embeddings, dict) or "float" not in embeddings:
            raise self.missing(body, "float embeddings")
        units = (body.get("meta") or {}).get("billed_units") or {}
        tokens = units.get("input_tokens")
        return self.matrix(embeddings["float"], count), int(tokens) if tokens else None
