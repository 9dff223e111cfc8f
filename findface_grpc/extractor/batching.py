"""Cross-request batching for the embedder and the attribute models.

Concurrent requests each hand over their few aligned crops; a worker takes whatever is queued (up to the model's
batch size) and runs the model once on it. At concurrency 1 nothing waits for company: a lone request is
embedded at once, so batching costs latency only when there is a queue to batch.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from findface_grpc.errors import Unavailable
from findface_grpc.extractor.models.base import Embedder
from findface_grpc.observability import metrics

log = logging.getLogger(__name__)


class ModelBatcher:
    """Runs `model` (N x ... inputs -> N x ... outputs) on the inputs of concurrent calls together.
    `empty` is the answer to no inputs, without a model call."""

    def __init__(
        self, model: Callable[[np.ndarray], np.ndarray], empty: np.ndarray, executor: Executor, max_batch: int,
        workers: int = 1, name: str = "model",
    ) -> None:
        self.model = model
        self.empty = empty
        self.name = name
        self.executor = executor
        self.max_batch = max(1, max_batch)
        self.workers = max(1, workers)
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self.batches = 0  # model calls made, for tests and stats
        self.crops = 0
        metrics.MODEL_QUEUE.labels(name).set_function(self._queue.qsize)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(Unavailable("extractor is shutting down"))

    async def run(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return self.empty
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((crops, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            total = len(items[0][0])
            # Take what is already waiting, without sleeping for more.
            while total < self.max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                items.append(nxt)
                total += len(nxt[0])
            batch = items[0][0] if len(items) == 1 else np.concatenate([c for c, _ in items])
            started = time.perf_counter()
            try:
                vectors = await loop.run_in_executor(self.executor, self.model, batch)
            except Exception as exc:  # noqa: BLE001 - hand the failure to every waiting request
                log.exception("%s on a batch of %d failed", self.name, len(batch))
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            metrics.MODEL_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            metrics.MODEL_BATCH.labels(self.name).observe(len(batch))
            self.batches += 1
            self.crops += len(batch)
            start = 0
            for crops, future in items:
                if not future.done():
                    future.set_result(vectors[start : start + len(crops)])
                start += len(crops)


class EmbedBatcher(ModelBatcher):
    def __init__(self, embedder: Embedder, executor: Executor, max_batch: int, workers: int = 1) -> None:
        super().__init__(
            embedder.embed, np.zeros((0, embedder.dim), np.float32), executor, max_batch, workers, "embedding"
        )
        self.embedder = embedder

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        return await self.run(crops)
