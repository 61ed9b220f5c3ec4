"""OpenAI's Files and Batches APIs on the loopback server, as the API reference describes
them (docs/batch-apis.md): multipart uploads with `purpose=batch`, batches that move from
`validating` to `in_progress` to `completed` as they are polled (simulated time), output
lines in any order, error lines, expiry with partial output, failed validation, and the
enqueued-token limit. The embeddings in an output line are what the synchronous endpoint
answers for the same body, so a batch migration must end with the same vectors."""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loopback import LoopbackServer

MAX_REQUESTS = 50_000
MAX_INPUTS = 50_000


@dataclass
class Batch:
    id: str
    input_file_id: str
    lines: list[dict[str, Any]]
    tokens: int
    status: str = "validating"
    polls: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        done = self.status in ("completed", "expired")
        return {"id": self.id, "object": "batch", "endpoint": "/v1/embeddings",
                "input_file_id": self.input_file_id, "completion_window": "24h",
                "status": self.status, "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id, "metadata": self.metadata,
                "errors": {"object": "list", "data": self.errors} if self.errors else None,
                "request_counts": {"total": len(self.lines),
                                   "completed": len(self.lines) if done else 0, "failed": 0}}


class BatchDouble:
    """Attach to a `LoopbackServer` (`server.batches = BatchDouble(server)`).

    Args:
        polls: status polls a batch takes to finish (validating, in progress, done).
        error_ids: custom_ids answered in the error file (HTTP 500) instead, in the first
            batch that finishes (the errors are transient).
        expire: batches end `expired`, with the first half of their lines answered.
        fail: batches fail validation with this message.
        enqueued_tokens: the per-model limit on tokens in batches not finished yet.
    """

    def __init__(self, server: LoopbackServer, *, polls: int = 2, error_ids: set[str] | None = None,
                 expire: bool = False, fail: str | None = None,
                 enqueued_tokens: int | None = None, seed: int = 0) -> None:
        self.server = server
        self.polls, self.expire, self.fail = polls, expire, fail
        self.error_ids = set(error_ids or ())
        self.enqueued_tokens = enqueued_tokens
        self.files: dict[str, tuple[str, bytes]] = {}  # id -> (purpose, content)
        self.deleted: list[str] = []
        self.batches: dict[str, Batch] = {}
        self.embedded: Counter[str] = Counter()  # texts answered through batches
        self.billed_tokens = 0
        self.uploads = 0  # input files uploaded
        self._ids = itertools.count(1)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        # crash tests: with `stall_create`, a batch is created, then its answer held back
        # until `release` is set (the client is killed meanwhile); `created` tells when
        self.stall_create = False
        self.created = threading.Event()
        self.release = threading.Event()
        self.polled = threading.Event()  # a batch's status was asked for

    def handle(self, method: str, path: str, headers: Any, raw: bytes
               ) -> tuple[int, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p][1:]  # drop "v1"
        with self._lock:
            if parts == ["files"] and method == "POST":
                return self._upload(headers, raw)
            if parts[:1] == ["files"] and len(parts) == 3 and parts[2] == "content":
                found = self.files.get(parts[1])
                return (200, found[1]) if found else (404, _error("No such File object"))
            if parts[:1] == ["files"] and len(parts) == 2 and method == "DELETE":
                self.deleted.append(parts[1])
                existed = self.files.pop(parts[1], None) is not None
                return (200, {"id": parts[1], "object": "file", "deleted": True}) if existed \
                    else (404, _error("No such File object"))
            if parts == ["batches"] and method == "POST":
                answer = self._create(json.loads(raw))
                if not self.stall_create:
                    return answer
                self.created.set()
        if parts == ["batches"] and method == "POST":  # stalled, outside the lock
            self.release.wait(30)
            return answer
        with self._lock:
            if parts == ["batches"] and method == "GET":
                data = [b.to_dict() for b in reversed(list(self.batches.values()))]
                return 200, {"object": "list", "data": data, "has_more": False}
            if parts[:1] == ["batches"] and len(parts) >= 2 and parts[1] in self.batches:
                batch = self.batches[parts[1]]
                if len(parts) == 3 and parts[2] == "cancel":
                    batch.status = "cancelled"
                    return 200, batch.to_dict()
                self._advance(batch)
                self.polled.set()
                return 200, batch.to_dict()
        return 404, _error(f"no route {method} {path}")

    def _upload(self, headers: Any, raw: bytes) -> tuple[int, Any]:
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
        fields = {part.get_param("name", header="content-disposition"):
                  part.get_payload(decode=True) for part in message.iter_parts()}
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return 400, _error("purpose must be batch, with a file")
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = ("batch", fields["file"])
        self.uploads += 1
        return 200, {"id": file_id, "object": "file", "purpose": "batch",
                     "bytes": len(fields["file"])}

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        found = self.files.get(body.get("input_file_id", ""))
        if found is None:
            return 400, _error("input_file_id does not exist")
        if body.get("endpoint") != "/v1/embeddings" or body.get("completion_window") != "24h":
            return 400, _error("endpoint must be /v1/embeddings and completion_window 24h")
        lines = [json.loads(line) for line in found[1].splitlines() if line.strip()]
        batch = Batch(f"batch_{next(self._ids)}", body["input_file_id"], lines,
                      tokens=sum(len(t.split()) for line in lines
                                 for t in line["body"]["input"]),
                      metadata=body.get("metadata") or {})
        self.batches[batch.id] = batch
        problem = self._invalid(lines)
        enqueued = sum(b.tokens for b in self.batches.values()
                       if b.status in ("validating", "in_progress") and b is not batch)
        if problem:
            batch.status, batch.errors = "failed", [{"code": "invalid_request",
                                                     "message": problem}]
        elif self.enqueued_tokens is not None and enqueued + batch.tokens > self.enqueued_tokens:
            batch.status, batch.errors = "failed", [{
                "code": "token_limit_exceeded",
                "message": f"Enqueued token limit reached: {enqueued} enqueued, limit "
                           f"{self.enqueued_tokens}."}]
        return 200, batch.to_dict()

    def _invalid(self, lines: list[dict[str, Any]]) -> str | None:
        if self.fail:
            return self.fail
        ids = [line.get("custom_id") for line in lines]
        models = {line["body"].get("model") for line in lines}
        if len(set(ids)) != len(ids):
            return "custom_id values must be unique"
        if len(models) != 1 or any(line.get("url") != "/v1/embeddings" for line in lines):
            return "one model and the /v1/embeddings url in every line"
        if len(lines) > MAX_REQUESTS or sum(len(line["body"]["input"])
                                            for line in lines) > MAX_INPUTS:
            return "too many requests or inputs in one batch"
        return None

    def _advance(self, batch: Batch) -> None:
        if batch.status not in ("validating", "in_progress"):
            return
        batch.polls += 1
        if batch.polls < self.polls:
            batch.status = "in_progress"
            return
        answered, errors = [], []
        lines = list(batch.lines)
        self._random.shuffle(lines)  # output order is not input order
        cut = len(lines) // 2 if self.expire else len(lines)
        for index, line in enumerate(lines):
            if index >= cut:
                errors.append({"id": f"batch_req_{next(self._ids)}",
                               "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "batch_expired",
                                         "message": "This request could not be executed "
                                                    "before the completion window expired."}})
            elif line["custom_id"] in self.error_ids:
                errors.append({"id": f"batch_req_{next(self._ids)}",
                               "custom_id": line["custom_id"],
                               "response": {"status_code": 500, "request_id": "x", "body": {
                                   "error": {"message": "The server had an error",
                                             "code": "server_error"}}}, "error": None})
            else:
                body = self.server.payload(line["body"])
                status = 200
                self.embedded.update(line["body"]["input"])
                self.billed_tokens += body["usage"]["prompt_tokens"]
                answered.append({"id": f"batch_req_{next(self._ids)}",
                                 "custom_id": line["custom_id"],
                                 "response": {"status_code": status, "request_id": "x",
                                              "body": body}, "error": None})
        batch.output_file_id = self._file(answered)
        batch.error_file_id = self._file(errors)
        self.error_ids = set()
        batch.status = "expired" if self.expire else "completed"

    def _file(self, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = ("batch_output",
                               b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        return file_id


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


GEMINI_STATES = {"validating": "BATCH_STATE_PENDING", "in_progress": "BATCH_STATE_RUNNING",
                 "completed": "BATCH_STATE_SUCCEEDED", "failed": "BATCH_STATE_FAILED",
                 "cancelled": "BATCH_STATE_CANCELLED", "expired": "BATCH_STATE_EXPIRED"}


class GeminiBatchDouble:
    """Gemini's Files (resumable upload) and batch embeddings on the loopback server, as
    docs/batch-apis.md describes them: one text a line, long-running operations with
    `metadata.state`, a responses file of `{"key", "response": {"embedding"}}` lines in any
    order, errors as `{"key", "error"}`."""

    def __init__(self, server: LoopbackServer, *, polls: int = 2,
                 error_keys: set[str] | None = None, seed: int = 0) -> None:
        self.server, self.polls = server, polls
        self.error_keys = set(error_keys or ())
        self.files: dict[str, bytes] = {}
        self.sessions: dict[str, str] = {}  # upload session -> display name
        self.deleted: list[str] = []
        self.batches: dict[str, dict[str, Any]] = {}
        self.embedded: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[Any, ...]:
        route = path.split("?")[0]
        with self._lock:
            if route == "/upload/v1beta/files" and headers.get(
                    "X-Goog-Upload-Command") == "start":
                session = f"s{next(self._ids)}"
                self.sessions[session] = json.loads(raw)["file"]["display_name"]
                host = headers.get("Host")
                return 200, {}, {"x-goog-upload-url": f"http://{host}/upload/session/{session}"}
            if route.startswith("/upload/session/"):
                if headers.get("X-Goog-Upload-Command") != "upload, finalize":
                    return 400, _error("upload, finalize expected")
                self.sessions.pop(route.rsplit("/", 1)[1])
                name = f"files/f{next(self._ids)}"
                self.files[name] = raw
                return 200, {"file": {"name": name, "sizeBytes": str(len(raw))}}
            if route.endswith(":asyncBatchEmbedContent"):
                return self._create(route, json.loads(raw)["batch"])
            if route.startswith("/download/v1beta/files/") and route.endswith(":download"):
                name = route[len("/download/v1beta/"):-len(":download")]
                found = self.files.get(name)
                return (200, found) if found is not None else (404, _error("no such file"))
            if route.startswith("/v1beta/files/") and method == "DELETE":
                name = route[len("/v1beta/"):]
                self.deleted.append(name)
                return (200, {}) if self.files.pop(name, None) is not None else (
                    404, _error("no such file"))
            if route == "/v1beta/batches":
                return 200, {"operations": [self._operation(b) for b in self.batches.values()]}
            if route.startswith("/v1beta/batches/"):
                name, _, verb = route[len("/v1beta/"):].partition(":")
                batch = self.batches.get(name)
                if batch is None:
                    return 404, _error("no such batch")
                if verb == "cancel":
                    batch["state"] = "cancelled"
                    return 200, {}
                self._advance(batch)
                return 200, self._operation(batch)
        return 404, _error(f"no route {method} {path}")

    def _create(self, route: str, batch: dict[str, Any]) -> tuple[Any, ...]:
        model = route.split("/models/")[1].split(":")[0]
        file_name = batch["inputConfig"]["fileName"]
        if file_name not in self.files or batch.get("model") != f"models/{model}":
            return 400, _error("inputConfig.fileName and batch.model must name a file and "
                               "the model in the path")
        lines = [json.loads(line) for line in self.files[file_name].splitlines() if line]
        name = f"batches/b{next(self._ids)}"
        self.batches[name] = {"name": name, "file": file_name, "lines": lines, "polls": 0,
                              "state": "validating", "output": None, "model": model}
        return 200, self._operation(self.batches[name])

    def _advance(self, batch: dict[str, Any]) -> None:
        if batch["state"] not in ("validating", "in_progress"):
            return
        batch["polls"] += 1
        if batch["polls"] < self.polls:
            batch["state"] = "in_progress"
            return
        out = []
        lines = list(batch["lines"])
        self._random.shuffle(lines)
        for line in lines:
            if line["key"] in self.error_keys:
                out.append({"key": line["key"], "error": {"code": 500, "status": "INTERNAL",
                                                          "message": "Internal error"}})
                continue
            request = line["request"]
            text = request["content"]["parts"][0]["text"]
            body = {"input": [text], "encoding_format": "float"}
            if "outputDimensionality" in request:
                body["dimensions"] = request["outputDimensionality"]
            values = self.server.payload(body)["data"][0]["embedding"]
            self.embedded[text] += 1
            out.append({"key": line["key"], "response": {"embedding": {"values": values}}})
        name = f"files/out{next(self._ids)}"
        self.files[name] = b"".join(json.dumps(line).encode() + b"\n" for line in out)
        batch["output"], batch["state"] = name, "completed"
        self.error_keys = set()

    def _operation(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = batch["state"] not in ("validating", "in_progress")
        metadata = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main."
                    "EmbedContentBatch", "name": batch["name"],
                    "model": f"models/{batch['model']}",
                    "inputConfig": {"fileName": batch["file"]},
                    "state": GEMINI_STATES[batch["state"]]}
        operation: dict[str, Any] = {"name": batch["name"], "metadata": metadata, "done": done}
        if batch["output"]:
            operation["response"] = {**metadata, "output": {"responsesFile": batch["output"]}}
        return operation
