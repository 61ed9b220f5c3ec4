"""`validate()`: dimension validation of configuration, provider and stored vectors.

Checks, each pass / fail / info / skip:
- config vs collection: the configured model's final size is the collection's vector size;
- provider probe: one real request; length and norm against catalog and configuration
  (this is what catches a server that shortens vectors silently);
- scan: a sample (or every point) for vectors of the wrong length, NaN or infinite values,
  all-zero vectors, vectors that are not unit length under Cosine, points without the
  vector, points without text; with norm statistics;
- truncation fidelity: for candidate sizes, recall@10 of search on the first d values
  against search on the full vectors, so the cost of a smaller size is known beforehand.

The same probe is `migrate`'s preflight: one real batch from the source, before anything
is created.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..blocking import run_blocking
from ..catalog import ModelSpec
from ..embedding import Embedder, embedding, model_spec
from ..embedding.sizing import (
    DimsAction,
    DimsDecision,
    decide,
    truncation_fidelity,
)
from ..embedding.tokens import fit_all
from ..errors import ConfigError, DimensionMismatch, MigratorError, ProviderError
from ..settings import CollectionSettings, Settings
from ..store import CollectionSchema, Point, QdrantStore, opened
from ..texts import TextSource, refuse_no_text
from ..wording import vector_label

__all__ = ["Check", "DEFAULT_CANDIDATES", "FIDELITY_POINTS", "FIDELITY_QUERIES",
    "INFORMATIONAL", "NORM_TOLERANCE", "probe", "probe_texts", "ProbeResult", "ProbeTexts",
    "scan_points",
    "SHOWN_IDS", "Status", "validate", "ValidationReport"]

# ---- the preflight probe (migrate and validate) ------------------------------------


@dataclass
class ProbeResult:
    """What one real request to the provider showed, before anything was created."""

    decision: DimsDecision
    output: int  # the length the provider returned
    norm_min: float
    norm_max: float
    texts: int
    tokens: int = 0  # what the probe request cost (0 when it came from the cache)
    fidelity: float | None = None  # recall@10 after truncation, non-Matryoshka models only
    warnings: list[str] = field(default_factory=list)

    @property
    def target(self) -> int:
        return self.decision.target or self.output

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "target": self.target, "texts": self.texts,
                "norm_min": round(self.norm_min, 4), "norm_max": round(self.norm_max, 4),
                "truncation_recall_at_10": self.fidelity, "warnings": self.warnings,
                "dims": self.decision.consequences()}


NORM_TOLERANCE = 0.01


async def probe(embedder: Embedder, texts: Sequence[str], *, distance: str) -> ProbeResult:
    """Embed `texts` (real ones from the source) with the provider itself and check the
    vectors against the catalog and the configuration.

    The model's own vectors come through the stack's cache like every other request: a
    re-run checks the same vectors again without a request, and the backfill never pays
    for the probe's texts a second time.

    Raises:
        DimensionMismatch: the length or the norm is not what the model promises.
    """
    spec = embedder.spec
    batch = list(texts[: embedder.batch_size]) or ["dimension probe"]
    try:
        raw, tokens = await _raw_vectors(embedder, batch)
    except DimensionMismatch as exc:
        # a size that was asked for, or that the catalog promises, came back otherwise
        hint = f" {_CUTTING_HINT}" if embedder.asked_dims or spec.dims else ""
        raise DimensionMismatch(f"Preflight probe: {exc}{hint} Nothing was created.",
                                provider=exc.provider) from exc
    except ProviderError as exc:
        asked = embedder.asked_dims
        if exc.status in (400, 422) and asked and not spec.dims:
            raise _refused_dimensions(exc, spec, asked) from exc
        raise
    await embedder.check_cache(batch[0])  # a resumed run: is it the model cached before?
    output = int(raw.shape[1])
    decision = embedder.sizing  # settled by the answers above
    if decision is None:
        action: DimsAction = ("probed" if not spec.dims else
                              "native" if output == spec.dims else "requested")
        decision = DimsDecision(action, spec.dims, output if action == "requested" else None,
                                output, matryoshka=spec.matryoshka)
    embedder.expect_dims(output)
    norms = np.linalg.norm(raw, axis=1)
    result = ProbeResult(decision, output, float(norms.min()), float(norms.max()), len(batch),
                         tokens, warnings=embedder.limit_notes)
    _check_norms(result, spec, distance)
    if decision.action == "truncate":
        result.fidelity = round(truncation_fidelity(raw, decision.target), 4)
        if not spec.matryoshka:
            result.warnings.append(
                f"{spec.model} is not known to be trained for truncation (Matryoshka); cut "
                f"from {output} to {decision.target} it keeps recall@10 = {result.fidelity:.2f} "
                f"of its full-size neighbours on {len(batch)} sampled texts. Run `migrator "
                "validate --dims` to compare sizes.")
    if decision.action == "pad":
        wasted = decision.wasted_bytes_per_vector
        result.warnings.append(
            f"Zero-padding from {output} to {decision.target} wastes {wasted} bytes per vector "
            f"({wasted:,} MB per million points); scores are unchanged.")
    if not spec.normalized and distance == "Dot" and spec.dims:
        result.warnings.append(f"{spec.model} does not return unit-length vectors and the "
                               "distance is Dot: scores will mix length with similarity.")
    return result


@dataclass
class ProbeTexts:
    """The texts `probe_texts` found, and what they suggest is wrong (a template field no
    point has)."""

    texts: list[str]
    warnings: list[str]


def probe_texts(source: QdrantStore, schema: CollectionSchema, config: CollectionSettings,
                model: Embedder, long_input: str, limit: int = 256) -> ProbeTexts:
    """Real texts from the start of the source for the preflight probe, prepared as the
    backfill prepares them (cut or chunked under the long-input policy; under `fail` those
    over the limit are left out), so the probe's answers are the backfill's too.

    Raises:
        ConfigError: none of the sampled points has text where the configuration looks:
            a mistyped text field or template, found before anything is created.
    """
    text = TextSource.from_settings(config.text_field, config.text_template)
    page = source.scroll(schema.name, limit=limit, vectors=False)
    refuse_no_text(config.name, text, [p.payload for p in page.points])
    texts = [t for p in page.points if (t := text.extract(p.payload)[0])]
    warnings = text.unfilled_warnings(config.name, [p.payload for p in page.points])
    return ProbeTexts(fit_all(texts, model, long_input).unique, warnings)


async def _raw_vectors(embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, int]:
    """The model's own vectors for `texts`, in two requests that must agree on the size:
    one short answer must not decide the size of a collection. Answers from the cache that
    disagree are asked of the provider again (and the cache's rows replaced)."""
    halves = [texts[: (len(texts) + 1) // 2], texts[(len(texts) + 1) // 2:]]
    halves = [h for h in halves if h]
    # one after the other, not at once: a server that answers wrongly (each wrong answer is
    # retried, and billed) is paid for one half only
    results = [await embedder.embed_unsized(half) for half in halves]
    widths = sorted({int(r.vectors.shape[1]) for r in results})
    if len(widths) > 1 and any(r.cached for r in results):
        results = [await embedder.embed_unsized(half, fresh=True) for half in halves]
        widths = sorted({int(r.vectors.shape[1]) for r in results})
    if len(widths) > 1:
        spec = embedder.spec
        raise DimensionMismatch(
            f"{spec.provider} ({spec.model}) answered the probe with vectors of different "
            f"sizes ({', '.join(map(str, widths))}) for texts of the same collection.",
            provider=spec.provider)
    return np.vstack([r.vectors for r in results]), sum(r.tokens for r in results)


def _refused_dimensions(exc: ProviderError, spec: ModelSpec, asked: int) -> ConfigError:
    return ConfigError(
        f"Preflight probe: {spec.provider} ({spec.model}) refused the request for {asked} "
        f"dimensions ({exc}). This server cannot shorten the model's vectors itself: set "
        "provider.dimension_policy: truncate (or pad, for a larger size) to let migrator cut "
        "or pad the model's own vectors, or remove provider.dimensions. Nothing was created.")


_CUTTING_HINT = ("The server may be shortening vectors silently (Ollama and TEI do when sent "
                 "`dimensions`), or serving another model than configured.")


def _check_norms(result: ProbeResult, spec: ModelSpec, distance: str) -> None:
    unit = abs(result.norm_min - 1) <= NORM_TOLERANCE and abs(result.norm_max - 1) <= (
        NORM_TOLERANCE)
    if spec.dims and spec.normalized and not unit and result.decision.action != "pad":
        raise DimensionMismatch(
            f"Preflight probe: {spec.provider} {spec.model} returned vectors of norm "
            f"{result.norm_min:.3f}-{result.norm_max:.3f}, but the model's vectors are unit "
            f"length. {_CUTTING_HINT} Nothing was created.", provider=spec.provider)


# ---- validate() ---------------------------------------------------------------------


Status = Literal["pass", "fail", "info", "skip"]
DEFAULT_CANDIDATES = (64, 128, 256, 384, 512, 768, 1024, 1536, 2048)
SHOWN_IDS = 10
FIDELITY_POINTS = 2000  # vectors searched when measuring truncation fidelity
FIDELITY_QUERIES = 200
# Cosine ignores length, so a vector that is not unit length searches the same; it is
# reported, not failed. (Qdrant normalises Cosine vectors on insert, but local mode hands
# back the originals after a reload.)
INFORMATIONAL = frozenset({"not_unit"})


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    collection: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "collection": self.collection, "status": self.status,
                "detail": self.detail, "data": self.data}


@dataclass
class ValidationReport:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks]}


