"""OpenAI's `/embeddings` API and everything that speaks it: OpenAI, Azure OpenAI,
OpenRouter and any OpenAI-compatible server (vLLM, LiteLLM, TEI, Ollama in OpenAI mode)."""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from ..errors import ConfigError, ProviderResponseError
from ..settings import ProviderSettings
from .base import InputKind
from .batches import BatchAPI, OpenAIBatches
from .rest import RestEmbedder, ServerLimits, whole

__all__ = ["DEFAULT_BASE_URLS", "DEFAULT_BATCH", "OpenAIEmbedder"]

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
}
DEFAULT_BATCH = 256


class OpenAIEmbedder(RestEmbedder):
    """An OpenAI-style embeddings endpoint (OpenAI, Azure, OpenRouter, compatible servers).

    Args:
        spec: the model's catalog entry (or a stub for a model the catalog lacks).
        settings: provider settings; `api_key` must already be resolved.
        ask: the size to ask for with `dimensions` (None: the model's own).
        client: an `httpx.AsyncClient` to use (tests inject a MockTransport here).
    """

    default_batch = DEFAULT_BATCH  # well under OpenAI's 2048: small requests keep many in flight

    def endpoint(self) -> str:
        return _endpoint_url(self.settings)

    def headers(self) -> dict[str, str]:
        return _headers(self.settings)

    def url(self) -> str:
        return self._url

    async def server_limits(self) -> ServerLimits | None:
        """An OpenAI-compatible server's `GET /models`: vLLM lists the model's token limit
        (max_model_len) beside its name. OpenAI's own list has none."""
        if self.settings.name != "openai-compatible":
            return None
        listing = await self._http.get_json(self._url.removesuffix("/embeddings") + "/models")
        models = listing.get("data") if isinstance(listing, dict) else None
        for model in models if isinstance(models, list) else []:
            if isinstance(model, dict) and model.get("id") == self.settings.model:
                return ServerLimits("its /models", None, whole(model.get("max_model_len")))
        return None

    def batches(self) -> BatchAPI | None:
        """OpenAI's Batch API (Azure's batch deployments are not spoken yet)."""
        if self.settings.name != "openai":
            return None
        return OpenAIBatches(
            base_url=self.settings.base_url or DEFAULT_BASE_URLS["openai"],
            headers=self.headers(), label=self.label, request_body=self.request_body,
            parse=self.parse, timeout=self.settings.timeout)

    def body(self, texts: Sequence[str], kind: InputKind) -> dict[str, Any]:
        return self.request_body(texts)

    def request_body(self, texts: Sequence[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model_field(),
            "input": list(texts),
            "encoding_format": self.settings.encoding_format,
        }
        if self.asked_dims is not None:
            body["dimensions"] = self.asked_dims
        return body

    def _model_field(self) -> str:
        if self.settings.name == "azure" and self.settings.deployment:
            return self.settings.deployment
        return self.settings.model

    def parse(self, body: Any, headers: httpx.Headers, count: int
              ) -> tuple[np.ndarray, int | None]:
        if not isinstance(body, dict) or "data" not in body:
            # OpenRouter reports some errors with HTTP 200 and an `error` object
            raise self.missing(body, "embeddings")
        items = body["data"]
        if not isinstance(items, list) or len(items) != count:
            got = len(items) if isinstance(items, list) else "no"
            raise ProviderResponseError(
                f"{self.label} returned {got} embeddings for {count} inputs.",
                provider=self.label,
            )
        ordered: list[Any] = [None] * count
        for position, item in enumerate(items):
            index = item.get("index", position)
            if (not isinstance(index, int) or not 0 <= index < count
                    or ordered[index] is not None):
                raise ProviderResponseError(
                    f"{self.label} returned an embedding with a missing, repeated or "
                    f"out-of-range index {index!r}.",
                    provider=self.label,
                )
            ordered[index] = item.get("embedding")
            if ordered[index] is None:
                raise ProviderResponseError(f"{self.label} returned an item without an "
                                            "embedding.", provider=self.label)
        usage = body.get("usage") or {}
        tokens = usage.get("prompt_tokens", usage.get("total_tokens"))
        return (_matrix(ordered, self.label),
                int(tokens) if isinstance(tokens, (int, float)) else None)


def _matrix(raws: list[Any], label: str) -> np.ndarray:
    """The answer's vectors as one float32 matrix: base64 (what migrator asks for) decoded
    into one buffer, or lists of numbers."""
    if all(isinstance(raw, str) for raw in raws):
        try:
            blobs = [_from_base64(raw) for raw in raws]
        except ValueError as exc:
            raise ProviderResponseError(f"{label} returned base64 that does not decode: {exc}.",
                                        provider=label) from exc
        sizes = {len(blob) for blob in blobs}
        if len(sizes) != 1 or next(iter(sizes)) % 4:
            raise ProviderResponseError(
                f"{label} returned vectors of different or broken lengths "
                f"{sorted(size / 4 for size in sizes)}.", provider=label)
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(raws), -1).astype(
            np.float32)
    vectors = [_decode_vector(raw, label) for raw in raws]
    lengths = {len(v) for v in vectors}
    if len(lengths) != 1:
        raise ProviderResponseError(
            f"{label} returned vectors of different lengths {sorted(lengths)}.", provider=label)
    return np.vstack(vectors)


def _from_base64(raw: str) -> bytes:
    """Strict base64 (a stray character is an error, not skipped); ValueError if not."""
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(raw, strict_mode=True)
    return base64.b64decode(raw, validate=True)  # pragma: no cover - Python 3.10


def _decode_vector(raw: Any, label: str) -> np.ndarray:
    if isinstance(raw, str):
        try:
            return np.frombuffer(_from_base64(raw), dtype="<f4").astype(np.float32)
        except ValueError as exc:
            raise ProviderResponseError(f"{label} returned base64 that does not decode: {exc}.",
                                        provider=label) from exc
    if isinstance(raw, list):
        try:
            return np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ProviderResponseError(f"{label} returned a vector with non-numbers.",
                                        provider=label) from exc
    raise ProviderResponseError(f"{label} returned an item without an embedding.", provider=label)


def _endpoint_url(settings: ProviderSettings) -> str:
    name, setting = settings.name, settings.setting
    if name == "azure":
        if not settings.base_url:
            raise ConfigError(
                f"Azure OpenAI needs {setting('base_url')}, e.g. "
                "https://RESOURCE.openai.azure.com.")
        base = settings.base_url.rstrip("/")
        if settings.api_version:
            if not settings.deployment:
                raise ConfigError(
                    f"Azure OpenAI with {setting('api_version')} needs {setting('deployment')} "
                    "(the deployment name); or drop api_version to use the v1 API."
                )
            return (f"{base}/openai/deployments/{settings.deployment}/embeddings"
                    f"?api-version={settings.api_version}")
        return f"{base}/openai/v1/embeddings"
    root = settings.base_url or DEFAULT_BASE_URLS.get(name)
    if not root:
        raise ConfigError(
            f"Provider {name!r} needs {setting('base_url')}, the server's OpenAI-compatible "
            "address, e.g. http://localhost:11434/v1 for Ollama or http://localhost:8000/v1 "
            "for vLLM."
        )
    return root.rstrip("/") + "/embeddings"


def _headers(settings: ProviderSettings) -> dict[str, str]:
    headers = {"Content-Type": "application/json", **settings.headers}
    key = settings.key()
    if key is None:
        return headers
    if settings.name == "azure":
        headers["api-key"] = key
    else:
        headers["Authorization"] = f"Bearer {key}"
    return headers

