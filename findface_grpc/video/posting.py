"""Posting chosen faces to the gateway, in order, through a bounded queue.

While the gateway is down (or busy) the post at the head is retried with backoff and new ones wait; once the
queue is full the oldest waiting post is dropped and counted, so that a long outage costs the oldest sightings,
never the detector's memory, and fresh ones go first once it is back. A post the gateway refuses (the camera was
deleted, no face in the crop, a bad token) is dropped and counted as rejected: retrying would not help.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from findface_grpc.video.clients import Rejected, Transient
from findface_grpc.video.domain import Snapshot
from findface_grpc.video.source import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Post:
    camera_id: str
    snapshot: Snapshot


@dataclass
class PostCounters:
    sent: int = 0
    dropped: int = 0  # queue full
    rejected: int = 0
    retries: int = 0


Send = Callable[[Post], Awaitable[None]]


class Poster:
    def __init__(self, send: Send, capacity: int, backoff: Backoff) -> None:
        self.send = send
        self.capacity = capacity
        self.backoff = backoff
        self.counters = PostCounters()
        self._queue: deque[Post] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="video-poster")

    def put(self, post: Post) -> None:
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.counters.dropped += 1
            if self.counters.dropped == 1 or self.counters.dropped % 100 == 0:
                log.warning("post queue full (%d): %d posts dropped so far", self.capacity, self.counters.dropped)
        self._queue.append(post)
        self._idle.clear()
        self._ready.set()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def drained(self, timeout: float) -> bool:
        """Wait until every queued post is sent or given up; False if that took longer than `timeout`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            post = self._queue[0]
            try:
                await self.send(post)
            except Transient as exc:
                self.counters.retries += 1
                wait = self.backoff.failed()
                log.warning("posting a face of camera %s failed (%s); %d waiting, retrying in %.1fs",
                            post.camera_id, exc, len(self._queue), wait)
                await asyncio.sleep(wait)
                continue
            except Rejected as exc:
                self.counters.rejected += 1
                log.warning("the gateway refused a face of camera %s: %s", post.camera_id, exc)
            else:
                self.counters.sent += 1
                self.backoff.reset()
            # The head may have been dropped meanwhile by a full queue: remove this post only if it is still there.
            if self._queue and self._queue[0] is post:
                self._queue.popleft()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
