"""The history of sightings: one event per face a camera posted (Identify or CreateFace with a Sighting), kept in
MongoDB, collection `history`: `_id` the event id (from the `event_id` counter, so ids grow with arrival), camera,
frame (the frame's time), track, bbox, thumbnail (JPEG), match (a snapshot of the best match's face as it was
then, with the confidences), person_id, face_id, galleries, created.

The match is kept as a snapshot rather than joined on reading: the history says what the operator was shown when
the face was seen, even after the matched face was changed or deleted.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import pymongo
from bson.binary import Binary
from pymongo import ReturnDocument

from findface_grpc.errors import FailedPrecondition, InvalidArgument, NotFound
from findface_grpc.gateway import history_pages
from findface_grpc.gateway.domain import Box, Face, Match
from findface_grpc.gateway.limits import MAX_LABEL_CHARS, check_text
from findface_grpc.gateway.metadata import MetadataStore, MetadataView, _in_thread, ensure_counter, utcnow

log = logging.getLogger(__name__)

EVENT_ID_COUNTER = "event_id"
NO_COUNTER = "the event id counter is missing; restarting the gateway recreates it"
# Events older than the retention are deleted this often.
PRUNE_INTERVAL_S = 3600.0
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
MAX_EVENT_ID = (1 << 63) - 1
MAX_CAMERA_FILTER = 100
# Frame times are unix seconds; anything past this is a unit mistake (milliseconds), not a frame.
MAX_FRAME_TIME = 32503680000.0  # 3000-01-01


@dataclass(frozen=True)
class Sighting:
    camera_id: str
    frame_time: datetime
    track_id: str = ""


@dataclass(frozen=True)
class Event:
    id: int
    camera_id: str
    frame_time: datetime
    track_id: str
    bbox: Box
    thumbnail: bytes
    match: Match | None
    person_id: str
    face_id: int
    galleries: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class EventPage:
    events: tuple[Event, ...]
    next_max_id: int
    prev_max_id: int = 0
    has_prev: bool = False


@dataclass(frozen=True)
class HistoryQuery:
    person_id: str = ""
    camera_ids: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None


def frame_time(seconds: float, now: datetime) -> datetime:
    """A Sighting's frame time (unix seconds; 0 = now) as a time, refused when it cannot be a frame's."""
    if seconds == 0:
        return now
    if not math.isfinite(seconds) or not 0 < seconds < MAX_FRAME_TIME:
        raise InvalidArgument(f"sighting.frame_time: {seconds!r} is not unix seconds")
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # MongoDB keeps milliseconds


def check_query(query: HistoryQuery) -> HistoryQuery:
    check_text("person_id", query.person_id, MAX_LABEL_CHARS)
    if len(query.camera_ids) > MAX_CAMERA_FILTER:
        raise InvalidArgument(f"camera_ids: at most {MAX_CAMERA_FILTER}, got {len(query.camera_ids)}")
    for camera_id in query.camera_ids:
        check_text("camera_ids", camera_id, MAX_LABEL_CHARS)
    if query.start is not None and query.end is not None and query.start >= query.end:
        raise InvalidArgument("start must be before end")
    return query


def _face_doc(face: Face) -> dict:
    return {"id": face.id, "galleries": list(face.galleries), "meta": face.meta, "bbox": list(face.bbox),
            "photo_hash": face.photo_hash, "person_id": face.person_id, "cam_id": face.cam_id, "photo": face.photo,
            "thumbnail": face.thumbnail, "normalized": face.normalized, "created": face.created_at,
            "updated": face.updated_at}


def _face(doc: dict) -> Face:
    return Face(id=doc["id"], galleries=tuple(doc.get("galleries", ())), meta=doc.get("meta", ""),
                bbox=tuple(doc.get("bbox") or (0.0, 0.0, 0.0, 0.0)), photo_hash=doc.get("photo_hash", ""),
                created_at=doc["created"], updated_at=doc.get("updated", doc["created"]),
                person_id=doc.get("person_id", ""), cam_id=doc.get("cam_id", ""), photo=doc.get("photo", ""),
                thumbnail=doc.get("thumbnail", ""), normalized=doc.get("normalized", ""))


def event_doc(event: Event) -> dict:
    match = event.match
    return {"_id": event.id, "camera": event.camera_id, "frame": event.frame_time, "track": event.track_id,
            "bbox": list(event.bbox), "thumbnail": Binary(event.thumbnail),
            "match": None if match is None else {"face": _face_doc(match.face), "confidence": match.confidence,
                                                 "confidence_original": match.confidence_original},
            "person_id": event.person_id, "face_id": event.face_id, "galleries": list(event.galleries),
            "created": event.created_at}


def _event(doc: dict) -> Event:
    match = doc.get("match")
    return Event(id=doc["_id"], camera_id=doc["camera"], frame_time=doc["frame"], track_id=doc.get("track", ""),
                 bbox=tuple(doc.get("bbox") or (0.0, 0.0, 0.0, 0.0)), thumbnail=bytes(doc.get("thumbnail") or b""),
                 match=None if not match else Match(_face(match["face"]), match["confidence"],
                                                    match["confidence_original"]),
                 person_id=doc.get("person_id", ""), face_id=doc.get("face_id", 0),
                 galleries=tuple(doc.get("galleries", ())), created_at=doc["created"])


class HistoryStore(MetadataView):
    """The `history` collection, on the metadata store's client, threads and outage breaker."""

    def __init__(self, metadata: MetadataStore) -> None:
        super().__init__(metadata)
        self.collection = metadata.db["history"]

    @_in_thread
    def ensure_schema(self) -> None:
        self.collection.create_index([("person_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)])
        self.collection.create_index([("camera", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)])
        self.collection.create_index([("frame", pymongo.ASCENDING)])
        self.collection.create_index([("created", pymongo.ASCENDING)])
        ensure_counter(self.counters, EVENT_ID_COUNTER, self.collection)

    @_in_thread
    def insert(self, events: Sequence[Event]) -> list[Event]:
        """Give the events their ids and store them; returns them with their ids."""
        doc = self.counters.find_one_and_update({"_id": EVENT_ID_COUNTER}, {"$inc": {"value": len(events)}},
                                                return_document=ReturnDocument.AFTER)
        if doc is None:
            raise FailedPrecondition(NO_COUNTER)
        first = int(doc["value"]) - len(events) + 1
        stored = [replace(e, id=first + i) for i, e in enumerate(events)]
        self.collection.insert_many([event_doc(e) for e in stored], ordered=False)
        return stored

    @_in_thread
    def get(self, event_id: int) -> Event | None:
        doc = self.collection.find_one({"_id": event_id}) if 0 < event_id <= MAX_EVENT_ID else None
        return _event(doc) if doc else None

    @_in_thread
    def older(self, query: HistoryQuery, max_id: int, limit: int, thumbnails: bool) -> list[Event]:
        """Events matching `query` with id < max_id (0: any), newest first."""
        # Never from above the newest id given out: a client's far larger max_id would cost empty windows.
        start = min(max_id or MAX_EVENT_ID, self._top_id() + 1)
        fields = None if thumbnails else {"thumbnail": 0}
        return [_event(d) for d in self._page(query, fields, start, 0, limit, descending=True)]

    @_in_thread
    def newer_ids(self, query: HistoryQuery, min_id: int, limit: int) -> list[int]:
        """Ids of the events matching `query` with id >= min_id, oldest first."""
        fields = {"person_id": 1, "camera": 1, "frame": 1}
        return [d["_id"] for d in self._page(query, fields, min_id, self._top_id() + 1, limit, descending=False)]

    @_in_thread
    def prune(self, created_before: datetime) -> int:
        return self.collection.delete_many({"created": {"$lt": created_before}}).deleted_count

    @_in_thread
    def after(self, camera_ids: Sequence[str], after_id: int, limit: int) -> list[Event]:
        """Events with id > after_id (of these cameras, if any given), oldest first."""
        query = HistoryQuery(camera_ids=tuple(camera_ids))
        return [_event(d) for d in self._page(query, None, after_id + 1, self._top_id() + 1, limit, descending=False)]

    def _page(self, query: HistoryQuery, fields: dict | None, start: int, stop: int, limit: int,
              descending: bool) -> list[dict]:
        return history_pages.page(self.collection, query.person_id, query.camera_ids, query.start, query.end, fields,
                                  start, stop, limit, descending)

    def _top_id(self) -> int:
        """The largest event id given out (the event id counter): where the newest page starts."""
        doc = self.counters.find_one({"_id": EVENT_ID_COUNTER})
        if doc is None:
            raise FailedPrecondition(NO_COUNTER)
        return int(doc["value"])


class History:
    def __init__(self, store: HistoryStore, retention_days: float = 0.0) -> None:
        """`retention_days`: events recorded longer ago are deleted (hourly); 0 keeps them all."""
        self.store = store
        self.retention = timedelta(days=retention_days) if retention_days else None
        self._pruner: asyncio.Task | None = None

    def start(self) -> None:
        if self.retention is not None:
            self._pruner = asyncio.create_task(self._prune_forever())

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)

    async def prune(self) -> int:
        """Delete the events older than the retention; how many."""
        return await self.store.prune(utcnow() - self.retention) if self.retention is not None else 0

    async def _prune_forever(self) -> None:
        while True:
            try:
                deleted = await self.prune()
                if deleted:
                    log.info("deleted %d history events older than %s", deleted, self.retention)
            except Exception as exc:  # noqa: BLE001 - tried again next round; the history only grows meanwhile
                log.warning("history pruning failed: %s", exc)
            await asyncio.sleep(PRUNE_INTERVAL_S)

    async def record(self, events: Sequence[Event]) -> list[Event]:
        return await self.store.insert(events) if events else []

    async def get(self, event_id: int) -> Event:
        event = await self.store.get(event_id)
        if event is None:
            raise NotFound(f"event {event_id} not found")
        return event

    async def search(self, query: HistoryQuery, max_id: int, limit: int, thumbnails: bool = True) -> EventPage:
        """A page of events, newest first, paged as FaceService.ListFaces (faces.py says how prev is found)."""
        limit = limit or LIST_LIMIT_DEFAULT
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be within 1..{LIST_LIMIT_MAX}, got {limit}")
        if max_id > MAX_EVENT_ID:
            raise InvalidArgument(f"max_id must be within 0..{MAX_EVENT_ID}, got {max_id}")
        check_query(query)
        events = await self.store.older(query, max_id, limit + 1, thumbnails)
        next_max_id = events[limit - 1].id if len(events) > limit else 0
        prev_max_id, has_prev = 0, False
        if max_id:
            newer = await self.store.newer_ids(query, max_id, limit + 1)
            if newer:
                prev_max_id, has_prev = (newer[limit] if len(newer) > limit else 0), True
        return EventPage(tuple(events[:limit]), next_max_id, prev_max_id, has_prev)

    async def after(self, camera_ids: Sequence[str], after_id: int, limit: int) -> list[Event]:
        return await self.store.after(camera_ids, after_id, limit)


def new_event(sighting: Sighting, bbox: Box, thumbnail: bytes, match: Match | None, person_id: str,
              galleries: Sequence[str], face_id: int = 0) -> Event:
    """An event not stored yet (id 0)."""
    return Event(id=0, camera_id=sighting.camera_id, frame_time=sighting.frame_time, track_id=sighting.track_id,
                 bbox=bbox, thumbnail=thumbnail, match=match, person_id=person_id, face_id=face_id,
                 galleries=tuple(galleries), created_at=utcnow())
