"""Cameras (VideoService, the original's /camera): what a video detector runs, kept in MongoDB, collection
`cameras`: `_id` the camera's uuid, meta, url, detector, rot and roi ([x, y, width, height] or absent),
created_by (the token's name), created, updated, and status (what a video detector last reported of it: state,
reason, detector, at).

A camera's url may hold the stream's credentials, so it is shown only to the token that created the camera and
to admin tokens (`[gateway].admin_tokens`); it is never logged.
"""
from __future__ import annotations

import uuid
import enum
from dataclasses import dataclass, replace
from datetime import datetime

import pymongo
from pymongo import ReturnDocument

from findface_grpc.errors import InvalidArgument, NotFound
from findface_grpc.gateway.limits import MAX_LABEL_CHARS, MAX_META_CHARS, check_text, echo
from findface_grpc.gateway.metadata import MetadataStore, _in_thread, utcnow

MAX_URL_CHARS = 2048
# Frames are far smaller; a larger coordinate is a mistake, not a camera.
MAX_REGION_PX = 1 << 16
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
MAX_REASON_CHARS = 1024


@dataclass(frozen=True)
class Region:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class CameraSpec:
    """What a client gives of a camera (create, or replace with PUT semantics)."""

    meta: str = ""
    url: str = ""
    detector: str = ""
    rot: Region | None = None
    roi: Region | None = None


class CameraState(enum.Enum):
    RUNNING = "running"
    NOT_RUNNING = "not_running"


@dataclass(frozen=True)
class CameraStatus:
    """What a video detector last reported of a camera."""

    state: CameraState
    reason: str
    detector: str
    reported_at: datetime


@dataclass(frozen=True)
class StatusReport:
    camera_id: str
    state: CameraState
    reason: str = ""


@dataclass(frozen=True)
class Camera:
    id: str
    meta: str
    url: str
    detector: str
    rot: Region | None
    roi: Region | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    url_hidden: bool = False
    status: CameraStatus | None = None


def check_region(field: str, region: Region | None) -> Region | None:
    if region is None:
        return None
    values = (region.x, region.y, region.width, region.height)
    if any(v < 0 or v > MAX_REGION_PX for v in values):
        raise InvalidArgument(f"{field}: coordinates must be within 0..{MAX_REGION_PX}")
    if region.width == 0 or region.height == 0:
        raise InvalidArgument(f"{field}: width and height must be > 0")
    return region


def check_spec(spec: CameraSpec) -> CameraSpec:
    check_text("meta", spec.meta, MAX_META_CHARS)
    check_text("url", spec.url, MAX_URL_CHARS)
    check_text("detector", spec.detector, MAX_LABEL_CHARS)
    # The url is handed to FFmpeg by the detector: a control character in it is never part of a stream's address.
    if any(ord(c) < 32 or ord(c) == 127 for c in spec.url):
        raise InvalidArgument("url: control characters are not allowed")
    check_region("rot", spec.rot)
    check_region("roi", spec.roi)
    return spec


def camera_id_or_none(text: str) -> str | None:
    """The canonical form of a camera id, or None when `text` cannot be one (so it names no camera)."""
    try:
        return str(uuid.UUID(text)) if len(text) <= 64 else None
    except ValueError:
        return None


def _region_doc(region: Region | None) -> list[int] | None:
    return None if region is None else [region.x, region.y, region.width, region.height]


def _region(value) -> Region | None:
    return Region(*(int(v) for v in value)) if value else None


def _status(value: dict | None) -> CameraStatus | None:
    if not value:
        return None
    return CameraStatus(CameraState(value["state"]), value.get("reason", ""), value.get("detector", ""), value["at"])


def _camera(doc: dict) -> Camera:
    return Camera(id=doc["_id"], meta=doc.get("meta", ""), url=doc.get("url", ""), detector=doc.get("detector", ""),
                  rot=_region(doc.get("rot")), roi=_region(doc.get("roi")), created_by=doc.get("created_by", ""),
                  created_at=doc["created"], updated_at=doc.get("updated", doc["created"]),
                  status=_status(doc.get("status")))