def validate(
    settings: Settings,
    *,
    full: bool = False,
    sample: int = 1000,
    dims: Sequence[int] | None = None,
    probe_provider: bool = True,
    source_store: QdrantStore | None = None,
    embedder: Embedder | None = None,
) -> ValidationReport:
    """Check that configuration, provider and stored vectors agree on size and sanity.

    The collections checked are `settings.collections` (usually a migration's target or
    its alias) on the source store.

    Args:
        settings: provider and collections to check.
        full: scan every point instead of the first `sample`.
        sample: points scanned (and used for fidelity) when not `full`.
        dims: candidate sizes for truncation fidelity (default: common sizes below the
            collection's).
        probe_provider: send one request to the provider (False: skip that check).

    Returns:
        The report; `report.passed` is False when any check failed.

    Raises:
        ConfigError, CollectionNotFound, ProviderError: the checks could not run.
    """
    if not settings.collections:
        raise ConfigError("No collection to validate: give --collection NAME or a "
                          "`collections:` list in the configuration file.")
    if sample < 1 and not full:
        raise ConfigError(f"sample is {sample}; validate scans at least 1 point (or give "
                          "full=True to scan them all).")
    with opened(settings.source, None, source_store=source_store) as (store, _):
        return run_blocking(_validate(settings, store, embedder, full=full, sample=sample,
                                      dims=dims, probe_provider=probe_provider), "validate")


