"""Providers' batch APIs: the same embeddings at half the price, answered within 24 hours.

OpenAI's contract (docs/batch-apis.md has it with its sources): upload a JSONL file of
requests (`POST /files`, `purpose=batch`), create a batch over it (`POST /batches`,
`completion_window: 24h`), poll it (`GET /batches/{id}`), download its output and error
files (`GET /files/{id}/content`), whose lines come back in any order and are matched by
`custom_id`. A request line's body is exactly what the synchronous endpoint is sent, and an
output line's body is exactly what it answers: both go through the provider's own
`request_body` and `parse`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np

from ..catalog import BATCH
from ..errors import ProviderError, ProviderResponseError, ProviderUnreachable
from ..naming import redact_url
from .http import backoff, error_message, retry_delay, tls_context

__all__ = ["BatchAPI", "BatchClient", "BatchJob", "call", "LineResult", "MAX_FILE_BYTES",
           "MAX_INPUTS_PER_BATCH", "MAX_REQUESTS_PER_FILE", "OpenAIBatches", "RETRIES",
           "TERMINAL"]

MAX_REQUESTS_PER_FILE = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_INPUTS_PER_BATCH = 50_000  # embedding inputs across one batch's requests
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
RETRIES = 6  # a status poll or a download that fails is tried this often


@dataclass(frozen=True)
class BatchJob:
    """A batch as the provider describes it."""

    id: str
    status: str
    input_file: str
    output_file: str | None = None
    error_file: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # why it failed

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def error_codes(self) -> set[str]:
        return {str(e.get("code")) for e in self.errors}

    def describe_errors(self) -> str:
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in self.errors) or (
            "no reason given")


@dataclass(frozen=True)
class LineResult:
    """One line of an output or error file: the vectors of its request (or of `rows` of
    it, where the provider answers text by text), or why not."""

    custom_id: str
    vectors: np.ndarray | None = None
    tokens: int | None = None
    error: str | None = None  # what went wrong (the request can be sent again)
    rows: tuple[int, ...] | None = None  # the request's rows answered; None: all


class BatchAPI(Protocol):
    """What batch mode needs of a provider's batch API."""

    label: str
    discount: float  # the batch price as a share of the synchronous one

    def request_line(self, custom_id: str, texts: Sequence[str]) -> bytes: ...

    async def upload(self, content: bytes, name: str) -> str: ...

    async def create(self, file_id: str, metadata: Mapping[str, str]) -> BatchJob: ...

    async def get(self, batch_id: str) -> BatchJob: ...

    async def find(self, file_id: str) -> BatchJob | None: ...

    async def results(self, file_id: str, counts: Mapping[str, int]) -> list[LineResult]: ...

    async def cancel(self, batch_id: str) -> BatchJob: ...

    async def delete_file(self, file_id: str) -> None: ...

    async def aclose(self) -> None: ...


Parse = Callable[[Any, httpx.Headers, int], tuple[np.ndarray, "int | None"]]


