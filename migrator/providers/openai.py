"""OpenAI's `/embeddings` API and everything that speaks it: OpenAI, Azure OpenAI,
OpenRouter and any OpenAI-compatible server (vLLM, LiteLLM, TEI, Ollama in OpenAI mode)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from ..catalog import ModelSpec
from ..errors import ConfigError, ProviderResponseError
from ..settings import KEY_REQUIRED, ProviderSettings
from ..tokens import estimate_total
from .base import Embedding, InputKind, check_vectors
from .http import HttpEndpoint, Sleep, extract_message, limiter_for, validated

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
}
DEFAULT_BATCH = 256  # well under OpenAI's 2048: small requests keep many in flight


class OpenAIEmbedder:
    """An OpenAI-style embeddings endpoint.

    Args:
        spec: the model's catalog entry (or a stub for a model the catalog lacks).
        settings: provider settings; `api_key` must already be resolved.
        ask: the size to ask for with `dimensions` (None: the model's own size).
        client: an `httpx.AsyncClient` to use (tests inject a MockTransport here).
    """

    def __init__(
        self,
        spec: ModelSpec,
        settings: ProviderSettings,
        *,
        ask: int | None = None,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.spec = spec
        self._settings = settings
        self._label = f"{settings.name} ({settings.model})"
        self._url = _endpoint_url(settings)
        self._send_dims = ask
        self._dims: int | None = ask or (spec.dims or None)
        self._batch_size = min(settings.batch_size or DEFAULT_BATCH, spec.max_inputs)
        extra = {"sleep": sleep} if sleep is not None else {}
        self._http = HttpEndpoint(
            label=self._label,
            headers=_headers(settings),
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            client=client,
            limiter=limiter_for(settings),
            **extra,
        )
        self.metrics = self._http.metrics

    @property
    def dims(self) -> int | None:
        return self._dims

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def asked_dims(self) -> int | None:
        """The size sent as `dimensions` (None: the model's own)."""
        return self._send_dims

    def request_body(self, texts: Sequence[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model_field(),
            "input": list(texts),
            "encoding_format": self._settings.encoding_format,
        }
        if self._send_dims is not None:
            body["dimensions"] = self._send_dims
        body.update(self._settings.options)
        return body

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        if len(texts) > self._batch_size:
            raise ValueError(f"{len(texts)} texts exceed the batch size {self._batch_size}")
        return await validated(lambda: self._request(texts), self._label)

    async def _request(self, texts: Sequence[str]) -> Embedding:
        estimated = estimate_total(texts)
        reply = await self._http.post_json(self._url, self.request_body(texts), tokens=estimated)
        vectors, tokens = self._parse(reply.body, len(texts))
        self._http.settle(estimated, tokens)
        if self._dims is None:  # a model the catalog lacks: the first answer sets the size
            self._dims = int(vectors.shape[1])
        vectors = check_vectors(vectors, expected=len(texts), dims=self._dims,
                                provider=self._label)
        if tokens is None:
            return Embedding(vectors, estimated, tokens_estimated=True, retries=reply.retries)
        return Embedding(vectors, tokens, retries=reply.retries)

    def _model_field(self) -> str:
        if self._settings.name == "azure" and self._settings.deployment:
            return self._settings.deployment
        return self._settings.model

    def _parse(self, body: Any, expected: int) -> tuple[np.ndarray, int | None]:
        if not isinstance(body, dict) or "data" not in body:
            # OpenRouter reports some errors with HTTP 200 and an `error` object
            message = extract_message(body) or repr(body)[:200]
            raise ProviderResponseError(
                f"{self._label} answered without embeddings: {message}.", provider=self._label
            )
        items = body["data"]
        if not isinstance(items, list) or len(items) != expected:
            got = len(items) if isinstance(items, list) else "no"
            raise ProviderResponseError(
                f"{self._label} returned {got} embeddings for {expected} inputs.",
                provider=self._label,
            )
        ordered: list[Any] = [None] * expected
        for position, item in enumerate(items):
            index = item.get("index", position)
            if (not isinstance(index, int) or not 0 <= index < expected
                    or ordered[index] is not None):
                raise ProviderResponseError(
                    f"{self._label} returned an embedding with a missing, repeated or "
                    f"out-of-range index {index!r}.",
                    provider=self._label,
                )
            ordered[index] = _decode_vector(item.get("embedding"), self._label)
        lengths = {len(v) for v in ordered}
        if len(lengths) != 1:
            raise ProviderResponseError(
                f"{self._label} returned vectors of different lengths {sorted(lengths)}.",
                provider=self._label,
            )
        usage = body.get("usage") or {}
        tokens = usage.get("prompt_tokens", usage.get("total_tokens"))
        return np.vstack(ordered), int(tokens) if isinstance(tokens, (int, float)) else None

    async def aclose(self) -> None:
        await self._http.aclose()


def _decode_vector(raw: Any, label: str) -> np.ndarray:
    if isinstance(raw, str):
        try:
            return np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4").astype(
                np.float32
            )
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
    name = settings.name
    if name == "azure":
        if not settings.base_url:
            raise ConfigError(
                "Azure OpenAI needs provider.base_url, e.g. https://RESOURCE.openai.azure.com."
            )
        base = settings.base_url.rstrip("/")
        if settings.api_version:
            if not settings.deployment:
                raise ConfigError(
                    "Azure OpenAI with provider.api_version needs provider.deployment (the "
                    "deployment name); or drop api_version to use the v1 API."
                )
            return (f"{base}/openai/deployments/{settings.deployment}/embeddings"
                    f"?api-version={settings.api_version}")
        return f"{base}/openai/v1/embeddings"
    root = settings.base_url or DEFAULT_BASE_URLS.get(name)
    if not root:
        raise ConfigError(
            f"Provider {name!r} needs provider.base_url, the server's OpenAI-compatible "
            "address, e.g. http://localhost:11434/v1 for Ollama or http://localhost:8000/v1 "
            "for vLLM."
        )
    return root.rstrip("/") + "/embeddings"


def _headers(settings: ProviderSettings) -> dict[str, str]:
    headers = {"Content-Type": "application/json", **settings.headers}
    key = settings.api_key.get_secret_value() if settings.api_key else None
    if key is None:
        if settings.name in KEY_REQUIRED:
            raise ConfigError(
                f"No API key for provider {settings.name!r}: set the environment variable "
                f"{settings.key_env} (or name another one with provider.api_key_env)."
            )
        return headers
    if settings.name == "azure":
        headers["api-key"] = key
    else:
        headers["Authorization"] = f"Bearer {key}"
    return headers

