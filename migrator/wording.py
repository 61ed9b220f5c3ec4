"""How things read in a message or a report: a count (`1 point has`, `2 points have`), a
vector's name (`'dense'`, or `(unnamed)` for the unnamed one), a configuration that did not
validate (each key and what is wrong with it, never a secret's value)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["closest_key", "counted", "describe_validation", "has", "money", "section_of",
           "section_type", "shortened", "vector_label"]


def counted(count: int, noun: str) -> str:
    """`1 request`, `2 requests`, `1,024 requests`."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def has(count: int, singular: str = "has", plural: str = "have") -> str:
    """The word that agrees with `count`: `has`/`have`, or the pair given (`is`/`are`,
    `it`/`them`)."""
    return singular if count == 1 else plural


def money(value: float | None) -> str:
    """USD as a report shows it: `$12.50`, `$0.0042`, and a sum under a hundredth of a cent
    to two significant digits (`$0.000012`), never rounded to `$0.0000`."""
    if value is None:
        return "unknown"
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    places = max(4, 1 - math.floor(math.log10(value)))
    return f"${value:.{places}f}"


def shortened(text: str, width: int) -> str:
    """`text` in at most `width` characters: its start, marked `...` when it was cut."""
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def vector_label(name: str) -> str:
    """A vector's name in a message: `'dense'`, or `(unnamed)` (not `''`, nor `'(unnamed)'`,
    which reads as a vector of that name)."""
    return repr(name) if name else "(unnamed)"


def describe_validation(exc: ValidationError, *, prefix: str,
                        model: type[BaseModel] | None = None) -> str:
    """`Invalid configuration in {prefix}: key: what is wrong (got value); ...`; an unknown
    key of `model` (the one validated) with the known key it most likely meant."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            meant = closest_key(model, error["loc"]) if model is not None else None
            known = section_of(model, error["loc"]) if model is not None else None
            message = (f"unknown key (did you mean {'.'.join(map(str, meant))!r}?)" if meant
                       else f"unknown key; the keys here are {', '.join(known.model_fields)}"
                       if known else
                       "unknown key; check its spelling against the configuration reference")
        value = error.get("input")
        # our own checks quote the value themselves (a URL with its credentials masked)
        quiet = error["type"] in ("extra_forbidden", "value_error")
        shown = "" if quiet or _looks_secret(key) else (
            f" (got {value!r})" if not isinstance(value, dict) else ""
        )
        problems.append(f"{key}: {message}{shown}")
    return f"Invalid configuration in {prefix}: " + "; ".join(problems) + "."


def _looks_secret(key: str) -> bool:
    return "key" in key.lower() or "secret" in key.lower() or "token" in key.lower()


def closest_key(model: type[BaseModel], path: Sequence[str | int]
                ) -> tuple[str | int, ...] | None:
    """The known key an unknown one at `path` (its sections, then the key; a position in a
    list is kept as it is) most likely meant, as a whole path: the same key in another
    section of `model` (`migration.batch_size` -> `provider.batch_size`), else a key of the
    same section spelled alike (`provider.modle` -> `provider.model`)."""
    if not path:
        return None
    *within, key = path
    sections = [part for part in within if isinstance(part, str)]
    section = section_of(model, path)
    for name, field in model.model_fields.items():
        other = section_type(field.annotation)
        if (other is not None and other is not section and len(sections) <= 1
                and get_origin(field.annotation) is not list and key in other.model_fields):
            return (name, key)
    close = difflib.get_close_matches(str(key), list(section.model_fields), n=1
                                      ) if section is not None else []
    return (*within, close[0]) if close else None


def section_of(model: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The section of `model` that holds the key at `path` (positions in a list skipped);
    None when a part of the path is no section."""
    section: type[BaseModel] | None = model
    for name in [part for part in path[:-1] if isinstance(part, str)]:
        field = section.model_fields.get(name) if section is not None else None
        section = section_type(field.annotation) if field is not None else None
    return section


def section_type(annotation: Any) -> type[BaseModel] | None:
    """The settings section an annotation holds (through `X | None`, `list[X]`), or None for
    a value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
