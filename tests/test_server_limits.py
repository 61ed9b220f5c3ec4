"""A self-hosted server's own word on its limits (TEI's `GET /info`, vLLM's `GET /models`),
read once before the first text, over MockTransport: what is adopted, what is only ever
lowered, and what a server that says nothing leaves as configured."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from migrator import (
    CollectionSettings,
    ConfigError,
    MigrationSettings,
    ProviderError,
    ProviderResponseError,
    ProviderSettings,
    Settings,
    ingest,
    migrate,
)
from migrator.embedding import build_embedder
from migrator.store import QdrantStore

from .conftest import make_collection
from .loopback import LoopbackServer

VLLM_MODELS = {"object": "list", "data": [
    {"id": "BAAI/bge-base-en-v1.5", "object": "model", "owned_by": "vllm",
     "max_model_len": 512},
    {"id": "other", "object": "model", "owned_by": "vllm", "max_model_len": 32768}]}


class Server:
    """Answers GETs from `pages` (path -> JSON body; 404 otherwise) and records them."""

    def __init__(self, pages: dict[str, Any], embed: httpx.Response | None = None) -> None:
        self.pages = pages
        self.embed = embed
        self.gets: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            return self.embed or httpx.Response(500)
        self.gets.append(request)
        page = self.pages.get(request.url.path)
        return httpx.Response(200, json=page) if page is not None else httpx.Response(404)


def adopted(server: Server, **settings: Any) -> Any:
    values = {"name": "openai-compatible", "model": "BAAI/bge-base-en-v1.5",
              "base_url": "http://vllm:8000/v1", **settings}
    embedder = build_embedder(ProviderSettings(**values),
                              client=httpx.AsyncClient(transport=httpx.MockTransport(server)))
    asyncio.run(embedder.adopt_server_limits())
    return embedder


def test_vllm_lists_the_models_token_limit() -> None:
    server = Server({"/v1/models": VLLM_MODELS})
    embedder = adopted(server, api_key_env="VLLM_KEY_UNSET")
    assert embedder.spec.max_tokens_per_input == 512 and embedder.limit_notes == []
    assert [str(r.url) for r in server.gets] == ["http://vllm:8000/v1/models"]
    asyncio.run(embedder.adopt_server_limits())
    assert len(server.gets) == 1  # read once


def test_a_limit_given_is_only_lowered_to_the_servers_and_says_so() -> None:
    lowered = adopted(Server({"/v1/models": VLLM_MODELS}), max_tokens_per_input=1024)
    assert lowered.spec.max_tokens_per_input == 512
    assert lowered.limit_notes == [
        "openai-compatible (BAAI/bge-base-en-v1.5) takes at most 512 tokens a text (its "
        "/models), fewer than the 1024 of provider.max_tokens_per_input: texts are cut or "
        "refused at 512."]
    kept = adopted(Server({"/v1/models": VLLM_MODELS}), max_tokens_per_input=256)
    assert kept.spec.max_tokens_per_input == 256 and kept.limit_notes == []


@pytest.mark.parametrize("pages", [
    {},  # no /models at all (404)
    {"/v1/models": {"object": "list", "data": [{"id": "other", "max_model_len": 64}]}},
    {"/v1/models": {"data": [{"id": "BAAI/bge-base-en-v1.5"}]}},  # OpenAI's shape: no limit
    {"/v1/models": {"data": [{"id": "BAAI/bge-base-en-v1.5", "max_model_len": "512"}]}},
    {"/v1/models": ["not", "a", "listing"]},
])
def test_a_server_that_does_not_say_leaves_the_configuration(pages: dict[str, Any]) -> None:
    embedder = adopted(Server(pages), batch_size=100)
    assert (embedder.spec.max_tokens_per_input, embedder.batch_size) == (8192, 100)
    assert embedder.limit_notes == []


def test_an_unreachable_description_is_no_error() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    embedder = adopted(down)  # type: ignore[arg-type]
    assert embedder.spec.max_tokens_per_input == 8192


def test_openai_itself_is_not_asked() -> None:
    server = Server({"/v1/models": VLLM_MODELS})
    embedder = adopted(server, name="openai", model="text-embedding-3-small", base_url=None,
                       api_key="sk-test-not-real")
    assert server.gets == [] and embedder.spec.max_tokens_per_input == 8192


def test_tei_info_gives_the_batch_and_token_limits() -> None:
    info = {"model_id": "BAAI/bge-small-en-v1.5", "max_input_length": 512,
            "max_client_batch_size": 16, "max_batch_tokens": 16384}
    server = Server({"/info": info})
    plain = adopted(server, name="tei", model="bge-small", base_url="http://tei:8080")
    assert (plain.batch_size, plain.spec.max_tokens_per_input) == (16, 512)
    assert plain.limit_notes == []  # the default batch, not one given: nothing to say
    assert str(server.gets[0].url) == "http://tei:8080/info"
    roomy = adopted(Server({"/info": {**info, "max_client_batch_size": 256}}), name="tei",
                    model="bge-small", base_url="http://tei:8080", batch_size=64)
    assert roomy.batch_size == 64  # a server taking more is sent what was configured


def test_a_refused_batch_says_what_to_set() -> None:
    server = Server({}, embed=httpx.Response(422, json={
        "error": "batch size 64 > maximum allowed batch size 32", "error_type": "Validation"}))
    embedder = adopted(server, name="tei", model="bge-small", base_url="http://tei:8080")
    with pytest.raises(ProviderResponseError) as refused:
        asyncio.run(embedder.embed(["a"]))
    assert ("The server takes at most 32 texts a request: set provider.batch_size to 32 (or "
            "less), then run the same command again.") in str(refused.value)


def test_a_request_too_large_for_a_proxy_says_what_to_lower() -> None:
    """nginx in front of a server refuses a body over its client_max_body_size with 413
    and a page of HTML: the error said only that."""
    page = "<html><head><title>413 Request Entity Too Large</title></head></html>"
    server = Server({}, embed=httpx.Response(413, text=page))
    embedder = adopted(server)
    with pytest.raises(ProviderResponseError) as refused:
        asyncio.run(embedder.embed(["a"]))
    assert ("larger than the server (or a proxy in front of it) takes: lower "
            "provider.batch_size") in str(refused.value)


def test_a_vllm_servers_token_limit_cuts_the_texts_it_would_refuse(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """Over real HTTP: a model migrator does not know was taken to accept 8,192 tokens, so
    under long_input: truncate its long texts went out whole and vLLM refused them (it
    cuts nothing unless asked); its `/models` says 16, and migrator cuts there."""
    def text(i: int, _: str) -> dict[str, Any]:
        return {"text": " ".join(f"w{i}x{j}" for j in range(6 if i % 2 else 40))}

    make_collection(memory_store.client, "docs", n=20, payload=text)
    with LoopbackServer(dims=16, max_model_len={"bge": 16}) as server:
        config = Settings(
            provider=ProviderSettings(name="openai-compatible", model="bge",
                                      base_url=server.url, long_input="truncate"),
            collections=[CollectionSettings(name="docs", target="docs_bge")],
            migration=MigrationSettings(state_dir=tmp_path / "state"))
        result = migrate(config, source_store=memory_store)
        longest = max(len(t.split()) for body in server.bodies for t in body["input"])
    assert result.collections[0].target_count == 20 and longest <= 16
    assert server.answered == server.requests  # not one refused


def test_a_fallback_servers_limits_bound_what_any_endpoint_is_sent() -> None:
    info = {"model_id": "BAAI/bge-small-en-v1.5", "max_client_batch_size": 32,
            "max_input_length": 512}
    by_host = {"tei-a": Server({"/info": info}),
               "tei-b": Server({"/info": {**info, "max_client_batch_size": 8,
                                          "max_input_length": 256}})}
    transport = httpx.MockTransport(lambda request: by_host[request.url.host](request))
    settings = ProviderSettings(
        name="tei", model="bge-small", base_url="http://tei-a:8080", batch_size=16,
        fallbacks=[ProviderSettings(name="tei", model="bge-small",
                                    base_url="http://tei-b:8080", batch_size=16)])
    embedder = build_embedder(settings, client=httpx.AsyncClient(transport=transport))
    asyncio.run(embedder.adopt_server_limits())
    assert [len(server.gets) for server in by_host.values()] == [1, 1]
    assert embedder.batch_size == 8 and embedder.spec.max_tokens_per_input == 256
    assert embedder.limit_notes == [
        "fallback 1: tei (bge-small) takes at most 8 texts a request (its /info): "
        "provider.fallbacks.0.batch_size 16 is lowered to 8."]  # its own setting


def test_a_fallbacks_refusal_names_the_fallbacks_own_setting() -> None:
    """A fallback's refusal told the user to change provider.batch_size, the primary's; the
    fallback has a batch_size of its own."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "primary":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(413, json={"error": {
            "message": "batch size 4 > maximum allowed batch size 2"}})

    settings = ProviderSettings(
        name="openai-compatible", model="bge", base_url="http://primary:8000/v1",
        max_retries=0, fallbacks=[ProviderSettings(
            name="openai-compatible", model="bge", base_url="http://backup:8000/v1",
            max_retries=0)])
    embedder = build_embedder(settings, client=httpx.AsyncClient(
        transport=httpx.MockTransport(answer)))
    with pytest.raises(ProviderError, match=r"set provider\.fallbacks\.0\.batch_size to 2"):
        asyncio.run(embedder.embed(["a", "b", "c", "d"]))


