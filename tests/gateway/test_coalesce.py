"""SearchCoalescer: which searches wait, which go together, and that each caller gets its own queries' hits.

A stand-in sender here, as in test_fanout.py: the point is the order of calls in flight, which a real shard cannot
be held at on demand. Real shards behind a coalescing gateway are covered in test_lean_search.py.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from findface_grpc.errors import Unavailable
from findface_grpc.gateway.coalesce import SearchCoalescer
from findface_grpc.gateway.domain import Descriptor
from findface_grpc.gateway.merge import Hit


def query(number: int, model: str = "m", dim: int = 4) -> Descriptor:
    """A query whose number its stand-in hits carry back (as the face id)."""
    vector = np.zeros(dim, np.float32)
    vector[0] = number
    return Descriptor(model, vector)


class Shard:
    """Answers each call when released; each query's one hit has the query's number as its face id."""

    def __init__(self, error: Exception | None = None, lists_short: bool = False) -> None:
        self.calls: list[tuple[list[int], str, int, float, float, bool]] = []
        self.release = asyncio.Event()
        self.error = error
        self.lists_short = lists_short

    async def send(self, queries, gallery, k, threshold, timeout, full_scan):
        self.calls.append(([int(q.vector[0]) for q in queries], gallery, k, threshold, timeout, full_scan))
        await self.release.wait()
        if self.error is not None:
            raise self.error
        hits = [[Hit(int(q.vector[0]), 0.5)] for q in queries]
        return hits[:-1] if self.lists_short else hits


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def own(hits: list[list[Hit]]) -> list[int]:
    return [hit_list[0].face_id for hit_list in hits]


def search(coalescer: SearchCoalescer, *numbers: int, timeout: float = 2.0) -> asyncio.Task:
    """A search of gallery g (k 5, threshold 0.3) for the queries of these numbers, under way."""
    return asyncio.create_task(coalescer.search([query(n) for n in numbers], "g", 5, 0.3, timeout))


async def one_call_in_flight(shard: Shard, **options) -> tuple[SearchCoalescer, asyncio.Task]:
    """A coalescer of one call at once, and that call (query 1) in flight."""
    coalescer = SearchCoalescer(shard.send, 1, "shard-0", **options)
    busy = search(coalescer, 1)
    await settle()
    return coalescer, busy


def test_below_the_limit_every_search_goes_at_once_with_its_own_queries():
    async def main():
        shard = Shard()
        coalescer = SearchCoalescer(shard.send, 2, "shard-0")
        first = search(coalescer, 1)
        second = search(coalescer, 2, 3)
        await settle()
        assert shard.calls == [([1], "g", 5, 0.3, 2.0, False), ([2, 3], "g", 5, 0.3, 2.0, False)]
        shard.release.set()
        assert own(await first) == [1] and own(await second) == [2, 3]

    asyncio.run(main())


def test_searches_that_wait_go_together_and_each_gets_its_own_hits():
    async def main():
        shard = Shard()
        coalescer, busy = await one_call_in_flight(shard)
        waiting = [search(coalescer, n) for n in (2, 3)]
        pair = search(coalescer, 4, 5)
        await settle()
        assert len(shard.calls) == 1  # the others wait for the call in flight
        shard.release.set()
        assert own(await busy) == [1]
        assert [own(await w) for w in waiting] == [[2], [3]]
        assert own(await pair) == [4, 5]
        assert [call[0] for call in shard.calls] == [[1], [2, 3, 4, 5]]

    asyncio.run(main())


@pytest.mark.parametrize("other", [
    dict(gallery="h"), dict(k=6), dict(threshold=0.4), dict(full_scan=True), dict(model="n"), dict(dim=8),
])
def test_only_searches_the_shard_answers_alike_go_together(other):
    async def main():
        shard = Shard()
        coalescer, busy = await one_call_in_flight(shard)
        same = search(coalescer, 2)
        differs = asyncio.create_task(coalescer.search(
            [query(3, other.get("model", "m"), other.get("dim", 4))], other.get("gallery", "g"), other.get("k", 5),
            other.get("threshold", 0.3), 2.0, other.get("full_scan", False)))
        await settle()
        shard.release.set()
        await asyncio.gather(busy, same, differs)
        assert [call[0] for call in shard.calls] == [[1], [2], [3]]
        assert shard.calls[2][1:4] == (other.get("gallery", "g"), other.get("k", 5), other.get("threshold", 0.3))
        assert shard.calls[2][5] == other.get("full_scan", False)

    asyncio.run(main())


def test_a_shared_call_keeps_to_the_shards_query_limit():
    async def main():
        shard = Shard()
        coalescer, busy = await one_call_in_flight(shard, max_queries=4)
        waiting = [search(coalescer, *(10 * n + i for i in range(3))) for n in (1, 2)]
        big = search(coalescer, 30, 31, 32, 33)
        await settle()
        # A search of the limit's size gains nothing from waiting: it goes at once, beyond at_once.
        assert [call[0] for call in shard.calls] == [[1], [30, 31, 32, 33]]
        shard.release.set()
        await asyncio.gather(busy, big, *waiting)
        assert [call[0] for call in shard.calls][2:] == [[10, 11, 12], [20, 21, 22]]
        assert [own(w.result()) for w in waiting] == [[10, 11, 12], [20, 21, 22]]

    asyncio.run(main())


def test_a_caller_that_gave_up_is_not_searched_for():
    async def main():
        shard = Shard()
        coalescer, busy = await one_call_in_flight(shard)
        gave_up = search(coalescer, 2)
        stays = search(coalescer, 3)
        await settle()
        gave_up.cancel()
        shard.release.set()
        await asyncio.gather(busy, stays)
        assert [call[0] for call in shard.calls] == [[1], [3]]

    asyncio.run(main())


def test_the_shared_call_lasts_as_long_as_its_latest_deadline():
    async def main():
        shard = Shard()
        coalescer, busy = await one_call_in_flight(shard)
        waiting = [search(coalescer, n, timeout=timeout) for n, timeout in ((2, 1.0), (3, 9.0))]
        await settle()
        shard.release.set()
        await asyncio.gather(busy, *waiting)
        assert 8.0 < shard.calls[1][4] <= 9.0

    asyncio.run(main())


@pytest.mark.parametrize("shard, error", [
    (lambda: Shard(error=Unavailable("shard-0: UNAVAILABLE: connection refused")), "connection refused"),
    (lambda: Shard(lists_short=True), "answered 1 hit lists for 2 queries"),
])
def test_a_failed_shared_call_fails_each_of_its_searches(shard, error):
    async def main():
        stand_in = shard()
        coalescer, busy = await one_call_in_flight(stand_in)
        waiting = [search(coalescer, n) for n in (2, 3)]
        await settle()
        stand_in.release.set()
        results = await asyncio.gather(busy, *waiting, return_exceptions=True)
        assert len(stand_in.calls) == 2
        for result in results[1:]:
            assert isinstance(result, Exception) and error in str(result)
        # The next search is not held by the failed one.
        stand_in.error, stand_in.lists_short = None, False
        assert own(await coalescer.search([query(4)], "g", 5, 0.3, 2.0)) == [4]

    asyncio.run(main())