NO_PROVIDER = ("no provider configured: give --provider and --model (or a configuration "
               "file) to check the model you are moving to")


async def _validate(settings: Settings, store: QdrantStore, embedder: Embedder | None, *,
                    full: bool, sample: int, dims: Sequence[int] | None,
                    probe_provider: bool) -> ValidationReport:
    checks: list[Check] = []
    schemas = [store.describe(c.name) for c in settings.collections]
    first = settings.collections[0]
    distance = first.distance or schemas[0].vector(first.vector).distance
    probed: int | None = None
    configured = embedder is not None or "provider" in settings.model_fields_set
    if probe_provider and not configured:
        checks.append(Check("provider probe", "skip", f"skipped: {NO_PROVIDER}"))
    elif probe_provider:
        async with embedding(settings.provider, embedder, distance=distance) as model:
            check, probed = await _probe_check(model, store, schemas[0], first, distance)
            checks.append(check)
    else:
        checks.append(Check("provider probe", "skip", "skipped (--no-probe)"))
    for config, schema in zip(settings.collections, schemas, strict=True):
        checks.append(_config_check(settings, config, schema, probed) if configured
                      else _recorded_check(store, config, schema))
        points = _read(store, schema, config, limit=None if full else sample)
        scan, vectors = _scan(points, schema, config)
        checks.append(scan)
        checks.append(_fidelity_check(vectors, schema, config, dims))
    return ValidationReport(checks)