class BatchClient:
    """What every batch API client shares: the provider's base URL, credentials, HTTP
    client (owned unless given), the synchronous parser, and retried calls."""

    def __init__(self, *, base_url: str, headers: Mapping[str, str], label: str,
                 parse: Parse, timeout: float = 120.0, client: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.label = label
        self._headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        self._parse = parse
        self._client = client or httpx.AsyncClient(timeout=timeout, verify=tls_context())
        self._owns_client = client is None
        self._sleep = sleep

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _lines(self, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """A JSONL file the provider holds, line by line."""
        raw = (await self._call("GET", path, **kwargs)).content
        return [json.loads(text) for text in raw.splitlines() if text.strip()]

    async def _call(self, method: str, path: str, *,
                    headers: Mapping[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """`path` below the base URL, or a whole URL (an upload session's)."""
        url = path if path.startswith("http") else self.base_url + path
        return await call(self._client, method, url, label=self.label,
                          headers={**self._headers, **(headers or {})}, sleep=self._sleep,
                          **kwargs)


class OpenAIBatches(BatchClient):
    """OpenAI's Files and Batches APIs, for the model and size `request_body` asks for."""

    discount = BATCH["openai"].price_factor

    def __init__(self, *, request_body: Callable[[Sequence[str]], dict[str, Any]],
                 **common: Any) -> None:
        super().__init__(**common)
        self._request_body = request_body

    def request_line(self, custom_id: str, texts: Sequence[str]) -> bytes:
        line = {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
                "body": self._request_body(texts)}
        return json.dumps(line, separators=(",", ":")).encode() + b"\n"

    async def upload(self, content: bytes, name: str) -> str:
        answer = await self._call("POST", "/files", data={"purpose": "batch"},
                                  files={"file": (name, content, "application/jsonl")})
        return str(answer.json()["id"])

    async def create(self, file_id: str, metadata: Mapping[str, str]) -> BatchJob:
        answer = await self._call("POST", "/batches", json={
            "input_file_id": file_id, "endpoint": "/v1/embeddings",
            "completion_window": "24h", "metadata": dict(metadata)})
        return _job(answer.json())

    async def get(self, batch_id: str) -> BatchJob:
        return _job((await self._call("GET", f"/batches/{batch_id}")).json())

    async def find(self, file_id: str) -> BatchJob | None:
        """The batch created over `file_id`, if one was (a crash may have come between
        creating it and recording it)."""
        after: str | None = None
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            page = (await self._call("GET", "/batches", params=params)).json()
            for item in page.get("data", []):
                if item.get("input_file_id") == file_id:
                    return _job(item)
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]

    async def results(self, file_id: str, counts: Mapping[str, int]) -> list[LineResult]:
        """The lines of an output or error file; `counts`: how many texts each request
        (by custom_id) sent, to check its answer as the synchronous path does."""
        return [self._line(line, counts)
                for line in await self._lines(f"/files/{file_id}/content")]

    def _line(self, line: dict[str, Any], counts: Mapping[str, int]) -> LineResult:
        custom_id = str(line.get("custom_id"))
        response = line.get("response") or {}
        status = response.get("status_code")
        if line.get("error") or status != 200:
            error = line.get("error") or (response.get("body") or {}).get("error") or {}
            return LineResult(custom_id, error=f"{error.get('code') or status}: "
                                                f"{error.get('message') or 'no message'}")
        if custom_id not in counts:
            return LineResult(custom_id, error="a custom_id this batch never sent")
        try:
            vectors, tokens = self._parse(response.get("body"), httpx.Headers(),
                                          counts[custom_id])
        except ProviderResponseError as exc:
            return LineResult(custom_id, error=str(exc))
        return LineResult(custom_id, vectors=vectors, tokens=tokens)

    async def cancel(self, batch_id: str) -> BatchJob:
        return _job((await self._call("POST", f"/batches/{batch_id}/cancel")).json())

    async def delete_file(self, file_id: str) -> None:
        await self._call("DELETE", f"/files/{file_id}", missing_ok=True)


async def call(client: httpx.AsyncClient, method: str, url: str, *, label: str,
               headers: Mapping[str, str], sleep: Callable[[float], Any],
               missing_ok: bool = False, **kwargs: Any) -> httpx.Response:
    """One call to a batch API, retried on 429, 5xx and dropped connections; any other
    error answer is a `ProviderError` with the provider's message."""
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await client.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            if attempt > RETRIES:
                raise ProviderUnreachable(
                    f"{label} batch API unreachable ({method} {redact_url(url)}): "
                    f"{type(exc).__name__}.",
                    provider=label) from exc
            await sleep(backoff(attempt))
            continue
        if response.status_code < 400 or (missing_ok and response.status_code == 404):
            return response
        if (response.status_code == 429 or response.status_code >= 500) and attempt <= RETRIES:
            await sleep(retry_delay(response.headers, attempt))
            continue
        raise ProviderError(
            f"{label} batch API answered HTTP {response.status_code} to {method} "
            f"{redact_url(url)}: "
            f"{error_message(response)}", provider=label, status=response.status_code)


def _job(data: dict[str, Any]) -> BatchJob:
    errors = data.get("errors") or {}
    return BatchJob(id=str(data["id"]), status=str(data.get("status")),
                    input_file=str(data.get("input_file_id")),
                    output_file=data.get("output_file_id"),
                    error_file=data.get("error_file_id"),
                    errors=list(errors.get("data") or []) if isinstance(errors, dict) else [])
