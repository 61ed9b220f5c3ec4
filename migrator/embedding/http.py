"""Shared async HTTP for the API providers: retries, backoff and error mapping.

A request is retried on 429 (unless the account is out of quota), 408, 5xx, timeouts and
dropped connections, waiting what `retry-after-ms` / `Retry-After` ask for, or else an
exponential backoff with full jitter. Everything else maps to a `ProviderError` subclass
whose message names the provider, the model, the HTTP status and the provider's own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import re
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from ..errors import (
    ProviderAuthError,
    ProviderError,
    ProviderQuotaError,
    ProviderRateLimited,
    ProviderResponseError,
    ProviderUnreachable,
)
from ..interrupts import pause
from ..naming import redact_url
from .congestion import AdaptiveConcurrency
from .limits import RateLimiter, RateLimits
from .usage import EndpointMetrics

__all__ = ["backoff", "BACKOFF_BASE", "BACKOFF_CAP", "error_message", "extract_message",
    "HttpClient", "HttpEndpoint", "limit_kind", "limiter_for", "LOOKUP_SECONDS",
    "MAX_SERVER_WAIT",
    "MAX_TIMEOUT_GROWTH", "Reply", "retry_delay", "RETRY_STATUSES", "SAME_WRONG_ANSWERS",
    "Sleep", "tls_context"]

HttpClient = httpx.AsyncClient  # for modules outside embedding/, which never import httpx
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_SERVER_WAIT = 120.0  # never wait longer than this on a server's say-so
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MAX_TIMEOUT_GROWTH = 8  # a timed-out request may wait up to this many timeouts
SAME_WRONG_ANSWERS = 3  # the same invalid answer this often in a row: stop retrying
LOOKUP_SECONDS = 10.0  # a server's description of itself comes at once or not at all

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


@dataclass
class Reply:
    body: Any
    headers: httpx.Headers
    retries: int


class HttpEndpoint:
    """One provider endpoint: an `httpx.AsyncClient`, credentials and a retry policy.

    Pass `client` to share a client or to inject `httpx.MockTransport` in tests.
    """

    def __init__(
        self,
        *,
        label: str,
        setting: Callable[[str], str] = "provider.{}".format,
        headers: Mapping[str, str],
        timeout: float,
        max_retries: int,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        limiter: RateLimiter | None = None,
        concurrency: AdaptiveConcurrency | None = None,
    ) -> None:
        self.label = label
        self.setting = setting  # names one of its settings (a key) in a message
        self.limiter = limiter
        self.concurrency = concurrency
        self.metrics = EndpointMetrics()
        self._headers = dict(headers)
        self._timeout = timeout
        self.max_retries = max_retries
        self._owns_client = client is None
        self._client = client or self._new_client()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sleep = sleep
        self._answered = False
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()  # that answered before

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout, verify=tls_context(),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64))

    def _on_this_loop(self) -> None:
        """An endpoint may outlive its event loop (a caller passes one embedder to several
        `migrate()` calls, each its own `asyncio.run`): its connections, and the waits of
        its limiter and concurrency, belong to the loop they were made on, so they are made
        again on a new one. Between runs nothing is in flight."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        if self._loop is not None:
            if self._owns_client:  # the old one's connections died with their loop
                self._client = self._new_client()
            if self.concurrency is not None:
                self.concurrency.on_new_loop()
            if self.limiter is not None:
                self.limiter.on_new_loop()
        self._loop = loop

    async def get_json(self, url: str) -> Any:
        """GET `url` once, for what a server says about itself: the decoded body, or None
        when it does not answer that (an error status, a body that is not JSON, no answer
        within LOOKUP_SECONDS). Never retried, and no part of the run's request counts."""
        self._on_this_loop()
        try:
            response = await self._client.get(url, headers=self._headers,
                                              timeout=min(self._timeout, LOOKUP_SECONDS))
            if response.status_code >= 400:
                return None
            return response.json()
        except (httpx.HTTPError, ValueError):
            return None

    async def post_json(self, url: str, payload: Mapping[str, Any], *,
                        tokens: int = 0, texts: int = 1) -> Reply:
        """POST `payload` (of `texts` texts) as JSON and return the decoded body, retrying
        what is retryable.

        Every attempt first waits for a place among the requests in flight (adaptive
        concurrency) and, with a limiter, for budget for one request of `tokens`. A request
        that timed out is sent again with twice the time to answer (at most
        MAX_TIMEOUT_GROWTH times the configured timeout): a server that is only slow gets
        the time it needs.
        """
        self._on_this_loop()
        retries = 0
        timeout = self._timeout
        while True:
            try:
                response = await self._attempt(url, payload, tokens, texts, timeout)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if isinstance(exc, httpx.ConnectError) and not self._answered:
                    raise ProviderUnreachable(
                        f"{self.label}: could not connect to {redact_url(url)} ({exc}). Check "
                        f"{self.setting('base_url')} and that the server is running.",
                        provider=self.label) from exc
                if retries >= self.max_retries:
                    raise ProviderResponseError(
                        f"{self.label}: request failed after {retries} retries: "
                        f"{type(exc).__name__}: {exc}. Check {self.setting('base_url')} and the "
                        "network.",
                        provider=self.label,
                    ) from exc
                retries += 1
                self.metrics.retries[type(exc).__name__] += 1
                if self.concurrency is not None:
                    self.concurrency.overloaded()
                if isinstance(exc, httpx.TimeoutException):
                    timeout = min(timeout * 2, self._timeout * MAX_TIMEOUT_GROWTH)
                await pause(backoff(retries), self._sleep)
                continue
            if response.status_code < 400:
                return Reply(_decode(response, self.label), response.headers, retries)
            error = self._error(response)
            if response.status_code not in RETRY_STATUSES or isinstance(error, ProviderQuotaError):
                raise error
            if retries >= self.max_retries:
                if response.status_code == 429:
                    raise ProviderRateLimited(
                        f"{error} Still rate limited after {retries} retries; lower "
                        f"{self.setting('concurrency')} or raise {self.setting('max_retries')}.",
                        provider=self.label,
                        status=429,
                    )
                raise error
            retries += 1
            self.metrics.retries[f"HTTP {response.status_code}"] += 1
            if self.concurrency is not None:
                self.concurrency.overloaded()
            delay = retry_delay(response.headers, retries)
            if response.status_code == 429 and self.limiter is not None:
                self.limiter.pause(delay)  # everyone waits, not only this request
                self.limiter.refused(limit_kind(response))
            await pause(delay, self._sleep)

    async def _attempt(self, url: str, payload: Mapping[str, Any], tokens: int, texts: int,
                       timeout: float) -> httpx.Response:
        async with self.concurrency.slot() if self.concurrency else contextlib.nullcontext():
            ticket = None
            if self.limiter is not None:
                before = self.limiter.waited
                ticket = await self.limiter.acquire(tokens)
                self.metrics.limiter_wait += self.limiter.waited - before
            started = time.perf_counter()
            try:
                response = await self._client.post(url, json=payload, headers=self._headers,
                                                   timeout=timeout)
            finally:
                if self.limiter is not None:
                    self.limiter.release(ticket)
            seconds = time.perf_counter() - started
        self.metrics.requests += 1
        self._answered = True  # a server is there: connection errors are transient now
        fresh = self._fresh(response)
        if response.status_code == 429:
            self.metrics.throttled += 1
        elif response.status_code < 400:
            self.metrics.latencies.append(seconds)
            if self.concurrency is not None:
                self.concurrency.answered(seconds, texts, fresh=fresh)
        if self.concurrency is not None:
            self.metrics.concurrency = self.concurrency.allowed
            self.metrics.lowest_concurrency = max(1, int(self.concurrency.lowest))
        if self.limiter is not None:
            self.limiter.observe(response.headers)
        return response

    def _fresh(self, response: httpx.Response) -> bool:
        """Whether `response` came on a connection opened for its request (False when the
        transport does not say)."""
        connection = response.extensions.get("network_stream")
        if connection is None or connection in self._connections:
            return False
        self._connections.add(connection)
        return True

    async def validated(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` (a request and the checks on its answer). An answer that fails the
        checks (wrong size, NaN, a missing item, a body that is not JSON) is asked for again
        like a 5xx: the same budget and backoff, counted as retries by cause; the same wrong
        answer SAME_WRONG_ANSWERS times in a row is the server's way, not a fault, and
        stops at once. HTTP errors are not retried here (`post_json` has retried those)."""
        retries = 0
        seen: list[str] = []
        while True:
            try:
                return await attempt()
            except ProviderResponseError as exc:
                if exc.status is not None:
                    raise
                seen.append(str(exc))
                same = len(seen) >= SAME_WRONG_ANSWERS and len(set(seen[-SAME_WRONG_ANSWERS:])) == 1
                if retries >= self.max_retries or same:
                    raise type(exc)(
                        f"{self.label} kept answering wrongly ({len(seen)} answers, the last: "
                        f"{exc}) The server is not serving this model as configured: check "
                        f"{self.setting('model')}, {self.setting('dimensions')} and the server.",
                        provider=self.label) from exc
                retries += 1
                self.metrics.retries["invalid answer"] += 1
                await pause(backoff(retries), self._sleep)

    def settle(self, estimated: int, billed: int | None) -> None:
        """Tell the limiter what the provider billed for a request estimated at `estimated`."""
        if self.limiter is not None:
            self.limiter.settle(estimated, billed)

    def _error(self, response: httpx.Response) -> ProviderError:
        status = response.status_code
        message = error_message(response)
        text = f"{self.label} answered HTTP {status}: {message}"
        if status in (401, 403):
            return ProviderAuthError(
                f"{text}. Check the API key (it is read from the variable named by "
                f"{self.setting('api_key_env')}).",
                provider=self.label,
                status=status,
            )
        if status == 402 or "insufficient_quota" in response.text[:2000]:
            return ProviderQuotaError(
                f"{text}. The account is out of credit or quota; retrying cannot help. "
                "Add credit, then run the same command again.",
                provider=self.label,
                status=status,
            )
        if status in (400, 413, 422) and (too_long := _TOO_LONG.search(message)):
            limit = next((int(n) for n in too_long.groups() if n), None)
            return ProviderResponseError(
                f"{text}. A text is longer than the model takes: set "
                f"{self.setting('max_tokens_per_input')} to its limit"
                f"{f' ({limit})' if limit else ''} "
                "and --long-input to truncate or chunk-mean, then run the same command again "
                "(under long_input: fail, texts over that limit are listed, not sent).",
                provider=self.label, status=status)
        if status in (400, 413, 422) and (batch := _TOO_MANY.search(message)):
            return ProviderResponseError(
                f"{text}. The server takes at most {batch.group(1)} texts a request: set "
                f"{self.setting('batch_size')} to {batch.group(1)} (or less), then run the same "
                "command again.", provider=self.label, status=status)
        if status == 413:
            return ProviderResponseError(
                f"{text}. The request was larger than the server (or a proxy in front of it) "
                f"takes: lower {self.setting('batch_size')}, then run the same command again.",
                provider=self.label, status=status)
        return ProviderResponseError(text + ".", provider=self.label, status=status)

    async def release(self) -> None:
        """The end of a run that leaves the endpoint open: its connections are closed while
        their loop still runs (they cannot outlive it); the next run opens new ones."""
        if self._owns_client:
            await self._client.aclose()
            self._client = self._new_client()

    async def aclose(self) -> None:
        if not self._owns_client:
            return
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            return  # its connections are of a loop that is gone: nothing left to close
        await self._client.aclose()


# how servers refuse an input over the model's token limit: TEI ("`inputs` must have less
# than 512 tokens"), vLLM and OpenAI ("maximum context length is 512 tokens"), Ollama ("the
# input length exceeds the context length")
_TOO_LONG = re.compile(r"less than (\d+) tokens|maximum context length is (\d+)|"
                       r"exceeds the context length", re.IGNORECASE)

# how servers refuse a request of more texts than they take: TEI ("batch size 64 > maximum
# allowed batch size 32") and OpenAI-compatible gateways that copied its wording
_TOO_MANY = re.compile(r"maximum allowed batch size (\d+)", re.IGNORECASE)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's roots, SSL_CERT_FILE/DIR honoured), made
    once per process: loading the roots takes 20 ms, and every embedder opens a client."""
    return httpx.create_ssl_context()


def error_message(response: httpx.Response) -> str:
    """The provider's own error message, whatever envelope it uses, cut at 200 chars, with
    the credentials its request carried masked: a server or a proxy may echo the header it
    refused ("invalid token 'Bearer sk-...'"), and the message is printed."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = extract_message(body) or response.text[:200] or response.reason_phrase
    try:
        sent = response.request.headers
    except RuntimeError:  # a response made without a request
        return message
    for name, value in sent.items():
        if name.lower() in _NOT_SECRET:
            continue
        for secret in sorted({value, value.partition(" ")[2]}, key=len, reverse=True):
            if len(secret) >= 8:
                message = message.replace(secret, "***")
    return message


# request headers that carry no credential: whatever else a request sent (Authorization,
# api-key, x-goog-api-key, a header of provider.headers) is masked in an error message
_NOT_SECRET = frozenset({"accept", "accept-encoding", "connection", "content-length",
                         "content-type", "host", "user-agent"})


def extract_message(body: Any) -> str | None:
    """Find the message in OpenAI, OpenRouter, TEI, Cohere, Voyage or Gemini error bodies."""
    if not isinstance(body, dict):
        return None
    candidate: Any = body.get("error")
    if isinstance(candidate, dict):
        candidate = candidate.get("message") or candidate.get("code")
    candidate = candidate or body.get("message") or body.get("detail")
    return str(candidate)[:200] if candidate else None


def limit_kind(response: httpx.Response) -> str | None:
    """Which limit a 429 is about, "requests" or "tokens", from the error's type or code
    (the loopback, Azure) or its message (OpenAI: "... on tokens per min (TPM) ...")."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict):
        return None
    text = " ".join(str(error.get(k, "")) for k in ("type", "code", "message")).lower()
    if "token" in text or "tpm" in text:
        return "tokens"
    if "request" in text or "rpm" in text:
        return "requests"
    return None


def retry_delay(headers: httpx.Headers, attempt: int) -> float:
    """Seconds to wait before retry number `attempt`: the server's word, else backoff."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return min(max(float(value) * scale, 0.0), MAX_SERVER_WAIT)
        except ValueError:
            continue  # an HTTP date: fall through to backoff
    return backoff(attempt)


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))


def _decode(response: httpx.Response, label: str) -> Any:
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise ProviderResponseError(  # no status: a bad body is asked for again once
            f"{label} answered HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]!r}.",
            provider=label,
        ) from exc


def limiter_for(settings: Any) -> RateLimiter | None:
    """The limiter the provider settings ask for (tier, per-window limits). Without any,
    one that learns the limits from the provider's `x-ratelimit-limit-*` headers (unless
    `adaptive_pacing` is off: then None)."""
    limits = RateLimits(requests=settings.requests_per_minute,
                        tokens=settings.tokens_per_minute,
                        window=settings.rate_window, adaptive=settings.adaptive_pacing)
    if settings.tier is not None:
        tier = RateLimits.for_tier(settings.tier, window=settings.rate_window)
        limits = RateLimits(requests=limits.requests or tier.requests, tokens=limits.tokens,
                            concurrency=tier.concurrency, window=settings.rate_window,
                            adaptive=settings.adaptive_pacing)
    return RateLimiter(limits) if limits.active or limits.adaptive else None