def test_the_source_models_settings_are_named_where_they_are(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """The labelled check's source model is configured under verify.source_provider; its
    errors named provider.base_url, which is the target model's."""
    make_collection(memory_store.client, "docs", n=10)
    (tmp_path / "q.jsonl").write_text('{"query": "x", "relevant_ids": [1]}\n')
    config = Settings(
        provider=ProviderSettings(name="hashing", model="hash-words-v1", dimensions=64),
        collections=[CollectionSettings(name="docs", target="docs_hash")],
        migration=MigrationSettings(state_dir=tmp_path / "state"))
    config.verify.queries = tmp_path / "q.jsonl"
    config.verify.source_provider = ProviderSettings(name="openai-compatible", model="bge")
    with pytest.raises(ConfigError, match=r"needs verify\.source_provider\.base_url"):
        migrate(config, source_store=memory_store)


def test_the_labelled_checks_source_model_is_cut_at_its_servers_limit(
        memory_store: QdrantStore, tmp_path: Path) -> None:
    """The labelled check embeds its queries with the source collection's model too. That
    model's server was never asked its limits: a query over them went out whole, and
    vLLM refused it (the gate failed on a 400) though long_input said truncate."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": f"note {i} on tides"}) + "\n"
                              for i in range(20)))
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({
        "query": " ".join(f"q{i}w{j}" for j in range(40)), "relevant_ids": [i]}) + "\n"
        for i in range(5)))
    with LoopbackServer(dims=16, max_model_len={"bge": 16}) as server:
        old = ProviderSettings(name="openai-compatible", model="bge", base_url=server.url,
                               long_input="truncate")
        state = MigrationSettings(state_dir=tmp_path / "state")
        ingest(corpus, "docs", Settings(provider=old, migration=state), store=memory_store)
        config = Settings(
            provider=ProviderSettings(name="hashing", model="hash-words-v1", dimensions=64,
                                      long_input="truncate"),
            collections=[CollectionSettings(name="docs", target="docs_hash")],
            migration=state)
        config.verify.queries, config.verify.source_provider = queries, old
        config.verify.max_ndcg_drop = 1.0  # the loopback's vectors rank nothing well
        result = migrate(config, source_store=memory_store)
        longest = max(len(t.split()) for body in server.bodies for t in body["input"])
    check = result.collections[0].verification.checks[-1]  # type: ignore[union-attr]
    assert check.name == "labelled nDCG@10" and check.data["queries"] == 5
    assert longest <= 16 and server.answered == server.requests  # not one refused


def test_every_endpoints_limits_are_asked_at_once() -> None:
    """A fallback that is down can take the whole lookup time to say nothing: asked one
    after another, each such endpoint added its own wait before the first text."""
    waiting, most = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal waiting, most
        waiting += 1
        most = max(most, waiting)
        await asyncio.sleep(0.05)
        waiting -= 1
        return httpx.Response(404)

    hosts = ["tei-a", "tei-b", "tei-c"]
    settings = ProviderSettings(
        name="tei", model="bge-small", base_url=f"http://{hosts[0]}:8080",
        fallbacks=[ProviderSettings(name="tei", model="bge-small", base_url=f"http://{h}:8080")
                   for h in hosts[1:]])
    embedder = build_embedder(settings, client=httpx.AsyncClient(
        transport=httpx.MockTransport(slow)))
    asyncio.run(embedder.adopt_server_limits())
    assert most == 3
