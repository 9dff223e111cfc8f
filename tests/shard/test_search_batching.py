"""The search batcher: concurrent calls for one gallery share one pass, each gets its own answer back."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from findface_grpc.errors import InvalidArgument
from findface_grpc.shard.index import DEFAULT_GALLERY, FaceIndex
from findface_grpc.shard.batching import SearchBatcher


def test_queued_calls_for_one_gallery_run_as_one_pass_and_keep_their_own_k_and_threshold():
    rng = np.random.default_rng(30)
    vectors = rng.standard_normal((500, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    idx = FaceIndex(8)
    idx.upsert(np.arange(1, 501), vectors, [("half",) if i % 2 else () for i in range(500)])
    release = threading.Event()
    passes: list[tuple[str, int]] = []

    def search(gallery, queries, ks, thresholds, full_scan):
        passes.append((gallery, len(queries)))
        if len(passes) == 1:
            release.wait(10)  # hold the first pass until every other call is queued behind it
        return idx.search_many(queries, gallery, ks, thresholds)

    calls = [(DEFAULT_GALLERY, vectors[[0]], 5, -1.0)]
    calls += [(DEFAULT_GALLERY, vectors[[i, i + 1]], i, 0.1 * (i % 3)) for i in range(1, 8)]
    calls += [("half", vectors[[9]], 3, -1.0), ("half", vectors[[11]], 4, 0.0)]

    async def run():
        with ThreadPoolExecutor(1) as pool:
            batcher = SearchBatcher(search, pool, max_queries=64, workers=1)
            batcher.start()
            first = asyncio.ensure_future(batcher.search(*calls[0]))
            while not passes:
                await asyncio.sleep(0.01)
            rest = [asyncio.ensure_future(batcher.search(*c)) for c in calls[1:]]
            await asyncio.sleep(0.05)
            release.set()
            results = await asyncio.gather(first, *rest)
            await batcher.stop()
            return results

    results = asyncio.run(run())
    assert passes == [(DEFAULT_GALLERY, 1), (DEFAULT_GALLERY, 14), ("half", 2)]
    for (gallery, queries, k, threshold), got in zip(calls, results):
        alone = idx.search(queries, gallery, k, threshold)
        assert [[h.face_id for h in hits] for hits in got] == [[h.face_id for h in hits] for hits in alone]
        for hits, expected in zip(got, alone):
            assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)


def test_a_failed_pass_fails_every_call_in_it():
    def search(gallery, queries, ks, thresholds, full_scan):
        raise InvalidArgument("broken")

    async def run():
        with ThreadPoolExecutor(1) as pool:
            batcher = SearchBatcher(search, pool, max_queries=64, workers=1)
            batcher.start()
            outcomes = await asyncio.gather(
                *[batcher.search(DEFAULT_GALLERY, np.zeros((1, 4), np.float32), 1, 0.0) for _ in range(3)],
                return_exceptions=True,
            )
            await batcher.stop()
            return outcomes

    assert all(isinstance(o, InvalidArgument) for o in asyncio.run(run()))


@pytest.mark.parametrize("max_queries", [1, 3])
def test_a_pass_takes_at_most_max_queries_unless_one_call_is_bigger(max_queries):
    seen: list[int] = []
    gate = threading.Event()

    def search(gallery, queries, ks, thresholds, full_scan):
        seen.append(len(queries))
        gate.wait(10)
        return [[] for _ in range(len(queries))]

    async def run():
        with ThreadPoolExecutor(1) as pool:
            batcher = SearchBatcher(search, pool, max_queries=max_queries, workers=1)
            batcher.start()
            tasks = [asyncio.ensure_future(batcher.search(DEFAULT_GALLERY, np.zeros((n, 4), np.float32), 1, 0.0))
                     for n in (5, 1, 1, 1, 1)]
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.gather(*tasks)
            await batcher.stop()

    asyncio.run(run())
    assert seen[0] == 5
    assert all(n <= max(max_queries, 1) for n in seen[1:])
    assert sum(seen) == 9


def test_a_call_answered_on_the_event_loop_skips_the_queue_and_one_it_declines_goes_to_a_thread():
    """`search_here` answers cheap calls on the event loop, without a queue; a call it declines (None) is queued for
    a pass on the executor."""
    on_threads: list[str] = []
    here: list[str] = []

    def search(gallery, queries, ks, thresholds, full_scan):
        on_threads.append(threading.current_thread().name)
        return [[] for _ in queries]

    def search_here(gallery, queries, ks, thresholds, full_scan):
        here.append(threading.current_thread().name)
        return [[]] * len(queries) if gallery == "cheap" else None

    async def run():
        with ThreadPoolExecutor(1, thread_name_prefix="search") as pool:
            batcher = SearchBatcher(search, pool, max_queries=64, workers=1, search_here=search_here)
            batcher.start()
            query = np.zeros((1, 4), np.float32)
            cheap = await batcher.search("cheap", query, 1, 0.0)
            costly = await batcher.search("costly", query, 1, 0.0)
            await batcher.stop()
            return cheap, costly

    assert asyncio.run(run()) == ([[]], [[]])
    assert here == [threading.main_thread().name] * 2
    assert on_threads == ["search_0"]


def test_a_search_that_must_not_wait_refuses_while_a_writer_holds_the_index_and_for_stored_descriptors():
    from findface_grpc.shard.locks import WouldBlock

    rng = np.random.default_rng(31)
    vectors = rng.standard_normal((100, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[0] = 0
    vectors[0, 0] = 1.0  # beyond 64-d's clip: its residuals cannot give it back
    idx = FaceIndex(64, residuals=True)
    idx.upsert(np.arange(1, 101), vectors, [()] * 100)
    stored = {i + 1: v for i, v in enumerate(vectors)}
    asked: list[list[int]] = []

    def exact(ids):
        asked.append(ids)
        return {i: stored[i] for i in ids}

    # A query whose candidates all re-score from residuals needs nothing else.
    assert idx.search_many(vectors[[5]], DEFAULT_GALLERY, [1], [0.5], exact=exact, wait=False)[0][0].face_id == 6
    with pytest.raises(WouldBlock):
        idx.search_many(vectors[[0]], DEFAULT_GALLERY, [1], [-1.0], exact=exact, wait=False)
    assert asked == []
    assert idx.search_many(vectors[[0]], DEFAULT_GALLERY, [1], [-1.0], exact=exact)[0][0].face_id == 1
    assert asked == [[1]]

    holding, release = threading.Event(), threading.Event()

    def writer():
        with idx._lock.exclusive():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(WouldBlock):
            idx.search_many(vectors[[5]], DEFAULT_GALLERY, [1], [0.5], wait=False)
    finally:
        release.set()
        thread.join()
    assert idx.search_many(vectors[[5]], DEFAULT_GALLERY, [1], [0.5], wait=False)[0][0].face_id == 6
