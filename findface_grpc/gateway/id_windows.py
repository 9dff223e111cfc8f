"""Paging through documents (faces, history events) by windows of ids, so that a page costs the documents of the windows read.

Some MongoDB-protocol servers (SecantusDB) serve a filter from an index only in its plainest shapes, equality on
an index's first field with a range on its second, and otherwise load every candidate and sort it themselves, a
limit or not: `find({"galleries": g, "state": "active"}).sort("_id", -1).limit(20)` reads and sorts every face
of the gallery (34 s for "default" at a million), and with an `_id` bound beside those every active face.
`{"galleries": g, "_id": {"$gte": lo, "$lt": hi}}` reads only the gallery's documents in the window, and is a
plain index range on MongoDB as well. So a page is read window by window, the other conditions
checked on the documents that come back, each window wider than the last (by how many matches the ids read so
far held) until the page is full or the ids run out: a page costs about the documents of its windows.

Where two indexes could serve a page (a gallery's and a meta value's), each has its own walk and the one that
has read fewer documents reads next; the first to fill the page or reach the end answers (`race`, which also takes
walks of other kinds, such as history_pages.py's over frame times). Whichever condition is the more selective,
that costs at most about twice the cheaper walk. Pure: the reads are the callers'.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

# A read of the documents with lo <= _id < hi that one index serves, in any order.
Fetch = Callable[[int, int], list[dict]]

GROWTH_MIN = 2  # so that reaching the end of the ids takes logarithmically many windows
GROWTH_MAX = 16  # so that an estimate from the few matches of the first windows does not leap far past the page
GROWTH_EMPTY = 4


class IdWalk:
    """A walk down (or up) the ids by windows that one fetch serves, the matches collected in page order."""

    def __init__(self, fetch: Fetch, keep: Callable[[dict], bool], start: int, stop: int, want: int,
                 descending: bool, id_cost: float = 0.0, max_width: int = 0) -> None:
        """`id_cost`: what looking up one id of a window costs beside the documents found, in documents read, for
        a fetch that looks up every id (point lookups) rather than reading an index range; `max_width`: its
        windows' largest width (0: none), so that one window never costs far more than the race expects."""
        self.fetch, self.keep, self.start, self.stop, self.want = fetch, keep, start, stop, want
        self.descending, self.id_cost, self.max_width = descending, id_cost, max_width
        self.frontier = start  # the bound reached: exclusive upper one going down, inclusive lower one going up
        self.width = want
        self.read = 0.0  # the cost so far, in documents read
        self.found: list[dict] = []

    def done(self) -> bool:
        return len(self.found) >= self.want or self.frontier == self.stop

    def result(self) -> list[dict]:
        return self.found[:self.want]

    def step(self) -> None:
        if self.descending:
            lo, hi = max(self.stop, self.frontier - self.width), self.frontier
            self.frontier = lo
        else:
            lo, hi = self.frontier, min(self.stop, self.frontier + self.width)
            self.frontier = hi
        docs = self.fetch(lo, hi)
        self.read += len(docs) + self.id_cost * (hi - lo)
        self.found.extend(sorted((d for d in docs if self.keep(d)), key=lambda d: d["_id"], reverse=self.descending))
        self.width = next_width(self.width, abs(self.frontier - self.start), len(self.found), self.want)
        if self.max_width:
            self.width = min(self.width, self.max_width)


class Walk(Protocol):
    read: float

    def done(self) -> bool: ...

    def result(self) -> list[dict]: ...

    def step(self) -> None: ...


def race(walks: Sequence[Walk]) -> list[dict]:
    """The answer of the first walk to finish, the one that has read least stepping next."""
    while True:
        for walk in walks:
            if walk.done():
                return walk.result()
        min(walks, key=lambda w: w.read).step()


def page(fetches: Sequence[Fetch], keep: Callable[[dict], bool], start: int, stop: int, want: int,
         descending: bool) -> list[dict]:
    """The first `want` documents `keep` accepts, by id: descending, those with stop <= _id < start, largest
    first; ascending, those with start <= _id < stop, smallest first. Each fetch must see every such document
    that `keep` accepts."""
    if not valid(start, stop, want, descending) or not fetches:
        return []
    return race([IdWalk(fetch, keep, start, stop, want, descending) for fetch in fetches])


def valid(start: int, stop: int, want: int, descending: bool) -> bool:
    """Whether the bounds hold any id and a page is wanted."""
    return want > 0 and (start > stop if descending else start < stop)


def next_width(width: int, covered: int, found: int, want: int) -> int:
    """The next window's width: what the density of matches so far says the rest of the page needs, within
    GROWTH_MIN..GROWTH_MAX times the last one."""
    if found == 0:
        return width * GROWTH_EMPTY
    estimate = covered * (want - found) // found + 1
    return min(max(estimate, width * GROWTH_MIN), width * GROWTH_MAX)
