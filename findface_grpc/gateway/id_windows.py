"""Paging through face documents by windows of ids, so that a page costs the documents of the windows read.

Some MongoDB-protocol servers (SecantusDB) serve a filter from an index only in its plainest shapes, equality on
an index's first field with a range on its second, and otherwise load every candidate and sort it themselves, a
limit or not: `find({"galleries": g, "state": "active"}).sort("_id", -1).limit(20)` reads and sorts every face
of the gallery (34 s for "default" at a million), and with an `_id` bound beside those every active face.
`{"galleries": g, "_id": {"$gte": lo, "$lt": hi}}` reads only the gallery's documents in the window, and is a
plain index range on MongoDB as well. So a page is read window by window, the other conditions
checked on the documents that come back, each window wider than the last (by how many matches the ids read so
far held) until the page is full or the ids run out: a page costs about the documents of its windows.

Where two indexes could serve a page (a gallery's and a meta value's), each has its own windows and the one that
has read fewer documents reads next; the first to fill the page or reach the end answers. Whichever condition is
the more selective, that costs at most about twice the cheaper walk. Pure: the reads are the callers'.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A read of the documents with lo <= _id < hi that one index serves, in any order.
Fetch = Callable[[int, int], list[dict]]

GROWTH_MIN = 2  # so that reaching the end of the ids takes logarithmically many windows
GROWTH_MAX = 16  # so that an estimate from the few matches of the first windows does not leap far past the page
GROWTH_EMPTY = 4


@dataclass
class _Walk:
    fetch: Fetch
    frontier: int  # the bound reached: exclusive upper one going down, inclusive lower one going up
    width: int
    read: int = 0  # documents fetched
    found: list[dict] = field(default_factory=list)  # matches, in page order


def page(fetches: Sequence[Fetch], keep: Callable[[dict], bool], start: int, stop: int, want: int,
         descending: bool) -> list[dict]:
    """The first `want` documents `keep` accepts, by id: descending, those with stop <= _id < start, largest
    first; ascending, those with start <= _id < stop, smallest first. Each fetch must see every such document
    that `keep` accepts."""
    if want <= 0 or not fetches or (start <= stop if descending else start >= stop):
        return []
    walks = [_Walk(fetch, start, want) for fetch in fetches]
    while True:
        for walk in walks:
            if len(walk.found) >= want or walk.frontier == stop:
                return walk.found[:want]
        walk = min(walks, key=lambda w: w.read)
        _step(walk, keep, start, stop, want, descending)


def _step(walk: _Walk, keep: Callable[[dict], bool], start: int, stop: int, want: int, descending: bool) -> None:
    if descending:
        lo, hi = max(stop, walk.frontier - walk.width), walk.frontier
        walk.frontier = lo
    else:
        lo, hi = walk.frontier, min(stop, walk.frontier + walk.width)
        walk.frontier = hi
    docs = walk.fetch(lo, hi)
    walk.read += len(docs)
    walk.found.extend(sorted((d for d in docs if keep(d)), key=lambda d: d["_id"], reverse=descending))
    walk.width = next_width(walk.width, abs(walk.frontier - start), len(walk.found), want)


def next_width(width: int, covered: int, found: int, want: int) -> int:
    """The next window's width: what the density of matches so far says the rest of the page needs, within
    GROWTH_MIN..GROWTH_MAX times the last one."""
    if found == 0:
        return width * GROWTH_EMPTY
    estimate = covered * (want - found) // found + 1
    return min(max(estimate, width * GROWTH_MIN), width * GROWTH_MAX)
