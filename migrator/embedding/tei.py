"""Hugging Face text-embeddings-inference, native `/embed`: `truncate: false` (or `true`
under `long_input: truncate`: cut at the model's own limit), normalised output, the token
count in the `x-compute-tokens` header; its limits read from `/info`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from .base import InputKind
from .rest import RestEmbedder, ServerLimits, whole

__all__ = ["TEIEmbedder"]


class TEIEmbedder(RestEmbedder):
    default_base_url = "http://localhost:8080"
    default_batch = 32  # TEI's --max-client-batch-size default
    cuts_when_asked = True

    def url(self) -> str:
        return f"{self.base_url}/embed"

    async def server_limits(self) -> ServerLimits | None:
        """`GET /info`: the server's --max-client-batch-size and the model's own token
        limit (max_input_length)."""
        info = await self._http.get_json(f"{self.base_url}/info")
        if not isinstance(info, dict):
            return None
        return ServerLimits("its /info", whole(info.get("max_client_batch_size")),
                            whole(info.get("max_input_length")))

    def body(self, texts: Sequence[str], kind: InputKind) -> dict[str, Any]:
        body: dict[str, Any] = {"inputs": list(texts), "truncate": self.server_truncates,
                                "normalize": True}
        if self.asked_dims is not None:
            body["dimensions"] = self.asked_dims
        return body

    def parse(self, body: Any, headers: httpx.Headers, count: int
              ) -> tuple[np.ndarray, int | None]:
        if not isinstance(body, list):
            raise self.missing(body, "a list of embeddings")
        tokens = headers.get("x-compute-tokens")
        return self.matrix(body, count), int(tokens) if tokens and tokens.isdigit() else None
