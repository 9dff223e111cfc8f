"""Live events for WatchEvents subscribers, within one gateway process.

Publishing never waits: each subscriber has a bounded queue, and when it is full the oldest event in it is
dropped and counted, the count handed over with the next event the subscriber reads (Event.missed). A subscriber
that reads slowly loses events; the gateway and the other subscribers do not slow down.

Events posted through another gateway process reach only that process's subscribers; a subscriber that must see
everything reconnects with after_id, which replays them from the history.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from findface_grpc.errors import InvalidArgument
from findface_grpc.gateway.domain import check_gallery_name
from findface_grpc.gateway.history import MAX_CAMERA_FILTER, Event, HistoryQuery, check_query
from findface_grpc.observability.metrics import WATCH_DROPPED, WATCH_SUBSCRIBERS

log = logging.getLogger(__name__)


def event_filter(camera_ids: Iterable[str], galleries: Iterable[str]) -> "EventFilter":
    """A WatchEvents request's filter, checked: as many cameras as a history search takes, valid gallery names."""
    cameras = tuple(camera_ids)
    names = tuple(galleries)
    check_query(HistoryQuery(camera_ids=cameras))
    if len(names) > MAX_CAMERA_FILTER:
        raise InvalidArgument(f"galleries: at most {MAX_CAMERA_FILTER}, got {len(names)}")
    for name in names:
        check_gallery_name(name, "galleries")
    return EventFilter(frozenset(cameras), frozenset(names))


@dataclass(frozen=True)
class EventFilter:
    camera_ids: frozenset[str] = frozenset()
    galleries: frozenset[str] = frozenset()

    def accepts(self, event: Event) -> bool:
        if self.camera_ids and event.camera_id not in self.camera_ids:
            return False
        return not self.galleries or not self.galleries.isdisjoint(event.galleries)


@dataclass(eq=False)
class Subscription:
    filter: EventFilter
    size: int
    queue: deque = field(default_factory=deque)  # [event, how many were lost just before it]
    missed: int = 0  # lost with nothing queued after them yet (a queue of one)
    dropped_total: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> None:
        if not self.filter.accepts(event):
            return
        if len(self.queue) >= self.size:
            _, lost = self.queue.popleft()
            self.dropped_total += 1
            WATCH_DROPPED.inc()
            # The next event read now follows the dropped one and whatever was lost before it.
            if self.queue:
                self.queue[0][1] += lost + 1
            else:
                self.missed += lost + 1
        self.queue.append([event, self.missed])
        self.missed = 0
        self.ready.set()

    async def next(self) -> tuple[Event, int]:
        """The oldest event not read yet and how many were lost just before it; waits for one."""
        while not self.queue:
            self.ready.clear()
            await self.ready.wait()
        event, lost = self.queue.popleft()
        return event, lost


class EventHub:
    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self.published = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, camera_ids: Iterable[str] = (), galleries: Iterable[str] = ()) -> Subscription:
        subscription = Subscription(event_filter(camera_ids, galleries), self.queue_size)
        self._subscribers.add(subscription)
        WATCH_SUBSCRIBERS.set(len(self._subscribers))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        WATCH_SUBSCRIBERS.set(len(self._subscribers))
        if subscription.dropped_total:
            log.info("a WatchEvents subscriber left having lost %d events to its full queue",
                     subscription.dropped_total)

    def publish(self, events: Iterable[Event]) -> None:
        """Hand the events to every subscriber that wants them; never waits (runs on the event loop)."""
        for event in events:
            self.published += 1
            for subscription in self._subscribers:
                subscription.offer(event)
