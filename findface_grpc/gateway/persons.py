"""Persons: the person_id of faces (the original's dynamic person creation) and the list of persons.

With `[gateway].person_identify`, a face a camera posts through CreateFace takes the person_id of the most similar
enrolled face above `person_identify_threshold` (on the original product's scale, docs/thresholds.md) among the
faces that have a person_id and come from the same camera (or from any, with `person_identify_global`); with none
that similar, a new person_id (a uuid). The search looks at the PERSON_CANDIDATES most similar faces of the
cluster and, when they are all above the threshold and none will do, at up to `[gateway].max_n`; only where more
faces than that outscore the camera's own does per camera identification miss and start a new person. As in the
original, resembling people can also share one, which an operator corrects with UpdateFace (PUT /face/id/<id>
with person_id). Two first sightings of one person enrolled at the same moment each see the other not yet
enrolled, and start two persons; the next sighting joins the more similar one.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from findface_grpc.errors import InvalidArgument
from findface_grpc.gateway import scoring
from findface_grpc.gateway.config import GatewayConfig
from findface_grpc.gateway.domain import DEFAULT_GALLERY, Descriptor, Face, Match
from findface_grpc.gateway.limits import MAX_LABEL_CHARS, check_text
from findface_grpc.gateway.metadata import ACTIVE, MetadataStore, _in_thread, face_from_doc
from findface_grpc.gateway.search import Searcher

PERSON_CANDIDATES = 100
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000


@dataclass(frozen=True)
class Person:
    id: str
    face_count: int
    face: Face  # its newest face


@dataclass(frozen=True)
class PersonPage:
    persons: tuple[Person, ...]
    next_after_id: str


@dataclass(frozen=True)
class PersonChoice:
    person_id: str  # "" when person identification is off
    match: Match | None  # the face whose person was taken, else the best match; None when nothing is similar


class PersonStore:
    def __init__(self, metadata: MetadataStore) -> None:
        self.faces = metadata.faces
        self.outage = metadata.outage
        self._executor = metadata._executor

    @_in_thread
    def page(self, after_id: str, limit: int) -> list[Person]:
        pipeline = [
            {"$match": {"state": ACTIVE, "person_id": {"$gt": after_id}}},
            {"$sort": {"_id": -1}},
            {"$group": {"_id": "$person_id", "count": {"$sum": 1}, "face": {"$first": "$$ROOT"}}},
            {"$sort": {"_id": 1}},
            {"$limit": limit},
        ]
        return [Person(row["_id"], int(row["count"]), face_from_doc(row["face"]))
                for row in self.faces.aggregate(pipeline)]


class Persons:
    def __init__(self, config: GatewayConfig, search: Searcher, store: PersonStore) -> None:
        self.enabled = config.person_identify
        self.global_ = config.person_identify_global
        self.threshold = scoring.Threshold(original_value=config.person_identify_threshold)
        self.max_n = config.max_n
        self.search = search
        self.store = store

    async def choose(self, descriptor: Descriptor, camera_id: str) -> PersonChoice:
        """The person a new face of `camera_id` belongs to (see the module's docstring), and its best match."""
        if not self.enabled:
            found = await self.search.identify(descriptor=descriptor, gallery=DEFAULT_GALLERY, n=1)
            matches = found.results[0].matches if found.results else ()
            return PersonChoice("", matches[0] if matches else None)
        n = PERSON_CANDIDATES
        while True:
            found = await self.search.identify(descriptor=descriptor, gallery=DEFAULT_GALLERY, n=n,
                                               threshold=self.threshold)
            matches = found.results[0].matches if found.results else ()
            for match in matches:
                if match.face.person_id and (self.global_ or match.face.cam_id == camera_id):
                    return PersonChoice(match.face.person_id, match)
            # All n were above the threshold and none would do: more may follow, so look as far as a search goes.
            if len(matches) < n or n >= self.max_n:
                return PersonChoice(uuid.uuid4().hex, matches[0] if matches else None)
            n = self.max_n

    async def list(self, after_id: str, limit: int) -> PersonPage:
        limit = limit or LIST_LIMIT_DEFAULT
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be within 1..{LIST_LIMIT_MAX}, got {limit}")
        check_text("after_id", after_id, MAX_LABEL_CHARS)
        found = await self.store.page(after_id, limit + 1)
        page = tuple(found[:limit])
        return PersonPage(page, page[-1].id if len(found) > limit else "")