async def _probe_check(model: Embedder, store: QdrantStore, schema: CollectionSchema,
                       config: CollectionSettings, distance: str) -> tuple[Check, int | None]:
    text = TextSource.from_settings(config.text_field, config.text_template)
    page = store.scroll(schema.name, limit=64, vectors=False)
    texts = [t for p in page.points if (t := text.extract(p.payload)[0])]
    try:
        result = await probe(model, texts, distance=distance)
    except DimensionMismatch as exc:
        return Check("provider probe", "fail", str(exc)), None
    spec = model.spec
    expected = result.decision.output or result.output
    detail = (f"{spec.provider} {spec.model} returned {result.output} values (expected "
              f"{expected}), norms {result.norm_min:.3f}-{result.norm_max:.3f}")
    return Check("provider probe", "pass", detail, data=result.to_dict()), result.target


def _config_check(settings: Settings, config: CollectionSettings, schema: CollectionSchema,
                  probed: int | None) -> Check:
    provider = settings.provider
    vector = schema.vector(config.vector)
    label, shown = vector.name or "(unnamed)", vector_label(vector.name)
    try:
        decision = decide(model_spec(provider), provider.dimensions,
                          policy=provider.dimension_policy, distance=vector.distance,
                          send_dimensions=provider.send_dimensions)
    except MigratorError as exc:
        return Check("config vs collection", "fail", str(exc), config.name)
    expected = decision.target or probed
    data = {"vector": label, "collection_size": vector.size, "model_size": expected,
            "distance": vector.distance, "dims": decision.consequences()}
    if not expected:
        return Check("config vs collection", "skip", f"{provider.model} is not in the catalog "
                     "and was not probed; its size is unknown", config.name, data)
    if expected != vector.size:
        return Check("config vs collection", "fail",
                     f"vector {shown} of {schema.name!r} holds {vector.size} values; "
                     f"{provider.name} {provider.model} as configured gives {expected}: "
                     f"{decision.describe()}", config.name, data)
    return Check("config vs collection", "pass", f"vector {shown}: {vector.size} = "
                 f"{provider.model}, {decision.describe()}", config.name, data)


def _recorded_check(store: QdrantStore, config: CollectionSettings, schema: CollectionSchema
                    ) -> Check:
    """With no provider configured, the collection's size against what the migration that
    created it recorded in its metadata (a default model nobody chose says nothing)."""
    vector = schema.vector(config.vector)
    label, shown = vector.name or "(unnamed)", vector_label(vector.name)
    made = store.provenance(schema.name)
    if not made or made.get("vector") != vector.name or not made.get("dims"):
        return Check("config vs collection", "skip", f"skipped: {NO_PROVIDER}", config.name)
    data = {"vector": label, "collection_size": vector.size, "model_size": made["dims"],
            "distance": vector.distance, "recorded": made}
    written = (f"{made['provider']} {made['model']} at {made['dims']} dims, as recorded by "
               f"the migration that created it (no provider configured)")
    if made["dims"] != vector.size:
        return Check("config vs collection", "fail", f"vector {shown} of {schema.name!r} "
                     f"holds {vector.size} values; it was written by {written}", config.name,
                     data)
    return Check("config vs collection", "pass", f"vector {shown}: {vector.size} = {written}",
                 config.name, data)


def _read(store: QdrantStore, schema: CollectionSchema, config: CollectionSettings,
          limit: int | None) -> Iterable[Point]:
    vector = schema.vector(config.vector).name
    offset: Any = None
    read = 0
    while limit is None or read < limit:
        size = 256 if limit is None else min(256, limit - read)
        page = store.scroll(schema.name, limit=size, offset=offset, vectors=[vector])
        yield from page.points
        read += len(page.points)
        offset = page.next_offset
        if offset is None:
            return


