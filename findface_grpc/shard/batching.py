"""Concurrent searches gathered into shared passes over the index."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from findface_grpc.errors import Unavailable
from findface_grpc.shard.index import Hit

log = logging.getLogger(__name__)


@dataclass
class _PendingSearch:
    gallery: str
    queries: np.ndarray
    k: int
    threshold: float
    full_scan: bool
    future: asyncio.Future


class SearchBatcher:
    """Gathers the queries of concurrent Search calls into one pass over the index per gallery (and kind of scan).

    A pass over a large shard is bound by memory bandwidth: scoring 8 queries reads the matrix once, as scoring one
    does, so searching queued queries together is how throughput grows with load. Nothing waits for company: a
    worker takes whatever is queued when it becomes free, so a lone query runs at once.

    A call that `search_here` (when given) answers at once, on the event loop, skips the queue: it does so for
    searches too cheap to be worth a thread's hand-off (for which sharing a pass gains little), and returns None for
    the others, which are queued for a pass on `executor`.
    """

    def __init__(
        self,
        search: Callable[[str, np.ndarray, list[int], list[float], bool], list[list[Hit]]],
        executor: Executor,
        max_queries: int,
        workers: int,
        search_here: Callable[[str, np.ndarray, list[int], list[float], bool], list[list[Hit]] | None] | None = None,
    ) -> None:
        self._search = search
        self._search_here = search_here
        self._executor = executor
        self.max_queries = max_queries
        self.workers = workers
        self._queue: asyncio.Queue[_PendingSearch] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self.passes = 0  # index passes run, for tests and logs

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(Unavailable("shard is shutting down"))

    async def search(self, gallery: str, queries: np.ndarray, k: int, threshold: float,
                     full_scan: bool = False) -> list[list[Hit]]:
        if self._search_here is not None:
            hits = self._search_here(gallery, queries, [k] * len(queries), [threshold] * len(queries), full_scan)
            if hits is not None:
                self.passes += 1
                return hits
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_PendingSearch(gallery, queries, k, threshold, full_scan, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            total = len(batch[0].queries)
            while total < self.max_queries and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                total += len(batch[-1].queries)
            by_pass: dict[tuple[str, bool], list[_PendingSearch]] = {}
            for pending in batch:
                if not pending.future.done():  # a caller that gave up (deadline) costs nothing
                    by_pass.setdefault((pending.gallery, pending.full_scan), []).append(pending)
            for (gallery, full_scan), group in by_pass.items():
                await self._pass(loop, gallery, full_scan, group)

    async def _pass(self, loop: asyncio.AbstractEventLoop, gallery: str, full_scan: bool,
                    group: list[_PendingSearch]) -> None:
        queries = group[0].queries if len(group) == 1 else np.concatenate([p.queries for p in group])
        ks = [p.k for p in group for _ in range(len(p.queries))]
        thresholds = [p.threshold for p in group for _ in range(len(p.queries))]
        began = time.perf_counter()
        try:
            hits = await loop.run_in_executor(self._executor, self._search, gallery, queries, ks, thresholds, full_scan)
        except Exception as exc:  # noqa: BLE001 - every caller in the pass gets the failure
            for pending in group:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        self.passes += 1
        log.debug(
            "search pass over %r: %d queries of %d calls in %.1f ms",
            gallery, len(queries), len(group), (time.perf_counter() - began) * 1000,
        )
        start = 0
        for pending in group:
            if not pending.future.done():
                pending.future.set_result(hits[start : start + len(pending.queries)])
            start += len(pending.queries)
