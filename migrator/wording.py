"""How a count reads in a message or a report: `1 point has`, `2 points have`."""

from __future__ import annotations

__all__ = ["counted", "has"]


def counted(count: int, noun: str) -> str:
    """`1 request`, `2 requests`, `1,024 requests`."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def has(count: int, singular: str = "has", plural: str = "have") -> str:
    """The word that agrees with `count`: `has`/`have`, or the pair given (`is`/`are`,
    `it`/`them`)."""
    return singular if count == 1 else plural
