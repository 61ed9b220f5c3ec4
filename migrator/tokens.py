"""Token counting for cost estimates and request packing.

Without a tokenizer for the provider's model, migrator estimates conservatively: about
three characters a token, which over-counts English (closer to four) so that estimated
costs and packed requests err on the safe side.
"""

from __future__ import annotations

from collections.abc import Iterable

CHARS_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    """A conservative estimate of the tokens in `text` (at least 1)."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def estimate_total(texts: Iterable[str]) -> int:
    return sum(estimate_tokens(t) for t in texts)
