"""Posting chosen faces to the gateway, in order, through a bounded queue.

While the gateway is down (or busy) the post at the head is retried with backoff and new ones wait; once the
queue is full the oldest waiting post is dropped and counted, so that a long outage costs the oldest sightings,
never the detector's memory, and fresh ones go first once it is back. A post the gateway refuses (the camera was
deleted, no face in the crop, a bad token) is dropped and counted as rejected: retrying would not help.

With post-uniq (UniquePosts), a post is first compared with the camera's recent posts and dropped, counted as a
duplicate, when the same person was posted often enough already.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

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
    duplicates: int = 0  # left out by post-uniq


Send = Callable[[Post], Awaitable[None]]
# A posted face's descriptor (L2-normalised), from the extractor.
Describe = Callable[[Post], Awaitable[np.ndarray]]


@dataclass
class _Posted:
    post: Post
    centre: tuple[float, float]
    descriptor: np.ndarray | None = None


def _centre(post: Post) -> tuple[float, float]:
    box = post.snapshot.box
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


class UniquePosts:
    """The original's post-uniq: at most `max_dup` posts of one person per camera within `max_time_diff_s` (frame
    time). A face is compared only with the recent posts whose box centre is within `max_shift` px of its own,
    by the cosine of their descriptors against `threshold` (a coroutine, so that a preset is resolved with the
    extractor's model once it answers). Descriptors are fetched only for such near pairs, and when the extractor
    cannot give one the face is posted: a duplicate costs less than a lost sighting."""

    MAX_RECENT = 256  # per camera: a bound on memory whatever the settings

    def __init__(self, describe: Describe, threshold: Callable[[], Awaitable[float]], max_time_diff_s: float,
                 max_dup: int, max_shift: float) -> None:
        self.describe = describe
        self.threshold = threshold
        self.max_time_diff_s = max_time_diff_s
        self.max_dup = max_dup
        self.max_shift = max_shift
        self._recent: dict[str, deque[_Posted]] = {}

    async def _descriptor(self, posted: _Posted) -> np.ndarray | None:
        if posted.descriptor is None:
            try:
                posted.descriptor = await self.describe(posted.post)
            except (Transient, Rejected) as exc:
                log.warning("post-uniq: no descriptor for a face of camera %s (%s); it counts as unlike the others",
                            posted.post.camera_id, exc)
                return None
        return posted.descriptor

    async def admit(self, post: Post) -> bool:
        """Whether `post` may be sent; an admitted post is remembered for the next ones."""
        time = post.snapshot.frame_time
        recent = self._recent.setdefault(post.camera_id, deque(maxlen=self.MAX_RECENT))
        kept = [p for p in recent if abs(time - p.post.snapshot.frame_time) <= self.max_time_diff_s]
        recent.clear()
        recent.extend(kept)
        entry = _Posted(post, _centre(post))
        near = [p for p in recent if math.dist(p.centre, entry.centre) <= self.max_shift]
        if len(near) >= self.max_dup:
            descriptor = await self._descriptor(entry)
            try:
                threshold = await self.threshold()
            except (Transient, Rejected) as exc:
                log.warning("post-uniq: no similarity threshold (%s); the face is posted", exc)
                descriptor = None
            if descriptor is not None:
                same = 0
                for other in near:
                    theirs = await self._descriptor(other)
                    same += theirs is not None and float(theirs @ descriptor) >= threshold
                if same >= self.max_dup:
                    return False
        recent.append(entry)
        return True


class Poster:
    def __init__(self, send: Send, capacity: int, backoff: Backoff, unique: UniquePosts | None = None) -> None:
        self.send = send
        self.capacity = capacity
        self.backoff = backoff
        self.unique = unique
        self._checked: Post | None = None  # the head post post-uniq admitted (it may be retried)
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
            if self.unique is not None and post is not self._checked:
                if not await self.unique.admit(post):
                    self.counters.duplicates += 1
                    if self._queue and self._queue[0] is post:
                        self._queue.popleft()
                    continue
                self._checked = post
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
