"""The dimension decision: which size the provider is asked for, and what migrator does to
its vectors to reach the target size.

- `native`: the model's own size is the target size.
- `requested`: the model can produce the configured size itself (Matryoshka models behind an
  API that takes `dimensions`/`output_dimension`); the provider is asked for it.
- `truncate`: keep the first d values. The result is L2-renormalised when the distance is
  Cosine or Dot: Cosine ignores length anyway, and under Dot a shortened vector would
  otherwise score lower than a full one for no reason of meaning.
- `pad`: append zeros up to d. Dot and Cosine scores are unchanged (zeros add nothing to a
  dot product or a norm); the padding is memory spent for nothing, and the report says how
  much.
- `error` (the default policy): anything else is refused before a single text is embedded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..catalog import ModelSpec
from ..errors import ConfigError, DimensionMismatch
from .vectors import l2_normalize

__all__ = ["BYTES_PER_FLOAT", "decide", "DimsAction", "DimsDecision",
    "DimsPolicy", "settle", "truncation_fidelity"]

DimsPolicy = Literal["error", "truncate", "pad"]
DimsAction = Literal["native", "requested", "truncate", "pad", "probed"]
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class DimsDecision:
    """How the target size is reached. `ask` is what the provider is asked for (None: its
    default size); `output` is what it returns; `target` is what is written."""

    action: DimsAction
    native: int  # 0 when the catalog does not know the model (probed at run time)
    ask: int | None
    target: int  # 0 until probed, for a model the catalog lacks and no configured size
    renormalize: bool = False
    matryoshka: bool = False
    policy: DimsPolicy = "error"  # a probed model's: how `settle` reaches `target`

    @property
    def output(self) -> int:
        return self.ask or self.native

    @property
    def bytes_per_vector(self) -> int:
        return self.target * BYTES_PER_FLOAT

    @property
    def wasted_bytes_per_vector(self) -> int:
        return (self.target - self.output) * BYTES_PER_FLOAT if self.action == "pad" else 0

    def describe(self) -> str:
        if self.action == "native":
            return f"native size {self.target}"
        if self.action == "requested":
            native = f"native {self.native}" if self.native else "native size not in the catalog"
            return f"{self.target} requested from the model natively ({native})"
        if self.action == "probed":
            return (f"{self.target} as the server returns it (model not in the catalog)"
                    if self.target else "probed from the server (model not in the catalog)")
        if self.action == "truncate":
            norm = ", renormalised" if self.renormalize else ""
            return f"truncated from {self.output} to {self.target}{norm}"
        return (f"zero-padded from {self.output} to {self.target} "
                f"({self.wasted_bytes_per_vector} bytes wasted per vector)")

    def consequences(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "native": self.native or None,
            "asked": self.ask,
            "target": self.target or None,
            "renormalized": self.renormalize,
            "bytes_per_vector": self.bytes_per_vector,
            "bytes_per_million_points": self.bytes_per_vector * 1_000_000,
            "wasted_bytes_per_vector": self.wasted_bytes_per_vector,
            "description": self.describe(),
        }

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Bring provider output of size `output` to size `target`."""
        if self.action == "truncate":
            cut = vectors[:, : self.target]
            return l2_normalize(cut) if self.renormalize else cut.astype(np.float32)
        if self.action == "pad":
            padded = np.zeros((vectors.shape[0], self.target), dtype=np.float32)
            padded[:, : vectors.shape[1]] = vectors
            return padded
        return vectors


