"""Ollama's native `/api/embed` with `truncate: false` (an over-long input is an error, not
silently cut), or `true` under `long_input: truncate` (cut at the model's own context)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from .base import InputKind
from .rest import RestEmbedder

__all__ = ["OllamaEmbedder"]


class OllamaEmbedder(RestEmbedder):
    default_base_url = "http://localhost:11434"
    default_batch = 64
    cuts_when_asked = True

    def url(self) -> str:
        return f"{self.base_url}/api/embed"

    def body(self, texts: Sequence[str], kind: InputKind) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.settings.model, "input": list(texts),
                                "truncate": self.server_truncates}
        if self.asked_dims is not None:
            body["dimensions"] = self.asked_dims
        return body

    def parse(self, body: Any, headers: httpx.Headers, count: int
              ) -> tuple[np.ndarray, int | None]:
        if not isinstance(body, dict) or "embeddings" not in body:
            raise self.missing(body, "embeddings")
        tokens = body.get("prompt_eval_count")
        return self.matrix(body["embeddings"], count), int(tokens) if tokens else None
