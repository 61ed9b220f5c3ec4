"""Gemini `batchEmbedContents`: `taskType` per use, `outputDimensionality`; no token counts
(estimated), and vectors below 3072 values are L2-normalised here (only 3072 comes back
normalised)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from .base import InputKind
from .batches import BatchAPI
from .gemini_batches import GeminiBatches
from .rest import RestEmbedder
from .vectors import l2_normalize

__all__ = ["GeminiEmbedder", "NORMALISED_SIZE", "TASK_TYPES"]

TASK_TYPES = {"document": "RETRIEVAL_DOCUMENT", "query": "RETRIEVAL_QUERY"}
NORMALISED_SIZE = 3072


class GeminiEmbedder(RestEmbedder):
    kinds_differ = True  # `input_type`: queries and documents get different vectors
    default_base_url = "https://generativelanguage.googleapis.com"
    default_batch = 100

    def headers(self) -> dict[str, str]:
        key = self.api_key()
        auth = {"x-goog-api-key": key} if key else {}
        return {"Content-Type": "application/json", **auth, **self.settings.headers}

    def url(self) -> str:
        return f"{self.base_url}/v1beta/models/{self.settings.model}:batchEmbedContents"

    def body(self, texts: Sequence[str], kind: InputKind) -> dict[str, Any]:
        requests = []
        for text in texts:
            request: dict[str, Any] = {"model": f"models/{self.settings.model}",
                                       "content": {"parts": [{"text": text}]},
                                       "taskType": TASK_TYPES[kind]}
            if self.asked_dims is not None:
                request["outputDimensionality"] = self.asked_dims
            requests.append(request)
        return {"requests": requests}

    def batches(self) -> BatchAPI | None:
        """Gemini's batch embeddings (docs/batch-apis.md), for documents."""
        return GeminiBatches(base_url=self.base_url, headers=self.headers(), label=self.label,
                             model=self.settings.model,
                             requests=lambda texts: self.body(texts, "document"),
                             parse=self.parse, timeout=self.settings.timeout)

    def parse(self, body: Any, headers: httpx.Headers, count: int
              ) -> tuple[np.ndarray, int | None]:
        embeddings = body.get("embeddings") if isinstance(body, dict) else None
        if not isinstance(embeddings, list):
            raise self.missing(body, "embeddings")
        rows = [item.get("values") if isinstance(item, dict) else None for item in embeddings]
        vectors = self.matrix(rows, count)
        if vectors.shape[1] != NORMALISED_SIZE:
            vectors = l2_normalize(vectors)
        return vectors, None
