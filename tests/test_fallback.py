"""Fallback endpoints of the same model, behind circuit breakers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from migrator import ConfigError, ProviderResponseError, ProviderSettings
from migrator.embedding import build_embedder
from migrator.embedding.fallback import COOLDOWN, FAILURES_TO_OPEN, FallbackEmbedder


class Router:
    """Answers by host: the primary fails (or not), the fallback answers."""

    def __init__(self, primary_fails: bool = True) -> None:
        self.hits: dict[str, int] = {}
        self.primary_fails = primary_fails

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.hits[host] = self.hits.get(host, 0) + 1
        if host == "api.openai.com" and self.primary_fails:
            return httpx.Response(503, json={"error": {"message": "overloaded"}})
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0] + [0.0] * 511}],
                                         "usage": {"prompt_tokens": 2}})


def settings(**primary: Any) -> ProviderSettings:
    azure = ProviderSettings(name="azure", model="text-embedding-3-small", dimensions=512,
                             base_url="https://res.openai.azure.com", deployment="emb",
                             api_key=SecretStr("k2"), max_retries=0)
    values = {"name": "openai", "model": "text-embedding-3-small", "dimensions": 512,
              "api_key": SecretStr("k1"), "max_retries": 0, "fallbacks": [azure], **primary}
    return ProviderSettings(**values)


def embedder(router: Router, **primary: Any) -> Any:
    """The fallback layer of the stack `build_embedder` builds (under its meter)."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(router))
    return build_embedder(settings(**primary), client=client).inner


def test_falls_back_and_opens_the_circuit() -> None:
    router = Router()
    model = embedder(router)
    assert isinstance(model, FallbackEmbedder)

    async def run() -> None:
        for _ in range(FAILURES_TO_OPEN + 3):
            result = await model.embed(["x"])
            assert result.vectors.shape == (1, 512)

    asyncio.run(run())
    assert router.hits["api.openai.com"] == FAILURES_TO_OPEN  # then the circuit is open
    assert router.hits["res.openai.azure.com"] == FAILURES_TO_OPEN + 3
    assert model.used == [0, FAILURES_TO_OPEN + 3]


def test_a_half_open_circuit_tries_the_primary_again() -> None:
    router = Router()
    clock = [0.0]
    model = embedder(router)
    model = FallbackEmbedder(model.endpoints, clock=lambda: clock[0])

    async def embed_n(n: int) -> None:
        for _ in range(n):
            await model.embed(["x"])

    asyncio.run(embed_n(FAILURES_TO_OPEN))
    router.primary_fails = False
    clock[0] = COOLDOWN + 1
    asyncio.run(embed_n(2))
    assert model.used[0] == 2 and not model.breakers[0].open


def test_all_endpoints_failing_raise_the_last_error() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": f"{request.url.host} down"}})

    client = httpx.AsyncClient(transport=httpx.MockTransport(down))
    model = build_embedder(settings(), client=client)
    with pytest.raises(ProviderResponseError, match="res.openai.azure.com down"):
        asyncio.run(model.embed(["x"]))


@pytest.mark.parametrize("fallback", [
    {"name": "openrouter", "model": "openai/text-embedding-3-large", "dimensions": 512},
    {"name": "openrouter", "model": "openai/text-embedding-3-small", "dimensions": 256},
])
def test_a_fallback_to_another_model_or_size_is_refused(fallback: dict[str, Any]) -> None:
    config = settings(fallbacks=[ProviderSettings(**fallback, api_key=SecretStr("k"))])
    with pytest.raises(ConfigError, match="must not share a collection"):
        build_embedder(config)


def test_openrouter_serves_the_same_openai_model() -> None:
    config = settings(fallbacks=[ProviderSettings(
        name="openrouter", model="openai/text-embedding-3-small", dimensions=512,
        api_key=SecretStr("k"))])
    assert isinstance(build_embedder(config).inner, FallbackEmbedder)


def test_one_price_for_every_endpoint_of_a_model() -> None:
    """The meter is the model's: a fallback's own price would have been ignored silently."""
    config = settings(price_per_mtok=0.03, fallbacks=[ProviderSettings(
        name="openrouter", model="openai/text-embedding-3-small", dimensions=512,
        api_key=SecretStr("k"), price_per_mtok=0.02)])
    with pytest.raises(ConfigError, match="has a price_per_mtok of its own"):
        build_embedder(config)
    config.fallbacks[0].price_per_mtok = None
    assert build_embedder(config).spec.price_per_mtok == 0.03  # over the catalog's 0.02
