"""Pages of the history's events read by windows (id_windows.py says why), so that a page costs about the events of
the windows read, not every event that matches its filters.

Each filter of the query gives a walk down (or up) the ids on an index SecantusDB serves as equality plus an `_id`
range: the person's (person_id, _id) and, per camera, (camera, _id). With neither, the walk looks up every id of
its window by `$in` (a range on `_id` alone is a scan of the collection there), which costs each id, found or not:
event ids are dense, given out by a counter and pruned oldest first. A time range adds a walk over the frame
index by windows of frame time; frames are not in id order, so that walk's page is known only once it has read
the whole range, which makes it the cheaper one for a short range far back. The walks race (id_windows.race): the
one that has read least reads next, and the first done answers. Every walk's events are checked against every
filter, so a page is exactly what one sorted query would give.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from pymongo.collection import Collection

from findface_grpc.gateway.id_windows import Fetch, IdWalk, Walk, race, valid

# SecantusDB's `$in` on `_id` costs about its length squared: 32 ids a read is near its cheapest, about 145 us a
# found id where an index range reads about 50 us a document, and 30 us a missing id (measured at 20,000 events).
IN_CHUNK = 32
# So each id looked up counts as 2 documents read beside the one found (3 all told), a missing one generously.
ID_COST = 2.0
# The widest window of ids looked up (about 150 ms): a walk that widens 4-16x a window must not overshoot the
# walk racing it by a whole stretch of the history.
MAX_ID_WINDOW = 1024
FIRST_FRAME_WINDOW = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Frame times are checked to be before this at recording (history.MAX_FRAME_TIME): the last window is unbounded.
LAST_FRAME = datetime(3000, 1, 1, tzinfo=timezone.utc)

Keep = Callable[[dict], bool]


def page(collection: Collection, person_id: str, camera_ids: Sequence[str], start_time: datetime | None,
         end_time: datetime | None, fields: dict | None, start: int, stop: int, want: int,
         descending: bool) -> list[dict]:
    """The first `want` events (documents, with `fields`) of this person and these cameras (each if given) whose
    frame is in [start_time, end_time), by id: descending, those with stop <= _id < start, newest first;
    ascending, those with start <= _id < stop, oldest first. `fields` must keep person_id, camera and frame."""
    if not valid(start, stop, want, descending):
        return []
    low, high = _ms(start_time), _ms(end_time)
    keep = _keep(person_id, frozenset(camera_ids), low, high)

    def by(name: str, value: str) -> Fetch:
        return lambda lo, hi: list(collection.find({name: value, "_id": {"$gte": lo, "$lt": hi}}, fields))

    def by_cameras(lo: int, hi: int) -> list[dict]:
        return [d for camera in camera_ids for d in by("camera", camera)(lo, hi)]

    def by_ids(lo: int, hi: int) -> list[dict]:
        return [d for first in range(lo, hi, IN_CHUNK)
                for d in collection.find({"_id": {"$in": list(range(first, min(hi, first + IN_CHUNK)))}}, fields)]

    walks: list[Walk] = []
    if person_id:
        walks.append(IdWalk(by("person_id", person_id), keep, start, stop, want, descending))
    if camera_ids:
        walks.append(IdWalk(by_cameras, keep, start, stop, want, descending))
    if not walks:
        walks.append(IdWalk(by_ids, keep, start, stop, want, descending, ID_COST, MAX_ID_WINDOW))
    if low is not None or high is not None:
        def by_frame(lo: datetime | None, hi: datetime | None) -> list[dict]:
            bounds = {op: t for op, t in (("$gte", lo), ("$lt", hi)) if t is not None}
            return list(collection.find({"frame": bounds}, fields))

        walks.append(FrameWalk(by_frame, keep, low, high, start, stop, want, descending))
    return race(walks)


class FrameWalk:
    """The events whose frame is in [low, high) (either unbounded when None), read by windows of frame time going
    up, each twice as long as the last (four times after an empty one)."""

    def __init__(self, fetch: Callable[[datetime | None, datetime | None], list[dict]], keep: Keep,
                 low: datetime | None, high: datetime | None, start: int, stop: int, want: int,
                 descending: bool) -> None:
        self.fetch, self.keep, self.high = fetch, keep, high
        self.ids = range(stop, start) if descending else range(start, stop)
        self.want, self.descending = want, descending
        self.frontier = low  # where the next window begins; None: below every frame
        self.width = FIRST_FRAME_WINDOW
        self.finished = False
        self.read = 0.0
        self.kept: list[dict] = []

    def done(self) -> bool:
        return self.finished

    def result(self) -> list[dict]:
        return sorted(self.kept, key=lambda d: d["_id"], reverse=self.descending)[:self.want]

    def step(self) -> None:
        end = (self.frontier or EPOCH) + self.width
        limit = self.high or LAST_FRAME
        if end >= limit:
            end, self.finished = self.high, True
        docs = self.fetch(self.frontier, end)
        self.read += len(docs)
        self.kept.extend(d for d in docs if d["_id"] in self.ids and self.keep(d))
        self.frontier = end
        self.width *= 2 if docs else 4


def _keep(person_id: str, cameras: frozenset[str], low: datetime | None, high: datetime | None) -> Keep:
    return lambda d: ((not person_id or d.get("person_id") == person_id)
                      and (not cameras or d.get("camera") in cameras)
                      and (low is None or d["frame"] >= low) and (high is None or d["frame"] < high))


def _ms(moment: datetime | None) -> datetime | None:
    """A bound as MongoDB compares it: to the millisecond below."""
    return None if moment is None else moment.replace(microsecond=moment.microsecond // 1000 * 1000)
