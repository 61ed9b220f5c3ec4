"""Requests packed within the provider's limits; texts over the per-input limit handled by
policy (fail lists them and sends nothing, truncate, chunk-mean)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from migrator import (
    CollectionSettings,
    InputTooLong,
    MigrationSettings,
    ProviderSettings,
    Settings,
    migrate,
)
from migrator.embedding.tokens import chunk_tokens, count_tokens, pack, truncate_tokens
from migrator.settings import VerifySettings
from migrator.store import QdrantStore

from .conftest import make_collection
from .loopback import LoopbackServer, vector_for


def test_pack_by_inputs_tokens_and_bytes() -> None:
    texts = ["x" * 30] * 10  # 10 estimated tokens each
    assert pack(texts, max_inputs=4, max_tokens=None) == [(0, 4), (4, 8), (8, 10)]
    assert pack(texts, max_inputs=100, max_tokens=25) == [(0, 2), (2, 4), (4, 6), (6, 8),
                                                          (8, 10)]
    assert pack(texts, max_inputs=100, max_tokens=None, max_bytes=65) == [
        (0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert pack(["y" * 300], max_inputs=5, max_tokens=10) == [(0, 1)]  # alone, if too big


def test_truncate_and_chunk_by_tokens() -> None:
    text = " ".join(f"word{i}" for i in range(100))
    assert count_tokens(text) > 50
    short = truncate_tokens(text, 20)
    assert count_tokens(short) <= 20 and text.startswith(short)
    pieces = chunk_tokens(text, 20)
    assert all(count_tokens(p) <= 20 for p in pieces)
    assert " ".join(pieces) == text


def settings(tmp_path: Path, url: str, policy: str) -> Settings:
    return Settings(
        provider=ProviderSettings(name="openai-compatible", model="text-embedding-3-small",
                                  base_url=url, dimensions=8, batch_size=8,
                                  long_input=policy),  # type: ignore[arg-type]
        collections=[CollectionSettings(name="docs", alias="live")],
        migration=MigrationSettings(state_dir=tmp_path / "s", page_size=8),
        verify=VerifySettings(enabled=False),
    )


LONG = "very long " + " ".join(f"w{i}" for i in range(40_000))  # ~60k tokens, over 8192


def _long_second(i: int, text: str) -> dict[str, str]:
    return {"text": LONG if i == 1 else text}


def test_fail_lists_the_long_texts_and_sends_nothing_of_them(memory_store: QdrantStore,
                                                              tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=12, payload=_long_second)
    with LoopbackServer(dims=1536) as server:
        with pytest.raises(InputTooLong, match="1 point of 'docs' has a text longer than.*: "
                                               "2; it was not sent.*long_input to truncate"):
            migrate(settings(tmp_path, server.url, "fail"), source_store=memory_store)
        assert LONG not in server.seen
    assert memory_store.aliases() == {}


def test_truncate_sends_the_start(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=12, payload=_long_second)
    with LoopbackServer(dims=1536) as server:
        result = migrate(settings(tmp_path, server.url, "truncate"), source_store=memory_store)
        sent = [t for t in server.seen if t.startswith("very long")]
    assert len(sent) == 1 and count_tokens(sent[0]) <= 8192
    assert result.collections[0].target_count == 12


def test_chunk_mean_averages_the_pieces(memory_store: QdrantStore, tmp_path: Path) -> None:
    make_collection(memory_store.client, "docs", n=12, payload=_long_second)
    with LoopbackServer(dims=1536) as server:
        result = migrate(settings(tmp_path, server.url, "chunk-mean"),
                         source_store=memory_store)
        pieces = [t for t in server.seen if t.startswith(("very long", "w"))]
    assert len(pieces) >= 6
    point = memory_store.client.retrieve(result.collections[0].target, [2],
                                         with_vectors=True)[0]
    expected = np.mean([vector_for(p, 8) for p in pieces], axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(point.vector, expected, atol=1e-5)


@pytest.mark.parametrize("policy", ["truncate", "chunk-mean"])
def test_verification_prepares_texts_as_the_backfill_did(memory_store: QdrantStore,
                                                         tmp_path: Path, policy: str) -> None:
    """Issue 11.10: the fix the error message advises failed at verification, where the
    sampled texts were sent whole as queries (HTTP 400 after the backfill was paid)."""
    make_collection(memory_store.client, "docs", n=12, payload=_long_second)
    config = settings(tmp_path, "", policy)
    config.verify = VerifySettings(enabled=True)
    with LoopbackServer(dims=1536) as server:
        config.provider.base_url = server.url
        result = migrate(config, source_store=memory_store)
        assert LONG not in server.seen
    verification = result.collections[0].verification
    assert verification is not None and verification.passed
    assert memory_store.aliases() == {"live": result.collections[0].target}


def test_a_text_shorter_than_the_limit_in_bytes_is_not_counted() -> None:
    """No tokenizer makes more tokens than UTF-8 bytes (plus specials): counting such a text
    is CPU spent for nothing, on every text of a backfill."""
    from collections.abc import Callable

    from migrator.catalog import ModelSpec
    from migrator.embedding.base import Embedder
    from migrator.embedding.tokens import SPECIAL_TOKENS, fit_all

    counted: list[str] = []

    class Counting(Embedder):
        spec = ModelSpec("counting", "m", 4, max_inputs=8, max_tokens_per_input=64)

        @property
        def tokenizer(self) -> Callable[[str], int]:
            return lambda text: counted.append(text) or len(text.split())

    short, long = "é" * ((64 - SPECIAL_TOKENS) // 2), "word " * 40
    fitted = fit_all([short, long], Counting(), "fail")
    assert counted == [long] and fitted.unique == [short, long]
