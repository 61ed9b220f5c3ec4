"""Cohere, Voyage, Mistral, Gemini, Ollama (native) and TEI (native) over MockTransport:
the exact request each sends, and how each response is read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from migrator import (
    ConfigError,
    DimensionMismatch,
    ProviderAuthError,
    ProviderResponseError,
    ProviderSettings,
)
from migrator.embedding import construct, model_spec
from migrator.embedding.sizing import decide

KEY = "test-key-not-real"


def build(name: str, model: str, handler: Any, **settings: Any) -> Any:
    values = {"name": name, "model": model, "api_key": SecretStr(KEY), **settings}
    config = ProviderSettings(**values)
    spec = model_spec(config)
    ask = decide(spec, config.dimensions).ask
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return construct(spec, config, ask, client)


class Recorder:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response

    @property
    def sent(self) -> Any:
        return json.loads(self.requests[0].content)


def embed(embedder: Any, texts: list[str], kind: str = "document") -> Any:
    return asyncio.run(embedder.embed(texts, kind=kind))


def test_cohere() -> None:
    rows = [[1.0] + [0.0] * 255, [0.0, 1.0] + [0.0] * 254]
    app = Recorder(httpx.Response(200, json={
        "id": "x", "embeddings": {"float": rows},
        "meta": {"billed_units": {"input_tokens": 9}}}))
    result = embed(build("cohere", "embed-v4.0", app, dimensions=256), ["a", "b"], "query")
    assert str(app.requests[0].url) == "https://api.cohere.com/v2/embed"
    assert app.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert app.sent == {"model": "embed-v4.0", "texts": ["a", "b"], "input_type": "search_query",
                        "embedding_types": ["float"], "truncate": "NONE",
                        "output_dimension": 256}
    assert result.tokens == 9
    np.testing.assert_array_equal(result.vectors, rows)


def test_cohere_sizes_and_documents() -> None:
    app = Recorder(httpx.Response(200, json={"embeddings": {"float": [[0.5] * 1024]},
                                             "meta": {}}))
    result = embed(build("cohere", "embed-english-v3.0", app), ["a"])
    assert app.sent["input_type"] == "search_document" and "output_dimension" not in app.sent
    assert result.vectors.shape == (1, 1024) and result.tokens_estimated


def test_voyage() -> None:
    app = Recorder(httpx.Response(200, json={
        "object": "list", "data": [{"embedding": [0.0, 1.0], "index": 1},
                                   {"embedding": [1.0, 0.0], "index": 0}],
        "usage": {"total_tokens": 5}}))
    with pytest.raises(DimensionMismatch, match="2 values, expected 1024"):
        embed(build("voyage", "voyage-3.5", app), ["a", "b"])
    assert str(app.requests[0].url) == "https://api.voyageai.com/v1/embeddings"
    assert app.sent == {"model": "voyage-3.5", "input": ["a", "b"], "input_type": "document",
                        "truncation": False}


def test_voyage_reorders_by_index_and_asks_for_a_size() -> None:
    vectors = [[float(i == j) for j in range(256)] for i in range(2)]
    app = Recorder(httpx.Response(200, json={
        "data": [{"embedding": vectors[1], "index": 1}, {"embedding": vectors[0], "index": 0}],
        "usage": {"total_tokens": 5}}))
    result = embed(build("voyage", "voyage-3.5", app, dimensions=256), ["a", "b"], "query")
    assert app.sent["output_dimension"] == 256 and app.sent["input_type"] == "query"
    np.testing.assert_array_equal(result.vectors, vectors)
    assert result.tokens == 5


def test_mistral() -> None:
    app = Recorder(httpx.Response(200, json={
        "data": [{"embedding": [0.6] * 1024, "index": 0}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3}}))
    result = embed(build("mistral", "mistral-embed", app), ["a"])
    assert str(app.requests[0].url) == "https://api.mistral.ai/v1/embeddings"
    assert app.sent == {"model": "mistral-embed", "input": ["a"]}
    assert result.tokens == 3
    app = Recorder(httpx.Response(200, json={"data": [{"embedding": [0.1] * 512, "index": 0}],
                                             "usage": {"prompt_tokens": 1}}))
    embed(build("mistral", "codestral-embed", app, dimensions=512), ["a"])
    assert app.sent["output_dimension"] == 512


def test_gemini_task_types_sizes_and_normalisation() -> None:
    app = Recorder(httpx.Response(200, json={"embeddings": [{"values": [3.0, 4.0] + [0.0] * 766},
                                                            {"values": [0.0, 2.0] + [0.0] * 766}]}))
    result = embed(build("gemini", "gemini-embedding-001", app, dimensions=768), ["a", "b"],
                   "query")
    request = app.requests[0]
    assert str(request.url) == ("https://generativelanguage.googleapis.com/v1beta/models/"
                                "gemini-embedding-001:batchEmbedContents")
    assert request.headers["x-goog-api-key"] == KEY and "authorization" not in request.headers
    assert app.sent["requests"][0] == {"model": "models/gemini-embedding-001",
                                       "content": {"parts": [{"text": "a"}]},
                                       "taskType": "RETRIEVAL_QUERY",
                                       "outputDimensionality": 768}
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(result.vectors[0][:2], [0.6, 0.8], rtol=1e-6)
    assert result.tokens_estimated


def test_ollama_native() -> None:
    app = Recorder(httpx.Response(200, json={"model": "nomic", "embeddings": [[0.1, 0.2]],
                                             "prompt_eval_count": 4}))
    result = embed(build("ollama", "nomic-embed-text", app, api_key=None), ["a"])
    assert str(app.requests[0].url) == "http://localhost:11434/api/embed"
    assert app.sent == {"model": "nomic-embed-text", "input": ["a"], "truncate": False}
    assert result.tokens == 4 and result.vectors.shape == (1, 2)
    # long_input: truncate is the server's own cut, at the model's context (exact)
    embed(build("ollama", "nomic-embed-text", app, api_key=None, long_input="truncate"), ["a"])
    assert json.loads(app.requests[-1].content)["truncate"] is True


@pytest.mark.parametrize(("name", "model", "field", "cut", "kept"), [
    ("tei", "bge-small", "truncate", True, False),
    ("ollama", "nomic-embed-text", "truncate", True, False),
    ("cohere", "embed-english-v3.0", "truncate", "END", "NONE"),
    ("voyage", "voyage-3.5", "truncation", True, False),
])
def test_long_input_truncate_asks_the_server_to_cut_exactly(
        name: str, model: str, field: str, cut: Any, kept: Any) -> None:
    """Migrator counts tokens for these models by characters: its cut could leave a text
    over the real limit, which the server then refused (it was always asked not to cut)."""
    app = Recorder(httpx.Response(500))
    for policy, expected in (("truncate", cut), ("fail", kept), ("chunk-mean", kept)):
        embedder = build(name, model, app, base_url="http://server", long_input=policy,
                         max_retries=0)
        with pytest.raises(ProviderResponseError):
            embed(embedder, ["a"])
        assert json.loads(app.requests[-1].content)[field] == expected


def test_the_limits_given_override_the_catalog() -> None:
    listed = model_spec(ProviderSettings(name="openai", model="text-embedding-3-small",
                                         max_tokens_per_input=512, price_per_mtok=0.01))
    assert (listed.max_tokens_per_input, listed.price_per_mtok, listed.dims) == (512, 0.01, 1536)
    unlisted = model_spec(ProviderSettings(name="tei", model="bge-small",
                                           max_tokens_per_input=512))
    assert unlisted.max_tokens_per_input == 512 and unlisted.price_per_mtok is None


def test_tei_native_reads_tokens_from_the_header() -> None:
    app = Recorder(httpx.Response(200, json=[[0.1, 0.2], [0.3, 0.4]],
                                  headers={"x-compute-tokens": "11"}))
    result = embed(build("tei", "bge-small", app, base_url="http://tei:8080"), ["a", "b"])
    assert str(app.requests[0].url) == "http://tei:8080/embed"
    assert app.sent == {"inputs": ["a", "b"], "truncate": False, "normalize": True}
    assert result.tokens == 11


@pytest.mark.parametrize(("name", "model", "status", "body", "error", "text"), [
    ("cohere", "embed-v4.0", 400, {"id": "x", "message": "too many tokens: 600 > 512"},
     ProviderResponseError, "HTTP 400: too many tokens"),
    ("voyage", "voyage-3.5", 401, {"detail": "Provided API key is invalid."},
     ProviderAuthError, "HTTP 401: Provided API key is invalid"),
    ("gemini", "gemini-embedding-001", 400,
     {"error": {"code": 400, "message": "at most 100 requests can be in one batch",
                "status": "INVALID_ARGUMENT"}}, ProviderResponseError, "at most 100 requests"),
    ("tei", "bge", 422, {"error": "`inputs` must have less than 512 tokens",
                         "error_type": "Validation"}, ProviderResponseError,
     "must have less than 512 tokens"),
])
def test_error_envelopes(name: str, model: str, status: int, body: Any, error: type,
                         text: str) -> None:
    app = Recorder(httpx.Response(status, json=body))
    with pytest.raises(error, match=text) as caught:
        embed(build(name, model, app, **({"base_url": "http://tei"} if name == "tei" else {})),
              ["a"])
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("name", ["cohere", "voyage", "mistral", "gemini"])
def test_keys_are_required(name: str) -> None:
    model = {"cohere": "embed-v4.0", "voyage": "voyage-3.5", "mistral": "mistral-embed",
             "gemini": "gemini-embedding-001"}[name]
    with pytest.raises(ConfigError, match="No API key"):
        config = ProviderSettings(name=name, model=model)  # type: ignore[arg-type]
        construct(model_spec(config), config, None, None)


@pytest.mark.parametrize(("name", "body", "limit"), [
    ("tei", {"error": "Input validation error: `inputs` must have less than 512 tokens. "
             "Given: 613", "error_type": "Validation"}, " (512)"),
    ("openai-compatible", {"object": "error", "message": "This model's maximum context length "
                           "is 512 tokens. However, you requested 600 tokens in the input for "
                           "embedding generation.", "type": "BadRequestError", "code": 400},
     " (512)"),
    ("ollama", {"error": "the input length exceeds the context length"}, ""),
])
def test_a_refused_over_long_input_says_what_to_set(name: str, body: Any, limit: str) -> None:
    app = Recorder(httpx.Response(422 if name == "tei" else 400, json=body))
    with pytest.raises(ProviderResponseError) as refused:
        embed(build(name, "m", app, base_url="http://server"), ["a"])
    assert (f"A text is longer than the model takes: set provider.max_tokens_per_input to its "
            f"limit{limit} and --long-input to truncate or chunk-mean") in str(refused.value)


def test_other_refusals_get_no_advice_on_long_inputs() -> None:
    app = Recorder(httpx.Response(400, json={"error": {
        "message": "Requested 400000 tokens, max 300000 tokens per request"}}))
    with pytest.raises(ProviderResponseError) as refused:
        embed(build("openai-compatible", "m", app, base_url="http://server"), ["a"])
    assert "max_tokens_per_input" not in str(refused.value)