class CameraStore:
    """The `cameras` collection, on the metadata store's client, threads and outage breaker."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.collection = metadata.db["cameras"]
        self.outage = metadata.outage
        self._executor = metadata._executor

    @_in_thread
    def ensure_schema(self) -> None:
        self.collection.create_index([("detector", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)])

    @_in_thread
    def insert(self, spec: CameraSpec, created_by: str) -> Camera:
        now = utcnow()
        doc = {"_id": str(uuid.uuid4()), "meta": spec.meta, "url": spec.url, "detector": spec.detector,
               "rot": _region_doc(spec.rot), "roi": _region_doc(spec.roi), "created_by": created_by,
               "created": now, "updated": now}
        self.collection.insert_one(doc)
        return _camera(doc)

    @_in_thread
    def get(self, camera_id: str) -> Camera | None:
        doc = self.collection.find_one({"_id": camera_id})
        return _camera(doc) if doc else None

    @_in_thread
    def replace(self, camera_id: str, spec: CameraSpec) -> Camera | None:
        doc = self.collection.find_one_and_update(
            {"_id": camera_id},
            {"$set": {"meta": spec.meta, "url": spec.url, "detector": spec.detector, "rot": _region_doc(spec.rot),
                      "roi": _region_doc(spec.roi), "updated": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        return _camera(doc) if doc else None

    @_in_thread
    def delete(self, camera_id: str) -> bool:
        return self.collection.delete_one({"_id": camera_id}).deleted_count == 1

    @_in_thread
    def set_status(self, detector: str, reports: list[StatusReport], created_by: str | None) -> int:
        """Each report's camera gets its status, if it exists (and, with `created_by`, was created by it)."""
        at = utcnow()
        updated = 0
        for report in reports:
            query: dict = {"_id": report.camera_id}
            if created_by is not None:
                query["created_by"] = created_by
            status = {"state": report.state.value, "reason": report.reason, "detector": detector, "at": at}
            updated += self.collection.update_one(query, {"$set": {"status": status}}).matched_count
        return updated

    @_in_thread
    def page(self, detector: str, after_id: str, limit: int) -> list[Camera]:
        query: dict = {"detector": detector} if detector else {}
        if after_id:
            query["_id"] = {"$gt": after_id}
        return [_camera(d) for d in self.collection.find(query).sort("_id", pymongo.ASCENDING).limit(limit)]


@dataclass(frozen=True)
class CameraPage:
    cameras: tuple[Camera, ...]
    next_after_id: str


class Cameras:
    """Camera CRUD as a caller sees it: `caller` is the calling token's name, None when tokens are off (every
    caller is then trusted and sees every url)."""

    def __init__(self, store: CameraStore, admin_tokens: tuple[str, ...]) -> None:
        self.store = store
        self.admin_tokens = frozenset(admin_tokens)

    def _shown(self, camera: Camera, caller: str | None) -> Camera:
        if caller is None or caller in self.admin_tokens or caller == camera.created_by:
            return camera
        return replace(camera, url="", url_hidden=True)

    async def require(self, camera_id: str, field: str = "id") -> Camera:
        """The camera, url included (for the gateway's own use); NotFound naming `field` otherwise."""
        canonical = camera_id_or_none(camera_id)
        camera = await self.store.get(canonical) if canonical else None
        if camera is None:
            raise NotFound(f"{field}: camera {echo(camera_id)!r} not found")
        return camera

    async def create(self, spec: CameraSpec, caller: str | None) -> Camera:
        return self._shown(await self.store.insert(check_spec(spec), caller or ""), caller)

    async def get(self, camera_id: str, caller: str | None) -> Camera:
        return self._shown(await self.require(camera_id), caller)

    async def update(self, camera_id: str, meta: str | None, url: str | None, detector: str | None,
                     rot: Region | None, roi: Region | None, caller: str | None) -> Camera:
        """PUT semantics: rot and roi as given (None removes them); meta, url and detector kept when None."""
        old = await self.require(camera_id)
        spec = check_spec(CameraSpec(
            meta=old.meta if meta is None else meta, url=old.url if url is None else url,
            detector=old.detector if detector is None else detector, rot=rot, roi=roi,
        ))
        camera = await self.store.replace(old.id, spec)
        if camera is None:
            raise NotFound(f"id: camera {echo(camera_id)!r} not found")
        return self._shown(camera, caller)

    async def delete(self, camera_id: str) -> None:
        canonical = camera_id_or_none(camera_id)
        if not canonical or not await self.store.delete(canonical):
            raise NotFound(f"id: camera {echo(camera_id)!r} not found")

    async def report(self, detector: str, reports: list[StatusReport], caller: str | None) -> int:
        """A video detector's report of its cameras; returns how many were updated. A caller that is not an admin
        token reports on the cameras it created only: the same cameras whose urls it may see."""
        if len(reports) > LIST_LIMIT_MAX:
            raise InvalidArgument(f"cameras: at most {LIST_LIMIT_MAX} a report, got {len(reports)}")
        check_text("detector", detector, MAX_LABEL_CHARS)
        known = []
        for report in reports:
            check_text("reason", report.reason, MAX_REASON_CHARS)
            canonical = camera_id_or_none(report.camera_id)
            if canonical:
                known.append(replace(report, camera_id=canonical))
        owner = None if caller is None or caller in self.admin_tokens else caller
        return await self.store.set_status(detector, known, owner) if known else 0

    async def list(self, detector: str, after_id: str, limit: int, caller: str | None) -> CameraPage:
        limit = limit or LIST_LIMIT_DEFAULT
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be within 1..{LIST_LIMIT_MAX}, got {limit}")
        check_text("detector", detector, MAX_LABEL_CHARS)
        check_text("after_id", after_id, 64)
        # One more than asked tells whether another page follows.
        found = await self.store.page(detector, after_id, limit + 1)
        page = tuple(self._shown(c, caller) for c in found[:limit])
        return CameraPage(page, page[-1].id if len(found) > limit else "")
