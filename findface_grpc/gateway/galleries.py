"""Galleries: create, list (with the faces the shards hold in each), and delete one with all its faces
(finished by repair if it fails half way)."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

from findface_grpc.errors import InvalidArgument, NotFound
from findface_grpc.gateway.cluster import REPAIR_PAGE, Cluster
from findface_grpc.gateway.domain import DEFAULT_GALLERY, Gallery, GalleryList, check_gallery_name
from findface_grpc.gateway.status import shard_statuses

log = logging.getLogger(__name__)


class Galleries:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def create_gallery(self, name: str) -> Gallery:
        check_gallery_name(name, "name")
        return await self.cluster.metadata.create_gallery(name)

    async def list_galleries(self, counts: bool = True) -> GalleryList:
        """The active galleries by name; with `counts`, each with the faces the shards that answered hold in it
        (each shard's Stats, asked at once with status.py's deadline): counting the metadata's documents instead
        reads every face on some MongoDB-protocol servers."""
        total = len(self.cluster.shards)
        if not counts:
            return GalleryList(tuple(await self.cluster.metadata.list_galleries()), 0, total, counted=False)
        galleries, shards = await asyncio.gather(self.cluster.metadata.list_galleries(), shard_statuses(self.cluster))
        live = [s.stats for s in shards if s.stats is not None]
        counted = tuple(dataclasses.replace(g, face_count=sum(st.gallery_counts.get(g.name, 0) for st in live))
                        for g in galleries)
        return GalleryList(counted, len(live), total)

    async def delete_gallery(self, name: str) -> int:
        check_gallery_name(name, "name")
        if name == DEFAULT_GALLERY:
            raise InvalidArgument(f"name: the {DEFAULT_GALLERY!r} gallery cannot be deleted")
        if not await self.cluster.metadata.claim_gallery_for_delete(name):
            raise NotFound(f"gallery {name!r} not found")
        count, _ = await asyncio.shield(self.finish_delete(name))
        return count

    async def finish_delete(self, name: str) -> tuple[int, bool]:
        """Delete every face of a gallery being deleted, then the gallery.

        Returns how many of its faces were visible, and whether the gallery is gone (else repair finishes it).
        """
        cluster = self.cluster
        count = await cluster.metadata.mark_gallery_faces_deleting(name)
        await cluster.quota.release(f"gallery-{name}-{uuid.uuid4().hex}", count)
        try:
            cluster.faults.check("gallery_delete.after_mark")
            while ids := await cluster.metadata.deleting_ids(REPAIR_PAGE, gallery=name):
                await cluster.remove_from_shards(ids)
                await cluster.metadata.delete_deleting(ids)
                if cluster.store is not None:
                    for face_id in ids:
                        await cluster.store.delete_face(face_id)
            return count, await cluster.metadata.drop_gallery(name)
        except Exception as exc:  # noqa: BLE001 - gallery and faces are invisible already; repair finishes
            log.warning("deletion of gallery %r left to repair: %s", name, exc)
            cluster.repair_soon()
            return count, False
