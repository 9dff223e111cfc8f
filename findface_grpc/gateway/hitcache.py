"""The metadata of recent search hits, kept in the gateway so that a search needs no metadata lookup for faces it
has shown before.

Entries are kept per gallery under the gallery's `faces_version` (metadata.py), which every change to what one of
its faces shows replaces after writing the change. A search reads the version while the shards search, and
uses entries only when they were stored under that same version: whatever was changed before the search began is
never answered from an older entry, whichever gateway made the change. No I/O here: the searcher reads and fetches.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from findface_grpc.gateway.domain import Face


class HitCache:
    """At most `max_faces` faces over all galleries; past that, the least recently used of another gallery go
    first. 0 keeps nothing."""

    def __init__(self, max_faces: int) -> None:
        self.max_faces = max_faces
        self._galleries: dict[str, tuple[str, OrderedDict[int, Face]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, gallery: str, version: str, ids: Iterable[int]) -> dict[int, Face]:
        """The cached faces among `ids`, if the gallery's cache is of `version` (else none)."""
        cached = self._galleries.get(gallery)
        if not version or cached is None or cached[0] != version:
            return {}
        faces = cached[1]
        found = {}
        for face_id in ids:
            face = faces.get(face_id)
            if face is not None:
                faces.move_to_end(face_id)
                found[face_id] = face
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
        for face in found:
            self._size += face.id not in faces
            faces[face.id] = face
            faces.move_to_end(face.id)
        while self._size > self.max_faces:
            # Other galleries' oldest first (what this search read is the likeliest to be asked for again), then
            # this gallery's own.
            victim = next((f for _, f in self._galleries.values() if f and f is not faces), faces)
            victim.popitem(last=False)
            self._size -= 1
