"""A base for embedding APIs that take JSON and return JSON over HTTP: the request shape
and the parsing differ per provider; sizes, limits, retries and validation do not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
import numpy as np

from ..catalog import ModelSpec, lookup
from ..errors import ConfigError, ProviderResponseError
from ..settings import ProviderSettings
from .base import Embedder, Embedding, InputKind
from .congestion import AdaptiveConcurrency
from .http import HttpEndpoint, Sleep, extract_message, limiter_for
from .tokens import estimate_total
from .usage import EndpointMetrics
from .vectors import check_vectors

__all__ = ["RestEmbedder", "ServerLimits", "whole"]

_R = TypeVar("_R", bound="RestEmbedder")


@dataclass(frozen=True)
class ServerLimits:
    """What a server says it takes, and where it said so (None: it does not say)."""

    where: str
    texts_per_request: int | None = None
    tokens_per_input: int | None = None


def whole(value: Any) -> int | None:
    """`value` when it is a positive whole number (a limit a server reports), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


class RestEmbedder(Embedder):
    """Subclasses set `default_base_url` and implement `url`, `body` and `parse`."""

    default_base_url = ""
    default_batch = 96
    # the server cuts an over-long input at the model's own limit, with its own tokenizer,
    # when the request asks it to (see `server_truncates`)
    cuts_when_asked = False

    def __init__(self, spec: ModelSpec, settings: ProviderSettings, *, ask: int | None = None,
                 client: httpx.AsyncClient | None = None, sleep: Sleep | None = None) -> None:
        self.spec = spec
        self.settings = settings
        self.label = f"{settings.name} ({settings.model})"
        self.base_url = (settings.base_url or self.default_base_url).rstrip("/")
        self._url = self.endpoint()
        self._asked = ask
        self._dims: int | None = ask or (spec.dims or None)
        self._batch_size = min(settings.batch_size or self.default_batch, spec.max_inputs)
        extra = {"sleep": sleep} if sleep is not None else {}
        self._http = HttpEndpoint(label=self.label, setting=settings.setting,
                                  headers=self.headers(),
                                  timeout=settings.timeout, max_retries=settings.max_retries,
                                  client=client, limiter=limiter_for(settings),
                                  concurrency=AdaptiveConcurrency(
                                      settings.concurrency,
                                      adaptive=settings.adaptive_concurrency), **extra)
        self._limits_read = False
        self._notes: list[str] = []

    @classmethod
    def from_settings(cls: type[_R], spec: ModelSpec, settings: ProviderSettings,
                      ask: int | None, client: httpx.AsyncClient | None = None) -> _R:
        """The registry's constructor (`migrator.embedding.construct`)."""
        return cls(spec, settings, ask=ask, client=client)

    @property
    def dims(self) -> int | None:
        return self._dims

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def asked_dims(self) -> int | None:
        return self._asked

    @property
    def server_truncates(self) -> bool:
        """Whether requests ask the server to cut over-long inputs: under
        `long_input: truncate`, where it can. Texts are still cut first at the limit
        migrator knows (a request stays within the server's payload limit), and the server
        cuts what is left over its own limit exactly, where migrator's count for a model it
        has no tokenizer of is a guess."""
        return self.cuts_when_asked and self.settings.long_input == "truncate"

    @property
    def metrics(self) -> EndpointMetrics:
        return self._http.metrics

    def expect_dims(self, dims: int) -> None:
        """The size the preflight probe saw, for a model the catalog lacks (a size asked
        for or known from the catalog is never replaced)."""
        if self._dims is None:
            self._dims = dims

    @property
    def limit_notes(self) -> list[str]:
        return list(self._notes)

    async def server_limits(self) -> ServerLimits | None:
        """What the server says it takes; None where it has no such word (the default)."""
        return None

    async def adopt_server_limits(self) -> None:
        """The server's limits, where it tells them, in place of migrator's guesses: texts
        are cut at its token limit (a model the catalog lacks is otherwise taken to accept
        8,192 tokens) and requests hold no more texts than it takes. A limit given in the
        configuration or the catalog is only ever lowered to the server's, with a note."""
        if self._limits_read:
            return
        self._limits_read = True
        limits = await self.server_limits()
        if limits is not None:
            self._adopt(limits)

    def _adopt(self, limits: ServerLimits) -> None:
        most = limits.texts_per_request
        if most is not None and most < self._batch_size:
            if self.settings.batch_size:
                self._notes.append(
                    f"{self.label} takes at most {most} texts a request ({limits.where}): "
                    f"{self.settings.setting('batch_size')} {self._batch_size} is lowered to "
                    f"{most}.")
            self._batch_size = most
            self.spec = replace(self.spec, max_inputs=min(self.spec.max_inputs, most))
        tokens, known = limits.tokens_per_input, self.spec.max_tokens_per_input
        if tokens is None or tokens == known:
            return
        guessed = (self.settings.max_tokens_per_input is None
                   and lookup(self.settings.name, self.settings.model) is None)
        if not guessed and tokens > known:
            return
        if not guessed:
            given = (self.settings.setting("max_tokens_per_input")
                     if self.settings.max_tokens_per_input
                     else "migrator's catalog")
            self._notes.append(
                f"{self.label} takes at most {tokens} tokens a text ({limits.where}), fewer "
                f"than the {known} of {given}: texts are cut or refused at {tokens}.")
        self.spec = replace(self.spec, max_tokens_per_input=tokens)

    def api_key(self) -> str | None:
        return self.settings.key()

    def headers(self) -> dict[str, str]:
        key = self.api_key()
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return {"Content-Type": "application/json", **auth, **self.settings.headers}

    def endpoint(self) -> str:
        """The URL requests go to, checked once when the embedder is built."""
        if not self.base_url:
            raise ConfigError(f"Provider {self.settings.name!r} needs "
                              f"{self.settings.setting('base_url')}, the server's address.")
        return self.url()

    def url(self) -> str:
        raise NotImplementedError

    def body(self, texts: Sequence[str], kind: InputKind) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, body: Any, headers: httpx.Headers, count: int
              ) -> tuple[np.ndarray, int | None]:
        """(vectors in input order, billed tokens or None)."""
        raise NotImplementedError

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        if len(texts) > self._batch_size:
            raise ValueError(f"{len(texts)} texts exceed the batch size {self._batch_size}")
        return await self._http.validated(lambda: self._request(texts, kind))

    async def _request(self, texts: Sequence[str], kind: InputKind) -> Embedding:
        estimated = estimate_total(texts)
        payload = {**self.body(texts, kind), **self.settings.options}
        reply = await self._http.post_json(self._url, payload, tokens=estimated,
                                           texts=len(texts))
        vectors, tokens = self.parse(reply.body, reply.headers, len(texts))
        self._http.settle(estimated, tokens)
        if self._dims is None:
            self._dims = int(vectors.shape[1])
        vectors = check_vectors(vectors, expected=len(texts), dims=self._dims,
                                provider=self.label)
        if tokens is None:
            return Embedding(vectors, estimated, tokens_estimated=True, retries=reply.retries)
        return Embedding(vectors, tokens, retries=reply.retries)

    def matrix(self, rows: Any, count: int) -> np.ndarray:
        """Rows of numbers as a float32 matrix, or a clear error."""
        if not isinstance(rows, list) or len(rows) != count:
            got = len(rows) if isinstance(rows, list) else "no"
            raise ProviderResponseError(f"{self.label} returned {got} embeddings for {count} "
                                        "inputs.", provider=self.label)
        try:
            return np.asarray(rows, dtype=np.float32).reshape(count, -1)
        except (TypeError, ValueError) as exc:
            raise ProviderResponseError(f"{self.label} returned embeddings that are not lists "
                                        "of numbers of one length.", provider=self.label) from exc

    def missing(self, body: Any, what: str) -> ProviderResponseError:
        message = extract_message(body) or repr(body)[:200]
        return ProviderResponseError(f"{self.label} answered without {what}: {message}.",
                                     provider=self.label)

    async def release(self) -> None:
        await self._http.release()

    async def aclose(self) -> None:
        await self._http.aclose()
