"""The metadata of recent search hits, kept in the gateway so that a search needs no metadata lookup for faces it
has shown before, and no round trip at all while it knows its gallery's version.

Entries are kept per gallery under the gallery's `faces_version` (metadata.py), which every change to what one of
its faces shows replaces after writing the change. A search uses entries only when they were stored under the
version it takes as current: the one it reads from MongoDB while the shards search, or one read at most `ttl_s`
ago with no change made through this gateway since. So a change made through this gateway shows in its next search,
and one made through another gateway within `ttl_s` (at once with `ttl_s` 0). An entry older than MAX_AGE_S is not
used either: that bounds how long a change shows late whose new version could not be written (MongoDB lost
between the two writes, the call that made it failed). No I/O here: the searcher reads and fetches.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from findface_grpc.gateway.domain import Face

MAX_AGE_S = 60.0


class HitCache:
    """At most `max_faces` faces over all galleries; past that, the least recently used of another gallery go
    first. 0 keeps nothing."""

    def __init__(self, max_faces: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_faces = max_faces
        self.ttl_s = ttl_s
        self._clock = clock
        # gallery -> (version, face id -> (face, when stored))
        self._galleries: dict[str, tuple[str, OrderedDict[int, tuple[Face, float]]]] = {}
        self._size = 0
        # gallery -> (version, when its read began, the gateway's own change count then)
        self._known: dict[str, tuple[str, float, int]] = {}

    def __len__(self) -> int:
        return self._size

    # ---- the galleries' versions ----

    def version(self, gallery: str, touches: int) -> str | None:
        """The gallery's version if one read within ttl_s is still good: no change by this gateway since
        (`touches`, its count of them, is unchanged). None: read it."""
        known = self._known.get(gallery)
        if known is None or known[2] != touches or self._clock() - known[1] >= self.ttl_s:
            return None
        return known[0]

    def read_began(self) -> float:
        return self._clock()

    def remember(self, gallery: str, version: str, began: float, touches: int) -> None:
        """A version read from MongoDB by a read that began at `began` (from `read_began`), with the gateway's
        change count `touches` taken before it."""
        if self.ttl_s > 0:
            self._known[gallery] = (version, began, touches)

    # ---- the faces ----

    def get(self, gallery: str, version: str, ids: Iterable[int]) -> dict[int, Face]:
        """The cached faces among `ids`, if the gallery's cache is of `version` (else none)."""
        cached = self._galleries.get(gallery)
        if not version or cached is None or cached[0] != version:
            return {}
        faces = cached[1]
        oldest = self._clock() - MAX_AGE_S
        found = {}
        for face_id in ids:
            entry = faces.get(face_id)
            if entry is not None and entry[1] > oldest:
                faces.move_to_end(face_id)
                found[face_id] = entry[0]
        return found

    def put(self, gallery: str, version: str, found: Iterable[Face]) -> None:
        """Keep faces read from the metadata after `version` was read. A different version than the cache's
        replaces the gallery's cache: versions are tokens, not ordered, and the newer read is the likelier one
        (a search that read an older version and stores late only empties the cache for the next one)."""
        if not version or not self.max_faces:
            return
        cached = self._galleries.get(gallery)
        if cached is None or cached[0] != version:
            self._size -= len(cached[1]) if cached else 0
            cached = self._galleries[gallery] = (version, OrderedDict())
        faces = cached[1]
        now = self._clock()
        for face in found:
            self._size += face.id not in faces
            faces[face.id] = (face, now)
            faces.move_to_end(face.id)
        while self._size > self.max_faces:
            # Other galleries' oldest first (what this search read is the likeliest to be asked for again), then
            # this gallery's own.
            victim = next((f for _, f in self._galleries.values() if f and f is not faces), faces)
            victim.popitem(last=False)
            self._size -= 1
