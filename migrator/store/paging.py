"""A whole collection read page by page, in id order.

Local mode's scroll sorts every id of the collection on each call (a Python key per id:
80 ms at 20,000 points) and walks up to the offset, so reading a collection in pages costs
pages x points; there one call reads `LOCAL_READ` points and they are handed out a page
at a time (a server seeks by the offset: one call a page). Local mode holds the whole
collection in memory anyway; the points read ahead are a bounded share of it. A page's
`next_offset` is always where the next page starts, so a checkpoint taken after any page
resumes exactly there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from . import QdrantStore
from .types import Page

__all__ = ["LOCAL_READ", "pages", "read_size"]

LOCAL_READ = 16_384  # points one local-mode scroll reads (its cost is mostly the sort)


def read_size(store: QdrantStore, page_size: int) -> int:
    """How many points one scroll of a whole-collection read asks for."""
    return max(page_size, LOCAL_READ) if store.local else page_size


def pages(store: QdrantStore, collection: str, *, page_size: int, start: Any = None,
          vectors: Sequence[str] | bool = True, payload: bool = True) -> Iterator[Page]:
    """Pages of at most `page_size` points from `start` (an offset) to the end; the last
    one's `next_offset` is None. An empty collection gives one empty page."""
    offset = start
    size = read_size(store, page_size)
    while True:
        read = store.scroll(collection, limit=size, offset=offset, vectors=vectors,
                            payload=payload)
        points = read.points
        for begin in range(0, max(len(points), 1), page_size):
            chunk = points[begin : begin + page_size]
            more = begin + page_size < len(points)
            yield Page(chunk, points[begin + page_size].id if more else read.next_offset)
        if read.next_offset is None:
            return
        offset = read.next_offset
