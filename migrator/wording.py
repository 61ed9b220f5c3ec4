"""How a count reads in a message or a report (`1 point has`, `2 points have`), and a vector's
name (`'dense'`, or `(unnamed)` for the unnamed one)."""

from __future__ import annotations

__all__ = ["counted", "has", "vector_label"]


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
