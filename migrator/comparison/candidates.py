"""The models `compare` measures: a YAML list of candidates, or `provider:model[:dims]` flags.

```yaml
reference: minilm              # optional: what agreement@10 is measured against
candidates:
  - name: minilm               # optional; default "provider/model" (+ "@dims")
    provider: local
    model: all-MiniLM-L6-v2
  - provider: openai
    model: text-embedding-3-small
    dimensions: [1536, 512, 256]   # one candidate per size: a truncation sweep
    input_types: false             # embed queries as documents (default: as queries)
```

Every other key is a `provider:` setting (base_url, api_key_env, concurrency, batch_size,
dimension_policy, ...). `long_input` defaults to `truncate` here: a comparison measures
each model as it would be used, cut at its own input limit, and says how many were cut.
A `local` model defaults to `concurrency: 1`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..config_files import refuse_api_keys
from ..errors import ConfigError
from ..settings import ProviderSettings, fill_api_key
from ..wording import describe_validation

__all__ = ["Candidate", "expand", "finish", "gather", "load_candidates", "parse_flag"]

_OWN_KEYS = {"name", "provider", "dimensions", "input_types"}


@dataclass
class Candidate:
    name: str
    provider: ProviderSettings
    input_types: bool = True  # queries embedded with the model's query input type
    reference: bool = False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider.name, "model": self.provider.model,
                "dimensions": self.provider.dimensions, "input_types": self.input_types,
                "reference": self.reference}


def load_candidates(path: Path, *, environ: dict[str, str] | None = None) -> list[Candidate]:
    """Candidates from a YAML file: a list, or a mapping with `candidates` (and `reference`)."""
    if not path.is_file():
        raise ConfigError(f"Candidates file {path} does not exist; check the --candidates path.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"Could not read the candidates file {path}: {exc}") from exc
    refuse_api_keys(path, data)
    reference = None
    if isinstance(data, dict):
        unknown = set(data) - {"candidates", "reference"}
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; the file "
                              "holds `candidates:` and an optional `reference:`.")
        reference, data = data.get("reference"), data.get("candidates")
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path} lists no candidates; give a list of {{provider, model}} "
                          "entries under `candidates:`.")
    candidates = []
    for number, entry in enumerate(data, start=1):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: candidate {number} is not a mapping of settings.")
        candidates.extend(expand(entry, origin=f"{path}: candidate {number}",
                                 where=f"of candidate {number} in {path}", environ=environ))
    return finish(candidates, reference)


def parse_flag(flag: str, *, environ: dict[str, str] | None = None) -> list[Candidate]:
    """`provider:model` or `provider:model:dims` from the command line."""
    provider, model, size = _flag_parts(flag)
    entry: dict[str, Any] = {"provider": provider, "model": model}
    if size is not None:
        entry["dimensions"] = size
    # a flag sets no other key: messages point to the file that can
    return expand(entry, origin=f"--candidate {flag}", where="of a --candidates file entry",
                  environ=environ)


def _flag_parts(flag: str) -> tuple[str, str, int | None]:
    """(provider, model, size) of `provider:model[:dims]`; a model's name may hold colons
    itself (Ollama's `nomic-embed-text:v1.5`): only a last part of digits is a size."""
    provider, _, model = flag.partition(":")
    head, _, last = model.rpartition(":")
    size = int(last) if head and last.isdigit() else None
    if size is not None:
        model = head
    if not provider or not model or "" in model.split(":"):
        raise ConfigError(f"--candidate {flag!r}: write provider:model or provider:model:dims, "
                          "e.g. local:all-MiniLM-L6-v2 or openai:text-embedding-3-small:512.")
    return provider, model, size


def _default_name(provider: str, model: str, size: int | None) -> str:
    return f"{provider}/{model}" + (f"@{size}" if size else "")


def expand(entry: dict[str, Any], *, origin: str, where: str = "",
           environ: dict[str, str] | None = None) -> list[Candidate]:
    """One entry of the list: a candidate per size when `dimensions` lists several.
    `origin` prefixes a refusal of the entry; `where` follows a key that a message names
    ("batch_size of candidate 2 in compare.yaml")."""
    if "provider" not in entry or "model" not in entry:
        raise ConfigError(f"{origin}: needs `provider` and `model`.")
    sizes = entry.get("dimensions")
    sizes_list = sizes if isinstance(sizes, list) else [sizes]
    settings = {k: v for k, v in entry.items() if k not in _OWN_KEYS}
    settings.setdefault("long_input", "truncate")
    if entry["provider"] == "local":
        # one batch at a time: torch already uses every core, so more in flight only
        # stretches each call's latency (measured: 21 -> 22 texts/s, p50 2.9 s -> 11.4 s at 4)
        settings.setdefault("concurrency", 1)
    out = []
    for size in sizes_list:
        try:
            provider = ProviderSettings.model_validate(
                {**settings, "name": entry["provider"], "model": entry["model"],
                 "dimensions": size}).at("", where=where)
        except ValidationError as exc:
            raise ConfigError(describe_validation(exc, prefix=origin,
                                                  model=ProviderSettings)) from exc
        fill_api_key(provider, environ)
        default = _default_name(provider.name, provider.model, size)
        name = str(entry["name"]) if entry.get("name") else default
        if len(sizes_list) > 1 and entry.get("name") and size is not None:
            name = f"{name}@{size}"
        out.append(Candidate(name, provider, bool(entry.get("input_types", True))))
    return out


def gather(path: Path | None = None, flags: Sequence[str] = (), reference: str | None = None,
           *, environ: dict[str, str] | None = None) -> list[Candidate]:
    """Candidates from a file and `provider:model[:dims]` flags, in that order; `reference`
    overrides the file's."""
    if path is None and not flags:
        raise ConfigError("Name the models to compare: --candidates FILE or --candidate "
                          "provider:model (repeatable).")
    found = load_candidates(path, environ=environ) if path is not None else []
    file_reference = next((c.name for c in found if c.reference), None)
    for flag in flags:
        found.extend(parse_flag(flag, environ=environ))
    return finish(found, reference or file_reference)


def finish(candidates: list[Candidate], reference: str | None) -> list[Candidate]:
    """Check names are unique and mark the reference (default: the first candidate)."""
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.name in seen:
            raise ConfigError(f"Two candidates are named {candidate.name!r}; give each a "
                              "distinct `name:`.")
        seen.add(candidate.name)
    if not candidates:
        raise ConfigError("No candidates to compare; give --candidates FILE or --candidate "
                          "provider:model.")
    if reference is not None and reference not in seen and ":" in reference:
        with contextlib.suppress(ConfigError):  # spelt as its --candidate flag
            reference = _default_name(*_flag_parts(reference))
    if reference is not None and reference not in seen:
        # the name of an entry with several sizes means its first size
        reference = next((c.name for c in candidates if c.name.startswith(f"{reference}@")),
                         reference)
    if reference is not None and reference not in seen:
        raise ConfigError(f"The reference {reference!r} is not a candidate; choose one of "
                          f"{', '.join(sorted(seen))}.")
    for candidate in candidates:
        candidate.reference = candidate.name == (reference or candidates[0].name)
    return candidates
