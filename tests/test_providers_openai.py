"""The OpenAI family over httpx.MockTransport: exact requests, parsing, errors, retries."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from migrator import (
    ConfigError,
    ProviderAuthError,
    ProviderQuotaError,
    ProviderRateLimited,
    ProviderResponseError,
    ProviderSettings,
)
from migrator.embedding import build_embedder, model_spec
from migrator.embedding.http import HttpEndpoint, tls_context
from migrator.embedding.openai import OpenAIEmbedder
from migrator.embedding.sizing import decide
from migrator.errors import ProviderUnreachable

KEY = "sk-test-not-a-real-key-0123456789"


class App:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer

    def json(self, n: int = 0) -> Any:
        return json.loads(self.requests[n].content)


def ok(vectors: list[list[float]], *, b64: bool = False, order: list[int] | None = None,
       tokens: int | None = 7) -> httpx.Response:
    order = order if order is not None else list(range(len(vectors)))
    data = []
    for i in order:
        v = vectors[i]
        emb: Any = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() if b64 else v
        data.append({"object": "embedding", "index": i, "embedding": emb})
    body: dict[str, Any] = {"object": "list", "data": data, "model": "m"}
    if tokens is not None:
        body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return httpx.Response(200, json=body)


async def _no_sleep(seconds: float) -> None:
    _no_sleep.waits.append(seconds)  # type: ignore[attr-defined]


def embedder(app: App, **settings: Any) -> OpenAIEmbedder:
    _no_sleep.waits = []  # type: ignore[attr-defined]
    values = {"name": "openai", "model": "text-embedding-3-small", "api_key": SecretStr(KEY),
              **settings}
    config = ProviderSettings(**values)
    client = httpx.AsyncClient(transport=httpx.MockTransport(app))
    spec = model_spec(config)
    ask = decide(spec, config.dimensions, send_dimensions=config.send_dimensions).ask
    return OpenAIEmbedder(spec, config, ask=ask, client=client, sleep=_no_sleep)


def embed(e: OpenAIEmbedder, texts: list[str], **kw: Any) -> Any:
    return asyncio.run(e.embed(texts, **kw))


def test_exact_request_for_openai() -> None:
    app = App(ok([[1.0, 0.0], [0.0, 1.0]], b64=True))
    e = embedder(app, dimensions=2, encoding_format="base64")
    result = embed(e, ["first", "second"])

    request = app.requests[0]
    assert str(request.url) == "https://api.openai.com/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert app.json() == {"model": "text-embedding-3-small", "input": ["first", "second"],
                          "encoding_format": "base64", "dimensions": 2}
    np.testing.assert_array_equal(result.vectors, [[1, 0], [0, 1]])
    assert result.vectors.dtype == np.float32
    assert (result.tokens, result.tokens_estimated) == (7, False)


def test_float_response_and_reordering_by_index() -> None:
    vectors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    app = App(ok(vectors, order=[2, 0, 1]))
    e = embedder(app, dimensions=3, encoding_format="float")
    result = embed(e, ["a", "b", "c"])
    np.testing.assert_array_equal(result.vectors, vectors)
    assert app.json()["encoding_format"] == "float"


def test_base64_little_endian_float32_decoding() -> None:
    values = [0.25, -1.5, 3.0, 1e-3]
    app = App(ok([values], b64=True))
    result = embed(embedder(app, dimensions=4), ["x"])
    np.testing.assert_array_equal(result.vectors[0], np.asarray(values, dtype=np.float32))


@pytest.mark.parametrize(("embeddings", "message"), [
    (["AACAPg==", "AACAP!=="], "base64 that does not decode"),  # a stray character
    (["AACAPg==", "AACA"], "different or broken lengths"),  # 4 values and 2.25
    (["AACAPg==", "AACAPgAAgD4="], "different or broken lengths"),  # 1 value and 2
    (["AACAPg==", None], "without an embedding"),
    (["AACAPg==", [0.25]], None),  # base64 and a list: both read
])
def test_a_malformed_vector_is_an_invalid_answer(embeddings: list[Any],
                                                 message: str | None) -> None:
    body = {"data": [{"index": i, "embedding": e} for i, e in enumerate(embeddings)]}
    e = embedder(App(httpx.Response(200, json=body)), dimensions=1, max_retries=0)
    if message is None:
        np.testing.assert_array_equal(embed(e, ["a", "b"]).vectors, [[0.25], [0.25]])
        return
    with pytest.raises(ProviderResponseError, match=message):
        embed(e, ["a", "b"])


def test_dimensions_not_sent_when_not_configured_or_unsupported() -> None:
    app = App(ok([[0.0] * 1536]))
    embed(embedder(app), ["x"])
    assert "dimensions" not in app.json()

    app = App(ok([[0.0] * 1536]))
    embed(embedder(app, model="text-embedding-ada-002", dimensions=1536), ["x"])
    assert "dimensions" not in app.json()


def test_impossible_dimensions_are_refused_before_any_request() -> None:
    with pytest.raises(ConfigError, match="'text-embedding-ada-002' .* produces 1536-dim.*"
                                          "no output-size option.*asks for 512"):
        embedder(App(ok([[0.0]])), model="text-embedding-ada-002", dimensions=512)
    with pytest.raises(ConfigError, match="sizes it can produce: 1-1536.*asks for 4000.*pad"):
        embedder(App(ok([[0.0]])), dimensions=4000)


def test_unknown_openai_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="Unknown openai model 'text-embedding-4'"):
        embedder(App(ok([[0.0]])), model="text-embedding-4")


def test_batches_follow_the_configured_size_capped_by_the_model() -> None:
    e = embedder(App(ok([[0.0]])), batch_size=5000)
    assert e.batch_size == 2048
    with pytest.raises(ValueError):
        embed(embedder(App(ok([[0.0]])), batch_size=2), ["a", "b", "c"])


def test_azure_deployment_url_and_api_key_header() -> None:
    app = App(ok([[0.5, 0.5]]))
    e = embedder(app, name="azure", base_url="https://res.openai.azure.com/",
                 deployment="emb-small", api_version="2024-10-21", dimensions=2)
    embed(e, ["x"])
    request = app.requests[0]
    assert str(request.url) == ("https://res.openai.azure.com/openai/deployments/emb-small/"
                                "embeddings?api-version=2024-10-21")
    assert request.headers["api-key"] == KEY
    assert "authorization" not in request.headers
    assert app.json()["model"] == "emb-small"


def test_azure_v1_url() -> None:
    app = App(ok([[0.5, 0.5]]))
    embed(embedder(app, name="azure", base_url="https://res.openai.azure.com",
                   deployment="emb", dimensions=2), ["x"])
    assert str(app.requests[0].url) == "https://res.openai.azure.com/openai/v1/embeddings"


def test_openrouter_passes_routing_options_and_reads_errors_sent_with_200() -> None:
    app = App(httpx.Response(200, json={"error": {"code": 502, "message": "upstream down"}}))
    e = embedder(app, name="openrouter", model="openai/text-embedding-3-small", dimensions=8,
                 options={"provider": {"allow_fallbacks": False}},
                 headers={"X-OpenRouter-Title": "migrator"})
    with pytest.raises(ProviderResponseError, match="without embeddings: upstream down"):
        embed(e, ["x"])
    assert str(app.requests[0].url) == "https://openrouter.ai/api/v1/embeddings"
    assert app.json()["provider"] == {"allow_fallbacks": False}
    assert app.requests[0].headers["x-openrouter-title"] == "migrator"


def test_openai_compatible_needs_a_base_url_and_no_key() -> None:
    with pytest.raises(ConfigError, match="needs provider.base_url"):
        embedder(App(ok([[0.0]])), name="openai-compatible", model="bge", api_key=None)
    app = App(ok([[1.0, 2.0, 2.0]], tokens=None))
    e = embedder(app, name="openai-compatible", model="bge", api_key=None,
                 base_url="http://127.0.0.1:9/v1")
    assert e.dims is None
    result = embed(e, ["abcdef"])
    assert e.dims == 3 and "authorization" not in app.requests[0].headers
    assert result.tokens_estimated and result.tokens >= 1


@pytest.mark.parametrize("name", ["openai", "azure", "openrouter"])
def test_missing_api_key_names_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match="No API key.*set the environment variable"):
        config = ProviderSettings(name=name, model="text-embedding-3-small",
                                  base_url="https://x.example")
        build_embedder(config)


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (400, {"error": {"message": "This model's maximum context length is 8192 tokens",
                         "type": "invalid_request_error"}}, ProviderResponseError,
         "HTTP 400: This model's maximum context length is 8192 tokens"),
        (401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
         ProviderAuthError, "HTTP 401: Incorrect API key provided. Check the API key"),
        (403, {"error": {"message": "Country not supported"}}, ProviderAuthError,
         "HTTP 403: Country not supported"),
        (404, {"error": {"message": "The model does not exist"}}, ProviderResponseError,
         "HTTP 404: The model does not exist"),
        (429, {"error": {"message": "You exceeded your current quota",
                         "code": "insufficient_quota"}}, ProviderQuotaError,
         "retrying cannot help"),
        (402, {"error": {"code": 402, "message": "Insufficient credits"}}, ProviderQuotaError,
         "HTTP 402: Insufficient credits"),
    ],
)
def test_errors_are_not_retried_and_name_provider_model_and_message(
        status: int, body: Any, error: type[Exception], text: str) -> None:
    app = App(httpx.Response(status, json=body))
    with pytest.raises(error) as caught:
        embed(embedder(app, dimensions=2), ["x"])
    message = str(caught.value)
    assert "openai (text-embedding-3-small)" in message and text in message
    assert KEY not in message
    assert len(app.requests) == 1


@pytest.mark.parametrize(("settings", "echoed"), [
    ({}, f"invalid token 'Bearer {KEY}'"),  # a proxy that echoes the header it refused
    ({}, f"no such key {KEY}"),
    ({"name": "azure", "base_url": "https://x.openai.azure.com", "deployment": "d"},
     f"Access denied: key {KEY} is not valid for this resource"),
    ({"headers": {"X-Gateway-Token": "gw-secret-value-42"}}, "gateway token "
     "gw-secret-value-42 expired"),
])
def test_a_provider_echoing_a_credential_does_not_get_it_printed(
        settings: dict[str, Any], echoed: str) -> None:
    app = App(httpx.Response(401, json={"error": {"message": echoed}}))
    with pytest.raises(ProviderAuthError) as caught:
        embed(embedder(app, **settings), ["x"])
    message = str(caught.value)
    assert KEY not in message and "gw-secret-value-42" not in message
    assert "***" in message and "HTTP 401" in message


def test_429_and_5xx_are_retried_honouring_retry_after() -> None:
    app = App(
        httpx.Response(429, headers={"retry-after-ms": "250"},
                       json={"error": {"message": "Rate limit reached",
                                       "code": "rate_limit_exceeded"}}),
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"message": "slow"}}),
        httpx.Response(503, text="upstream unavailable"),
        ok([[1.0, 0.0]]),
    )
    result = embed(embedder(app, dimensions=2), ["x"])
    assert len(app.requests) == 4 and result.retries == 3
    waits = _no_sleep.waits  # type: ignore[attr-defined]
    assert waits[:2] == [0.25, 2.0] and 0 <= waits[2] <= 2.0


def test_rate_limit_that_never_clears_stops_with_advice() -> None:
    app = App(httpx.Response(429, json={"error": {"message": "Rate limit reached"}}))
    with pytest.raises(ProviderRateLimited, match="after 2 retries; lower provider.concurrency"):
        embed(embedder(app, dimensions=2, max_retries=2), ["x"])
    assert len(app.requests) == 3


def test_timeouts_are_retried_then_reported() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    app = App(timeout, ok([[1.0, 0.0]]))
    assert embed(embedder(app, dimensions=2), ["x"]).retries == 1
    app = App(timeout)
    with pytest.raises(ProviderResponseError, match="failed after 1 retries: ReadTimeout"):
        embed(embedder(app, dimensions=2, max_retries=1), ["x"])


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (ok([[1.0, 0.0]]), "returned 1 embeddings for 2 inputs"),
        (httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 0.0]},
                                            {"index": 0, "embedding": [0.0, 1.0]}]}),
         "repeated or out-of-range index 0"),
        (httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 0.0, 0.0]},
                                            {"index": 1, "embedding": [0.0, 1.0, 0.0]}]}),
         "vectors of 3 values, expected 2"),
        (httpx.Response(200, content=b'{"data": [{"index": 0, "embedding": [1.0, NaN]}, '
                                     b'{"index": 1, "embedding": [0.0, 1.0]}]}'),
         "NaN or infinite"),
        (httpx.Response(200, content=b"<html>bad gateway</html>"), "not JSON"),
    ],
)
def test_bad_responses_are_rejected_at_the_boundary(response: httpx.Response,
                                                    message: str) -> None:
    with pytest.raises(ProviderResponseError, match=message):
        embed(embedder(App(response), dimensions=2), ["a", "b"])


def test_no_server_at_the_base_url_fails_at_once_naming_it() -> None:
    """Issue 11.16: connection refused was retried 10 times (78 s). An endpoint that has
    never answered is a wrong base_url, not a transient fault."""
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    e = embedder(App(refuse), base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ProviderUnreachable, match="could not connect to http://127.0.0.1:9/v1"):
        embed(e, ["a"])
    assert _no_sleep.waits == []  # type: ignore[attr-defined]


def test_a_dropped_connection_after_the_first_answer_is_retried() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    e = embedder(App(ok([[0.6, 0.8]]), refuse, ok([[0.6, 0.8]])), dimensions=2)
    embed(e, ["a"])
    assert embed(e, ["b"]).vectors.shape == (1, 2)
    assert len(_no_sleep.waits) == 1  # type: ignore[attr-defined]


def test_every_endpoint_verifies_tls_with_one_context_loaded_once() -> None:
    """Loading the CA roots took 20 ms a client; each embedder opens one."""
    first = HttpEndpoint(label="a", headers={}, timeout=5, max_retries=0)
    second = HttpEndpoint(label="b", headers={}, timeout=5, max_retries=0)
    contexts = [e._client._transport._pool._ssl_context for e in (first, second)]  # type: ignore[attr-defined]
    assert contexts[0] is contexts[1] is tls_context()
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
    for endpoint in (first, second):
        asyncio.run(endpoint.aclose())
