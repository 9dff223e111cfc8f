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

import random
import uuid
from dataclasses import dataclass

from findface_grpc.errors import InvalidArgument
from findface_grpc.gateway import scoring
from findface_grpc.gateway.config import GatewayConfig
from findface_grpc.gateway.domain import DEFAULT_GALLERY, Descriptor, Face, Match
from findface_grpc.gateway.face_docs import ACTIVE, face_from_doc, id_filters
from findface_grpc.gateway.id_windows import next_width
from findface_grpc.gateway.limits import MAX_LABEL_CHARS, check_text
from findface_grpc.gateway.metadata import FACE_ID_COUNTER, MetadataView, _in_thread
from findface_grpc.gateway.search import Searcher
from findface_grpc.gateway.text_keys import BASE, DIGITS, END, key_of, text_of

PERSON_CANDIDATES = 100
# The first window of a page of persons: the ids sharing their first three characters with after_id's.
FIRST_WIDTH = BASE ** (DIGITS - 3)
SAMPLE = 256
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


class PersonStore(MetadataView):

    @_in_thread
    def page(self, after_id: str, limit: int) -> list[Person]:
        """The first `limit` persons with ids after `after_id`, by id, each with its active faces' count and
        newest face. Read by windows of person ids on the person_id index, each wider than the last (text_keys.py,
        id_windows.py), not by grouping every face: a page costs the faces of the persons in its windows."""
        faces: dict[str, list[dict]] = {}
        start = key_of(after_id)
        low, width, sampled = start, FIRST_WIDTH, False
        origin: int | None = None  # the first person's key, once found
        known = END  # just past a person id known to exist: no window reaches beyond it before a person is found
        while len(faces) < limit and low < END:
            high = min(low + width, END if faces or known <= low else known)
            # The first window starts just after after_id, each other one where the one before ended.
            bounds = {"$gt": after_id} if low == start else {"$gte": text_of(low)}
            if high < END:
                bounds["$lt"] = text_of(high)
            for doc in self.faces.find({"person_id": bounds}):
                if doc.get("state") == ACTIVE:
                    faces.setdefault(doc["person_id"], []).append(doc)
            if faces and origin is None:
                # The density of persons counts from the first one, not across the empty stretch before it.
                origin = key_of(min(faces))
                width = max(1, high - origin)
            width = next_width(width, high - (start if origin is None else origin), len(faces), limit)
            if not faces and not sampled and high < END:
                # Ids cluster (hex digits, names' letters): windows widening across an empty stretch would land
                # far inside the first cluster. Some faces' persons, looked up by id, say where one is.
                sampled = True
                known = self._sampled_bound(high)
            low = high
        persons = []
        for person_id in sorted(faces)[:limit]:
            mine = faces[person_id]
            persons.append(Person(person_id, len(mine), face_from_doc(max(mine, key=lambda d: d["_id"]))))
        return persons

    def _sampled_bound(self, low: int) -> int:
        """The key just past the smallest person id at or above key `low` among SAMPLE faces picked at random by
        id; END when there is none."""
        doc = self.counters.find_one({"_id": FACE_ID_COUNTER})
        top = int(doc["value"]) if doc else 0
        ids = random.sample(range(1, top + 1), min(SAMPLE, top))
        bound = text_of(low)
        above = [d["person_id"] for f in id_filters(ids) for d in self.faces.find(f, {"person_id": 1})
                 if d.get("person_id", "") >= bound]
        return key_of(min(above)) + 1 if above else END


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
