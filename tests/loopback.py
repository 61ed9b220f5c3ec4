"""A real OpenAI-compatible embeddings server on 127.0.0.1, for tests and benchmarks.

Vectors are deterministic functions of the text (`vector_for`), so a test can check that
every point got the vector of its own text. The server can add latency, answer with
queued faults, and shuffle the order of `data` items; it counts requests and texts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


def vector_for(text: str, dims: int) -> np.ndarray:
    """The unit vector the loopback server returns for `text` at `dims`."""
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    vector = rng.standard_normal(dims).astype(np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class Fault:
    """One canned answer: returned instead of embeddings for the next request.
    `Fault(0)` answers that request normally (to let, say, a probe through first)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    stall: float = 0.0  # seconds to wait before answering (past a client's timeout)
    reset: bool = False  # drop the connection without answering


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed by a crash test) is no error of the server's."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """`with LoopbackServer(dims=16, latency=0.05) as server: server.url`

    `dims` is the model's own size, returned when a request has no `dimensions`.
    """

    def __init__(self, *, dims: int = 16, latency: float = 0.0, shuffle: bool = False,
                 api_key: str | None = None, honour_dimensions: bool = True,
                 scale: float = 1.0, rpm: int | None = None, tpm: int | None = None,
                 window: float = 60.0, serial: bool = False, per_text: float = 0.0,
                 max_model_len: dict[str, int] | None = None, nagle: bool = False) -> None:
        self.dims = dims
        # a server without TCP_NODELAY (Python's http.server, a Flask dev server): on a
        # kept-alive connection a reply's body waits for the client's delayed ACK
        self.nagle = nagle
        # vLLM: `GET /v1/models` lists each model's token limit, and an input over it (in
        # words, here) is refused with 400
        self.max_model_len = max_model_len or {}
        self.honour_dimensions = honour_dimensions  # False: ignore `dimensions`, like Ollama
        self.scale = scale  # vector length; not 1.0 plays a server that does not normalise
        self.latency = latency
        # a model on a CPU: one request at a time, `latency` + `per_text` a text each; a
        # request its client gave up on is still worked through
        self.serial = serial
        self.per_text = per_text
        self._busy = threading.Lock()
        self.shuffle = shuffle
        self.api_key = api_key
        self.faults: deque[Fault] = deque()
        self.requests = 0  # every request, answered or not
        self.texts = 0
        self.seen: Counter[str] = Counter()  # how often each text was embedded
        # the bill: requests answered 200, the tokens they report, texts by `input_type`
        self.answered = 0
        self.billed_tokens = 0
        self.kinds: Counter[tuple[str, str]] = Counter()
        # rate-limit windows (fixed, from the first request), OpenAI-style 429s and headers
        self.limits = {"requests": rpm, "tokens": tpm}
        self.window = window
        self.throttled = 0
        self.admitted_tokens = 0
        self.window_tokens: Counter[int] = Counter()  # tokens admitted in each window
        self._origin: float | None = None
        self._index = -1
        self._used = {"requests": 0, "tokens": 0}
        self.bodies: list[dict[str, Any]] = []
        self.batches: Any = None  # a batch_loopback.BatchDouble serves /files and /batches
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        limit = self.max_model_len.get(body.get("model", ""))
        longest = max((len(text.split()) for text in texts), default=0)
        if limit is not None and longest > limit:
            with self._lock:
                self.requests += 1
            return 400, {}, json.dumps({
                "object": "error", "type": "BadRequestError", "code": 400,
                "message": f"This model's maximum context length is {limit} tokens. However, "
                           f"you requested {longest} tokens in the input for embedding "
                           "generation. Please reduce the length of the input."}).encode()
        tokens = sum(len(t.split()) for t in texts)
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
            fault = self.faults.popleft() if self.faults else None
            limited = self._admit(tokens)
        if fault is not None and (fault.stall or fault.reset):
            time.sleep(fault.stall)
            if fault.reset:
                raise ConnectionResetError("fault: reset")
        if fault is not None and fault.status:
            raw = fault.raw if fault.raw is not None else json.dumps(fault.body).encode()
            return fault.status, fault.headers, raw
        status, headers = limited
        if status == 429:
            return 429, headers, json.dumps({"error": {
                "message": "Rate limit reached. Please try again later.",
                "type": "tokens", "code": "rate_limit_exceeded"}}).encode()
        with self._lock:
            self.texts += len(texts)
            self.seen.update(texts)
            self.answered += 1
            self.billed_tokens += tokens
            self.kinds.update((body.get("input_type", "-"), t) for t in texts)
        return 200, headers, json.dumps(self.payload(body)).encode()

    def payload(self, body: dict[str, Any]) -> dict[str, Any]:
        """The embeddings answer to a request body (counted by the caller)."""
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(len(t.split()) for t in texts)
        asked = body.get("dimensions") if self.honour_dimensions else None
        dims = int(asked or self.dims)
        items = []
        for index, text in enumerate(texts):
            vector = vector_for(text, dims) * self.scale
            encoded: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode()
                            if body.get("encoding_format") == "base64" else vector.tolist())
            items.append({"object": "embedding", "index": index, "embedding": encoded})
        if self.shuffle:
            items.reverse()
        return {"object": "list", "data": items, "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def _admit(self, tokens: int) -> tuple[int, dict[str, str]]:
        """Count a request against the current window (lock held): 429 when it would go
        over a limit. Headers say what is left and when the window resets."""
        if not any(self.limits.values()):
            return 200, {}
        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        index = int((now - self._origin) // self.window)  # windows of fixed length
        if index != self._index:
            self._index = index
            self._used = {"requests": 0, "tokens": 0}
        wants = {"requests": 1, "tokens": tokens}
        over = any(limit is not None and self._used[k] + wants[k] > limit
                   for k, limit in self.limits.items())
        if not over:
            for key in wants:
                self._used[key] += wants[key]
            self.admitted_tokens += tokens
            self.window_tokens[index] += tokens
        else:
            self.throttled += 1
        reset = self._origin + (index + 1) * self.window - now
        headers = {}
        for key, limit in self.limits.items():
            if limit is not None:
                headers[f"x-ratelimit-limit-{key}"] = str(limit)
                headers[f"x-ratelimit-remaining-{key}"] = str(max(0, limit - self._used[key]))
                headers[f"x-ratelimit-reset-{key}"] = f"{int(reset * 1000)}ms"
        if over:
            headers["retry-after-ms"] = str(max(1, int(reset * 1000)))
        return (429 if over else 200), headers

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out as two writes; without TCP_NODELAY the second waits
            # for the client's delayed ACK (40 ms) and every request looks slow
            disable_nagle_algorithm = not server.nagle

            def _batches(self, method: str) -> bool:
                """OpenAI's Files and Batches APIs, when a BatchDouble is attached."""
                if server.batches is None or not any(part in self.path for part in (
                        "/files", "/batches", ":asyncBatchEmbedContent", "/upload/session")):
                    return False
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length) if length else b""
                if server.api_key and self.headers.get("Authorization") != (
                        f"Bearer {server.api_key}"):
                    status, answer = 401, {"error": {"message": "Incorrect API key"}}
                else:
                    status, answer, *extra = server.batches.handle(method, self.path,
                                                                   self.headers, raw)
                out = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(out)
                return True

            def do_DELETE(self) -> None:  # noqa: N802 (http.server's naming)
                if not self._batches("DELETE"):
                    self.send_error(404)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self._batches("GET"):
                    return
                if self.path.endswith("/models") and server.max_model_len:
                    self._send(200, json.dumps({"object": "list", "data": [
                        {"id": name, "object": "model", "owned_by": "vllm",
                         "max_model_len": limit}
                        for name, limit in server.max_model_len.items()]}).encode())
                    return
                raw = json.dumps({"requests": server.requests, "throttled": server.throttled,
                                  "answered": server.answered,
                                  "admitted_tokens": server.admitted_tokens,
                                  "window_tokens": [server.window_tokens[i] for i in range(
                                      max(server.window_tokens, default=-1) + 1)]}).encode()
                self._send(200, raw)

            def _send(self, status: int, raw: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                if self._batches("POST"):
                    return
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                count = len(body["input"]) if isinstance(body.get("input"), list) else 1
                work = server.latency + server.per_text * count
                with server._busy if server.serial else contextlib.nullcontext():
                    if work:
                        time.sleep(work)
                    self._answer(body)

            def _answer(self, body: dict[str, Any]) -> None:
                if server.api_key and self.headers.get("Authorization") != (
                        f"Bearer {server.api_key}"):
                    status, headers, raw = 401, {}, json.dumps(
                        {"error": {"message": "Incorrect API key provided",
                                   "code": "invalid_api_key"}}).encode()
                elif not self.path.endswith("/embeddings"):
                    status, headers, raw = 404, {}, b'{"error": {"message": "no such route"}}'
                elif "input" not in body:  # a client killed before it sent its body
                    status, headers, raw = 400, {}, b'{"error": {"message": "no input"}}'
                else:
                    try:
                        status, headers, raw = server.respond(body)
                    except ConnectionResetError:
                        self.close_connection = True
                        self.connection.shutdown(2)  # socket.SHUT_RDWR: no answer at all
                        return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client went away (killed): fine

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler


def main() -> None:
    """Serve in a process of its own (benchmarks): prints the URL, serves until stdin closes.

    python -m tests.loopback --dims 128 --latency 0.05
    """
    import argparse

    parser = argparse.ArgumentParser(description="loopback OpenAI-compatible embeddings server")
    parser.add_argument("--dims", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rpm", type=int, help="requests per window")
    parser.add_argument("--tpm", type=int, help="tokens (words) per window")
    parser.add_argument("--window", type=float, default=60.0, help="window length, seconds")
    parser.add_argument("--serial", action="store_true", help="one request at a time")
    parser.add_argument("--per-text", type=float, default=0.0, help="seconds per text")
    args = parser.parse_args()
    with LoopbackServer(dims=args.dims, latency=args.latency, rpm=args.rpm, tpm=args.tpm,
                        window=args.window, serial=args.serial,
                        per_text=args.per_text) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # the parent closes our stdin (or exits) to stop us


if __name__ == "__main__":
    main()
