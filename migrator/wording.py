"""How things read in a message or a report: a count (`1 point has`, `2 points have`), a
vector's name (`'dense'`, or `(unnamed)` for the unnamed one), a configuration that did not
validate (each key and what is wrong with it, never a secret's value)."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["counted", "describe_validation", "has", "vector_label"]


def counted(count: int, noun: str) -> str:
    """`1 request`, `2 requests`, `1,024 requests`."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def has(count: int, singular: str = "has", plural: str = "have") -> str:
    """The word that agrees with `count`: `has`/`have`, or the pair given (`is`/`are`,
    `it`/`them`)."""
    return singular if count == 1 else plural


def vector_label(name: str) -> str:
    """A vector's name in a message: `'dense'`, or `(unnamed)` (not `''`, nor `'(unnamed)'`,
    which reads as a vector of that name)."""
    return repr(name) if name else "(unnamed)"


def describe_validation(exc: ValidationError, *, prefix: str) -> str:
    """`Invalid configuration in {prefix}: key: what is wrong (got value); ...`."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the configuration reference"
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