def decide(spec: ModelSpec, configured: int | None, *, policy: DimsPolicy = "error",
           distance: str = "Cosine", send_dimensions: bool | None = None,
           setting: Callable[[str], str] = "provider.{}".format) -> DimsDecision:
    """The dimension decision for `spec` at the `configured` size (None: native).

    Args:
        spec: the model's catalog entry (`dims == 0` for a model the catalog lacks).
        configured: provider.dimensions.
        policy: what to do when the model cannot produce `configured` itself.
        distance: the target's distance; truncation renormalises for Cosine and Dot.
        send_dimensions: force (True) or forbid (False) asking the provider for the size;
            None decides from the catalog.
        setting: names one of the provider's settings (a key) in the message of a refusal.

    Raises:
        ConfigError: the size cannot be reached under `policy`.
    """
    renorm = distance in ("Cosine", "Dot")
    if not spec.dims:  # unknown model: its size is learnt from the probe
        if configured is None:
            return DimsDecision("probed", 0, None, 0)
        # truncate/pad: learn the native size without `dimensions`, then cut or pad here;
        # error: ask the server for the size (unless told not to), and hold it to it
        asks = send_dimensions is True or (policy == "error" and send_dimensions is None)
        if asks:
            return DimsDecision("requested", 0, configured, configured)
        return DimsDecision("probed", 0, None, configured, renormalize=renorm, policy=policy)
    if configured is None or configured == spec.dims:
        return DimsDecision("native", spec.dims, None, spec.dims, matryoshka=spec.matryoshka)
    if send_dimensions is not False and (spec.accepts_dims(configured) or send_dimensions):
        return DimsDecision("requested", spec.dims, configured, configured,
                            matryoshka=spec.matryoshka)
    if policy == "truncate" and configured < spec.dims:
        return DimsDecision("truncate", spec.dims, None, configured, renormalize=renorm,
                            matryoshka=spec.matryoshka)
    if policy == "pad" and configured > spec.dims:
        return DimsDecision("pad", spec.dims, None, configured, matryoshka=spec.matryoshka)
    direction = "shorter" if configured < spec.dims else "longer"
    fix = "truncate" if configured < spec.dims else "pad"
    allowed = (f"sizes it can produce: {spec.describe_dims()}" if spec.supports_output_dims
               else "it has no output-size option")
    raise ConfigError(
        f"Model {spec.model!r} ({spec.provider}) produces {spec.dims}-dimensional vectors "
        f"({allowed}); the configuration asks for {configured}. Remove {setting('dimensions')}, "
        f"choose a size the model supports, or set {setting('dimension_policy')}: {fix} to make "
        f"{direction} vectors yourself"
        + (" (quality drops for a model not trained for it: run `migrator validate` to "
           "measure it)." if fix == "truncate" else ".")
    )


def settle(decision: DimsDecision, output: int, model: str = "the model",
           setting: Callable[[str], str] = "provider.{}".format) -> DimsDecision:
    """A probed decision made final once the provider's own size `output` is known
    (`setting` names a key of the provider's settings in a refusal).

    Raises:
        DimensionMismatch: the configured size cannot be reached from `output` under the
            configured policy.
    """
    if decision.action != "probed" or not decision.target:
        return decision
    target, policy = decision.target, decision.policy
    if output == target:
        return DimsDecision("native", output, None, target)
    if policy == "truncate" and target < output:
        return DimsDecision("truncate", output, None, target, renormalize=decision.renormalize)
    if policy == "pad" and target > output:
        return DimsDecision("pad", output, None, target)
    fix = "truncate" if target < output else "pad"
    raise DimensionMismatch(
        f"{model} returned {output}-dimensional vectors; the configuration says {target} "
        f"(dimension_policy: {policy}). Set {setting('dimensions')} to {output}, or "
        f"{setting('dimension_policy')}: {fix}.")


def truncation_fidelity(vectors: np.ndarray, dims: int, *, k: int = 10,
                        queries: int | None = None) -> float:
    """recall@k of nearest-neighbour search on the first `dims` values (renormalised)
    against search on the full vectors, over the given set; each vector queries the rest.

    Exact search in numpy, cosine similarity. 1.0 means truncation changes no top-k list.
    """
    n = vectors.shape[0]
    if n < 2:
        return 1.0
    k = min(k, n - 1)
    q = n if queries is None else min(queries, n)
    full = l2_normalize(vectors.astype(np.float32))
    cut = l2_normalize(vectors[:, :dims].astype(np.float32))
    return float(np.mean(_recall(full, cut, q, k)))


def _recall(full: np.ndarray, cut: np.ndarray, q: int, k: int) -> np.ndarray:
    recalls = np.empty(q)
    for start in range(0, q, 256):
        stop = min(start + 256, q)
        truth = _top_k(full[start:stop] @ full.T, start, k)
        found = _top_k(cut[start:stop] @ cut.T, start, k)
        for row in range(stop - start):
            recalls[start + row] = len(set(truth[row]) & set(found[row])) / k
    return recalls


def _top_k(scores: np.ndarray, offset: int, k: int) -> np.ndarray:
    rows = np.arange(scores.shape[0])
    scores[rows, rows + offset] = -np.inf  # a vector is not its own neighbour
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]
