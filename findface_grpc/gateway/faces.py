"""Enrolled faces: get, update (meta and galleries), delete, list a page, count by meta. Changes are written
in the order that service.py describes."""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from findface_grpc.errors import InvalidArgument, NotFound, Unavailable
from findface_grpc.gateway.cluster import Cluster
from findface_grpc.gateway.domain import (
    DEFAULT_GALLERY,
    Face,
    FacePage,
    GalleryChange,
    MetaCount,
    check_gallery_name,
    with_default_gallery,
)
from findface_grpc.gateway.face_pages import FacePageStore
from findface_grpc.gateway.limits import MAX_FACE_ID, MAX_LABEL_CHARS, MAX_META_CHARS, check_text
from findface_grpc.gateway.metadata import ACTIVE

log = logging.getLogger(__name__)

LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
UPDATE_ATTEMPTS = 5


class Faces:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.pages = FacePageStore(cluster.metadata)

    async def get_face(self, face_id: int) -> Face:
        face = await self.cluster.metadata.get_active(face_id)
        if face is None:
            raise NotFound(f"face {face_id} not found")
        return face

    async def update_face(
        self, face_id: int, meta: str | None, change: GalleryChange, person_id: str | None = None
    ) -> Face:
        metadata = self.cluster.metadata
        if meta is not None:
            check_text("meta", meta, MAX_META_CHARS)
        if person_id is not None:
            check_text("person_id", person_id, MAX_LABEL_CHARS)
        for name in change.add:
            check_gallery_name(name, "galleries_set" if change.replace else "galleries_add")
        for name in change.remove:
            check_gallery_name(name, "galleries_remove")
        if DEFAULT_GALLERY in change.remove:
            raise InvalidArgument(f"galleries_remove: every face stays in the {DEFAULT_GALLERY!r} gallery")
        await self.cluster.require_galleries(change.add, "galleries_set" if change.replace else "galleries_add")
        for _ in range(UPDATE_ATTEMPTS):
            doc = await metadata.get_doc(face_id)
            if doc is None or doc.get("state") != ACTIVE:
                raise NotFound(f"face {face_id} not found")
            old = tuple(doc["galleries"])
            if change.replace:
                new = with_default_gallery(change.add)
            else:
                new = tuple(g for g in with_default_gallery([*old, *change.add]) if g not in change.remove)
            changes: dict = {}
            if meta is not None and meta != doc.get("meta", ""):
                changes["meta"] = meta
            if person_id is not None and person_id != doc.get("person_id", ""):
                changes["person_id"] = person_id
            token = None
            if set(new) != set(old):
                changes["galleries"] = list(new)
                token = uuid.uuid4().hex
            if not changes:
                return await self.get_face(face_id)
            face = await metadata.update_face(face_id, doc.get("rev", 0), changes, token)
            if face is not None:
                break
        else:
            raise Unavailable(f"face {face_id} is being changed by others; retry")
        if token is not None:
            await asyncio.shield(self._push_galleries(face_id, token, face.galleries))
        return face

    async def _push_galleries(self, face_id: int, token: str, galleries: Sequence[str]) -> None:
        """Bring the shard's gallery list of a face in line with the metadata; repair retries on failure."""
        cluster = self.cluster
        try:
            for _ in range(3):
                cluster.faults.check("update.after_mark")
                await cluster.shard_of(face_id).set_galleries([face_id], galleries)
                cluster.faults.check("update.after_shard_update")
                if await cluster.metadata.clear_sync(face_id, token, galleries):
                    return
                # Changed again meanwhile, and our push may have landed after the newer one's: unless the shard
                # now holds what the metadata says, push that too. Whoever holds the sync mark clears it.
                doc = await cluster.metadata.get_doc(face_id)
                if doc is None or doc.get("state") != ACTIVE or list(doc["galleries"]) == list(galleries):
                    return
                token, galleries = doc.get("sync", ""), doc["galleries"]
        except Exception as exc:  # noqa: BLE001 - the change is recorded; repair pushes it later
            log.warning("galleries of face %d not yet on its shard (%s); left to repair", face_id, exc)
            cluster.repair_soon()

    async def delete_face(self, face_id: int) -> None:
        face = await self.cluster.metadata.claim_for_delete(face_id)
        if face is None:
            raise NotFound(f"face {face_id} not found")
        await asyncio.shield(self._finish_delete([face_id]))
        if self.cluster.store is not None and (face.thumbnail or face.normalized):
            await self.cluster.store.delete_face(face_id)

    async def _finish_delete(self, ids: list[int]) -> None:
        cluster = self.cluster
        # The face is invisible from its claim on, so its quota is free now, whatever the rest of this does.
        await cluster.quota.release(f"delete-{ids[0]}", len(ids))
        try:
            cluster.faults.check("delete.after_mark")
            await cluster.remove_from_shards(ids)
            cluster.faults.check("delete.after_shard_remove")
            await cluster.metadata.delete_deleting(ids)
        except Exception as exc:  # noqa: BLE001 - the face is already invisible; repair finishes the delete
            log.warning("deletion of %d faces left to repair: %s", len(ids), exc)
            cluster.repair_soon()

    async def list_faces(self, gallery: str, max_id: int, limit: int, meta: str | None) -> FacePage:
        limit = limit or LIST_LIMIT_DEFAULT
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be within 1..{LIST_LIMIT_MAX}, got {limit}")
        if max_id > MAX_FACE_ID:
            raise InvalidArgument(f"max_id must be within 0..{MAX_FACE_ID}, got {max_id}")
        if meta is not None:
            check_text("meta", meta, MAX_META_CHARS)
        gallery = await self.cluster.gallery(gallery)
        faces = await self.pages.list_faces(gallery, max_id, limit + 1, meta)
        next_max_id = faces[limit - 1].id if len(faces) > limit else 0
        prev_max_id, has_prev = await self._prev_page(gallery, max_id, limit, meta)
        return FacePage(tuple(faces[:limit]), next_max_id, prev_max_id, has_prev)

    async def _prev_page(self, gallery: str, max_id: int, limit: int, meta: str | None) -> tuple[int, bool]:
        """(prev_max_id, has_prev) of the page asked with max_id: the `limit` faces just newer than it.

        max_id is exclusive, so the newer faces are those with id >= max_id. Of them, oldest first, the first
        `limit` make the page before; the one after those (if any) is the smallest id of the page before that,
        which is just the max_id that gives our previous page (the same max_id next_page led there with). With
        `limit` or fewer newer faces, the page before is the first page (max_id 0).
        """
        if not max_id:
            return 0, False
        newer = await self.pages.newer_ids(gallery, max_id, limit + 1, meta)
        if not newer:
            return 0, False
        return (newer[limit] if len(newer) > limit else 0), True

    async def list_meta(self, gallery: str) -> list[MetaCount]:
        gallery = await self.cluster.gallery(gallery)
        return await self.pages.list_meta(gallery)
