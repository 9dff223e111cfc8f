"""Faces seen by a camera (Identify and CreateFace with a Sighting): the camera checked, the call made, one history
event per face recorded and published to WatchEvents subscribers.

CreateFace searches before it enrolls, so that the new face is not its own best match: each face's person
(persons.py) and best match come from the faces enrolled before it.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

from findface_grpc.errors import InvalidArgument
from findface_grpc.gateway import scoring
from findface_grpc.gateway.cameras import Cameras
from findface_grpc.gateway.domain import DEFAULT_GALLERY, Box, Enrollment, IdentifyResult, MultiFace
from findface_grpc.gateway.enrollment import Enroller
from findface_grpc.gateway.events import EventHub
from findface_grpc.gateway.history import Event, History, Sighting, frame_time, new_event
from findface_grpc.gateway.limits import MAX_LABEL_CHARS, check_text
from findface_grpc.gateway.metadata import utcnow
from findface_grpc.gateway.persons import Persons
from findface_grpc.gateway.search import Searcher
from findface_grpc.observability.metrics import SIGHTINGS


class Sightings:
    def __init__(self, cameras: Cameras, search: Searcher, enrollment: Enroller, persons: Persons,
                 history: History, hub: EventHub) -> None:
        self.cameras = cameras
        self.search = search
        self.enrollment = enrollment
        self.persons = persons
        self.history = history
        self.hub = hub

    async def sighting(self, camera_id: str, frame_seconds: float, track_id: str) -> Sighting:
        """A client's Sighting checked: its camera must exist."""
        if not camera_id:
            raise InvalidArgument("sighting.camera_id is required")
        check_text("sighting.track_id", track_id, MAX_LABEL_CHARS)
        moment = frame_time(frame_seconds, utcnow())
        camera = await self.cameras.require(camera_id, "sighting.camera_id")
        return Sighting(camera.id, moment, track_id)

    async def identify(self, sighting: Sighting, image: bytes, bboxes: Sequence[Box], gallery: str, n: int,
                       threshold: scoring.Threshold, selector: MultiFace, try_rotations: bool) -> IdentifyResult:
        result = await self.search.identify(image=image, bboxes=bboxes, gallery=gallery, n=n, threshold=threshold,
                                            selector=selector, try_rotations=try_rotations, thumbnails=True)
        galleries = [gallery or DEFAULT_GALLERY]
        events = []
        for found in result.results:
            if found.query is None:
                continue
            best = found.matches[0] if found.matches else None
            events.append(new_event(sighting, found.query.bbox, found.query.thumbnail, best,
                                    best.face.person_id if best else "", galleries))
        await self._record(events)
        SIGHTINGS.labels("identify").inc(len(events))
        return result

    async def create_face(self, sighting: Sighting, image: bytes, bboxes: Sequence[Box], meta: str,
                          galleries: Sequence[str], selector: MultiFace, person_id: str, photo: str,
                          min_quality: float, try_rotations: bool) -> Enrollment:
        names, detection = await self.enrollment.detect(
            image, bboxes, meta, galleries, selector, person_id, sighting.camera_id, min_quality, try_rotations,
            thumbnails=True,
        )
        choices = [await self.persons.choose(f.descriptor, sighting.camera_id)  # type: ignore[arg-type]
                   for f in detection.faces]
        enrollment = await self.enrollment.enroll_detected(
            image, detection, names, meta, [person_id or c.person_id for c in choices], sighting.camera_id, photo,
        )
        events = [
            new_event(sighting, face.bbox, found.thumbnail, choice.match, face.person_id, face.galleries, face.id)
            for face, found, choice in zip(enrollment.faces, detection.faces, choices)
        ]
        # The faces are enrolled: their events are recorded even if the client gives up now.
        await asyncio.shield(self._record(events))
        SIGHTINGS.labels("create_face").inc(len(events))
        return enrollment

    async def _record(self, events: list[Event]) -> None:
        self.hub.publish(await self.history.record(events))
