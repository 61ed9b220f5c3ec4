"""Mistral `/v1/embeddings` (mistral-embed; codestral-embed takes `output_dimension`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from .base import InputKind
from .rest import RestEmbedder
from .voyage import openai_style

__all__ = ["MistralEmbedder"]


class MistralEmbedder(RestEmbedder):
    default_base_url = "https://api.mistral.ai"
    default_batch = 128

    def url(self) -> str:
        return f"{self.base_url}/v1/embeddings"

    def body(self, texts: Sequence[str], kind: InputKind) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.settings.model, "input": list(texts)}
        if self.asked_dims is not None:
            body["output_dimension"] = self.asked_dims
        return body

    def parse(self, body: Any, headers: httpx.Headers, count: int
              ) -> tuple[np.ndarray, int | None]:
        usage = (body.get("usage") or {}) if isinstance(body, dict) else {}
        tokens = usage.get("prompt_tokens", usage.get("total_tokens"))
        return openai_style(self, body, count), int(tokens) if tokens else None
