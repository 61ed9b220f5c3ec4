"""Gemini's Batch API for embeddings (Developer API, v1beta), a different shape from
OpenAI's: a request is one text, a batch is a long-running operation, files go through the
resumable upload protocol. The contract, with its sources, is in docs/batch-apis.md.

    upload   POST /upload/v1beta/files (resumable: start, then upload+finalize)
    create   POST /v1beta/models/{model}:asyncBatchEmbedContent
             {"batch": {"displayName", "model", "inputConfig": {"fileName"}}}
    get      GET  /v1beta/batches/{id}   (metadata.state: BATCH_STATE_*)
    list     GET  /v1beta/batches?pageSize=&pageToken=
    results  GET  /download/v1beta/{file}:download?alt=media (the responses file)
    cancel   POST /v1beta/batches/{id}:cancel
    delete   DELETE /v1beta/{file}

Input lines are `{"key", "request": <EmbedContentRequest>}`, the request the synchronous
`batchEmbedContents` would carry for that text; output lines are `{"key", "response":
{"embedding": {"values"}}}` or `{"key", "error"}`, read by the synchronous parser (which
also L2-normalises sizes below 3072). Gemini reports no tokens: the bill estimates them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from ..catalog import BATCH
from ..errors import ProviderResponseError
from .batches import BatchClient, BatchJob, LineResult

__all__ = ["GeminiBatches", "STATES"]

# Gemini's batch states, as the ledger names them (OpenAI's words)
STATES = {"BATCH_STATE_PENDING": "validating", "BATCH_STATE_RUNNING": "in_progress",
          "BATCH_STATE_SUCCEEDED": "completed", "BATCH_STATE_FAILED": "failed",
          "BATCH_STATE_CANCELLED": "cancelled", "BATCH_STATE_EXPIRED": "expired"}

Requests = Callable[[Sequence[str]], dict[str, Any]]


class GeminiBatches(BatchClient):
    """Gemini's batch embeddings for one model and size (see the module's docstring)."""

    discount = BATCH["gemini"].price_factor

    def __init__(self, *, model: str, requests: Requests, **common: Any) -> None:
        super().__init__(**common)
        self._model, self._requests = model, requests

    def request_line(self, custom_id: str, texts: Sequence[str]) -> bytes:
        """One line per text, keyed `{custom_id}-{row}`: Gemini embeds a text a request."""
        bodies = self._requests(texts)["requests"]
        return b"".join(json.dumps({"key": f"{custom_id}-{row}", "request": body},
                                   separators=(",", ":")).encode() + b"\n"
                        for row, body in enumerate(bodies))

    async def upload(self, content: bytes, name: str) -> str:
        start = await self._call("POST", "/upload/v1beta/files", json={
            "file": {"display_name": name}}, headers={
            "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(content)),
            "X-Goog-Upload-Header-Content-Type": "application/jsonl"})
        upload_url = start.headers.get("x-goog-upload-url")
        if not upload_url:
            raise ProviderResponseError(f"{self.label} gave no upload URL for a batch file.",
                                        provider=self.label)
        done = await self._call("POST", upload_url, content=content, headers={
            "X-Goog-Upload-Offset": "0", "X-Goog-Upload-Command": "upload, finalize"})
        return str(done.json()["file"]["name"])

    async def create(self, file_id: str, metadata: Mapping[str, str]) -> BatchJob:
        name = "migrator " + " ".join(f"{k}={v}" for k, v in sorted(metadata.items()))
        answer = await self._call(
            "POST", f"/v1beta/models/{self._model}:asyncBatchEmbedContent",
            json={"batch": {"displayName": name, "model": f"models/{self._model}",
                            "inputConfig": {"fileName": file_id}}})
        return _job(answer.json(), file_id)

    async def get(self, batch_id: str) -> BatchJob:
        return _job((await self._call("GET", f"/v1beta/{batch_id}")).json())

    async def find(self, file_id: str) -> BatchJob | None:
        token: str | None = None
        while True:
            params = {"pageSize": "100", **({"pageToken": token} if token else {})}
            page = (await self._call("GET", "/v1beta/batches", params=params)).json()
            for operation in page.get("operations", []):
                job = _job(operation)
                if job.input_file == file_id:
                    return job
            token = page.get("nextPageToken")
            if not token:
                return None

    async def results(self, file_id: str, counts: Mapping[str, int]) -> list[LineResult]:
        lines = await self._lines(f"/download/v1beta/{file_id}:download",
                                  params={"alt": "media"})
        return [self._line(line, counts) for line in lines]

    def _line(self, line: dict[str, Any], counts: Mapping[str, int]) -> LineResult:
        custom_id, _, row_text = str(line.get("key")).rpartition("-")
        if custom_id not in counts or not row_text.isdigit() or (
                int(row_text) >= counts[custom_id]):
            return LineResult(custom_id, error=f"a key this batch never sent: {line.get('key')}")
        rows = (int(row_text),)
        if "error" in line or "response" not in line:
            error = line.get("error") or {}
            return LineResult(custom_id, rows=rows, error=f"{error.get('status') or 'error'}: "
                                                          f"{error.get('message') or 'none'}")
        embedding = (line.get("response") or {}).get("embedding")
        try:
            vectors, _ = self._parse({"embeddings": [embedding]}, httpx.Headers(), 1)
        except ProviderResponseError as exc:
            return LineResult(custom_id, rows=rows, error=str(exc))
        return LineResult(custom_id, vectors=vectors, rows=rows)

    async def cancel(self, batch_id: str) -> BatchJob:
        await self._call("POST", f"/v1beta/{batch_id}:cancel")
        return await self.get(batch_id)

    async def delete_file(self, file_id: str) -> None:
        await self._call("DELETE", f"/v1beta/{file_id}", missing_ok=True)


def _job(operation: dict[str, Any], file_id: str | None = None) -> BatchJob:
    """A batch operation as a `BatchJob`: the state in its metadata, the responses file
    in its response (or metadata) once done."""
    metadata = operation.get("metadata") or {}
    response = operation.get("response") or {}
    output = response.get("output") or metadata.get("output") or {}
    state = STATES.get(str(metadata.get("state")), "validating")
    error = operation.get("error")
    errors = [{"code": error.get("status") or error.get("code"),
               "message": error.get("message")}] if isinstance(error, dict) else []
    input_config = metadata.get("inputConfig") or {}
    return BatchJob(id=str(operation.get("name") or metadata.get("name")), status=state,
                    input_file=str(input_config.get("fileName") or file_id),
                    output_file=output.get("responsesFile"), error_file=None, errors=errors)