def _scan(points: Iterable[Point], schema: CollectionSchema, config: CollectionSettings
          ) -> tuple[Check, np.ndarray]:
    spec = schema.vector(config.vector)
    return scan_points(points, vector=spec.name, size=spec.size, distance=spec.distance,
                       text=TextSource.from_settings(config.text_field, config.text_template),
                       collection=config.name)


def scan_points(points: Iterable[Point], *, vector: str, size: int, distance: str,
                text: TextSource, collection: str | None = None) -> tuple[Check, np.ndarray]:
    """Scan points for vector and text defects; also return the sound vectors (for fidelity).
    """
    defects: dict[str, list[Any]] = {"missing_vector": [], "wrong_length": [],
                                     "not_finite": [], "all_zero": [], "not_unit": [],
                                     "missing_text": []}
    norms: list[float] = []
    sound: list[np.ndarray] = []
    scanned = 0
    for point in points:
        scanned += 1
        if text.extract(point.payload)[0] is None:
            defects["missing_text"].append(point.id)
        raw = point.vectors.get(vector)
        problem = _vector_problem(raw, size, distance)
        if problem is not None:
            defects[problem].append(point.id)
        if problem in (None, "not_unit"):
            values = np.asarray(raw, dtype=np.float32)
            norms.append(float(np.linalg.norm(values)))
            if len(sound) < FIDELITY_POINTS:
                sound.append(values)
    counts = {k: len(v) for k, v in defects.items()}
    data: dict[str, Any] = {"scanned": scanned, "counts": counts,
                            "ids": {k: v[:SHOWN_IDS] for k, v in defects.items() if v}}
    if norms:
        data["norm"] = {"min": round(min(norms), 4), "mean": round(float(np.mean(norms)), 4),
                        "max": round(max(norms), 4)}
    if distance == "Cosine" and scanned:
        data["not_unit_share"] = round(counts["not_unit"] / scanned, 4)
    found = [f"{n} {k.replace('_', ' ')} ({', '.join(map(str, defects[k][:SHOWN_IDS]))})"
             for k, n in counts.items() if n]
    failing = any(n for k, n in counts.items() if k not in INFORMATIONAL)
    status: Status = "fail" if failing else "pass"
    detail = (f"{scanned} points scanned: " + ("; ".join(found) if found else "no defects"))
    matrix = np.vstack(sound) if sound else np.zeros((0, size), dtype=np.float32)
    return Check("scan", status, detail, collection, data), matrix


def _vector_problem(raw: Any, size: int, distance: str) -> str | None:
    if raw is None:
        return "missing_vector"
    values = np.asarray(raw, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] != size:
        return "wrong_length"
    if not np.isfinite(values).all():
        return "not_finite"
    norm = float(np.linalg.norm(values))
    if norm == 0.0:
        return "all_zero"
    if distance == "Cosine" and abs(norm - 1.0) > NORM_TOLERANCE:
        return "not_unit"
    return None


def _fidelity_check(vectors: np.ndarray, schema: CollectionSchema, config: CollectionSettings,
                    dims: Sequence[int] | None) -> Check:
    size = schema.vector(config.vector).size
    candidates = sorted({d for d in (dims or DEFAULT_CANDIDATES) if 0 < d < size})
    if len(vectors) < 11 or not candidates:
        reason = ("fewer than 11 sound vectors" if len(vectors) < 11 else
                  f"none of the sizes asked ({', '.join(map(str, sorted(set(dims))))}) is "
                  f"below {size}" if dims else f"no candidate size below {size}")
        return Check("truncation fidelity", "skip", reason, config.name)
    recalls = {d: round(truncation_fidelity(vectors, d, queries=FIDELITY_QUERIES), 4)
               for d in candidates}
    detail = ", ".join(f"{d}: {r:.2f}" for d, r in recalls.items())
    # sizes asked for that truncation cannot reach: said, not dropped silently
    over = sorted({d for d in dims or () if d >= size})
    if over:
        detail += f" ({', '.join(map(str, over))}: not below {size}, not truncations)"
    return Check("truncation fidelity", "info",
                 f"recall@10 vs full {size} dims on {len(vectors)} vectors: {detail}",
                 config.name, {"full": size, "vectors": len(vectors),
                               "recall_at_10": {str(d): r for d, r in recalls.items()}})
