"""Pages of a gallery's faces and its meta values, read so that their cost follows the gallery's documents read,
not the whole collection's (id_windows.py says why and how)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from findface_grpc.gateway.domain import Face, MetaCount
from findface_grpc.gateway.face_docs import ACTIVE, face_from_doc, id_filters
from findface_grpc.gateway.id_windows import Fetch, page
from findface_grpc.gateway.limits import MAX_FACE_ID, MAX_META_CHARS, clip
from findface_grpc.gateway.metadata import FACE_ID_COUNTER, MetadataView, _in_thread


class FacePageStore(MetadataView):

    @_in_thread
    def list_faces(self, gallery: str, max_id: int, limit: int, meta: str | None) -> list[Face]:
        """The active faces of `gallery` (with exactly `meta`, if given) with id < max_id (0: any), newest first,
        at most `limit`."""
        # Never from above the newest id given out: a client's far larger max_id would cost empty windows.
        start = min(max_id or MAX_FACE_ID, self._top_id() + 1)
        found = page(self._fetches(gallery, meta), _keep(gallery, meta), start, 0, limit, descending=True)
        return [face_from_doc(doc) for doc in found]

    @_in_thread
    def newer_ids(self, gallery: str, min_id: int, limit: int, meta: str | None) -> list[int]:
        """Ids of the active faces with id >= min_id (same filters as list_faces), oldest first, at most `limit`."""
        stop = self._top_id() + 1
        found = page(self._fetches(gallery, meta), _keep(gallery, meta), min_id, stop, limit, descending=False)
        return [doc["_id"] for doc in found]

    @_in_thread
    def list_meta(self, gallery: str) -> list[MetaCount]:
        """Every meta value of the gallery's active faces, with how many have it and the newest of them.

        Reads every document of the gallery (by its index), not of the collection: a whole gallery is what the
        answer is about."""
        counts: dict[str, int] = {}
        newest: dict[str, int] = {}
        for doc in self.faces.find({"galleries": gallery}, {"state": 1, "meta": 1}):
            if doc.get("state") != ACTIVE:
                continue
            meta = doc.get("meta", "")
            counts[meta] = counts.get(meta, 0) + 1
            newest[meta] = max(newest.get(meta, 0), doc["_id"])
        docs = {d["_id"]: d for f in id_filters(list(newest.values())) for d in self.faces.find(f)}
        return [MetaCount(clip(meta, MAX_META_CHARS), counts[meta], face_from_doc(docs[newest[meta]]))
                for meta in sorted(counts) if newest[meta] in docs]

    def _top_id(self) -> int:
        """The largest id given out (the id counter), above every face's: where a page from the newest starts."""
        doc = self.counters.find_one({"_id": FACE_ID_COUNTER})
        return int(doc["value"]) if doc else MAX_FACE_ID - 1  # lost (ensure_schema makes it again): all ids

    def _fetches(self, gallery: str, meta: str | None) -> list[Fetch]:
        """A window's read by the (galleries, _id) index and, with a meta, by the (meta, _id) one too."""

        def by(name: str, value: Any) -> Fetch:
            return lambda lo, hi: list(self.faces.find({name: value, "_id": {"$gte": lo, "$lt": hi}}))

        return [by("galleries", gallery)] + ([by("meta", meta)] if meta is not None else [])


def _keep(gallery: str, meta: str | None) -> Callable[[dict], bool]:
    return lambda d: (d.get("state") == ACTIVE and gallery in d.get("galleries", ())
                      and (meta is None or d.get("meta", "") == meta))
