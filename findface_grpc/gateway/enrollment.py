"""CreateFace and ImportFaces: ids, the face quota, metadata and the shards, written in the order that
service.py describes, and the photo store's copies of an enrolled photo."""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Sequence

from findface_grpc.errors import InvalidArgument, Unavailable
from findface_grpc.gateway.cluster import Cluster
from findface_grpc.gateway.domain import (
    Box,
    Detection,
    Enrollment,
    Face,
    MultiFace,
    NewFace,
    check_gallery_name,
    with_default_gallery,
)
from findface_grpc.gateway.limits import check_face_text
from findface_grpc.gateway.metadata import ACTIVE, PENDING
from findface_grpc.gateway.store import FaceArtifacts

log = logging.getLogger(__name__)

MAX_IMPORT_BATCH = 10000


class Enroller:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def create_face(
        self,
        image: bytes,
        bboxes: Sequence[Box] = (),
        meta: str = "",
        galleries: Sequence[str] = (),
        selector: MultiFace = MultiFace.BIGGEST,
        person_id: str = "",
        cam_id: str = "",
        photo: str = "",
        min_quality: float = 0.0,
        try_rotations: bool = False,
    ) -> Enrollment:
        """`photo`: where the photo came from (its URL), kept with the faces."""
        cluster = self.cluster
        if not 0.0 <= min_quality <= 1.0:  # NaN fails this too
            raise InvalidArgument(f"min_quality must be within [0, 1], got {min_quality:g}")
        check_face_text("", meta, person_id, cam_id)
        names = with_default_gallery(check_gallery_name(g, "galleries") for g in galleries)
        await cluster.require_galleries(names, "galleries")
        detection = await cluster.extract(image, bboxes, selector, "image", crops=cluster.store is not None,
                                          min_quality=min_quality, try_rotations=try_rotations)
        if not detection.faces:
            raise InvalidArgument("image: no face found")
        photo_hash = hashlib.sha256(image).hexdigest()
        new = [
            NewFace(f.descriptor, names, meta, f.bbox, photo_hash, person_id, cam_id, photo,  # type: ignore[arg-type]
                    f.quality, f.orientation)
            for f in detection.faces
        ]
        # A client giving up half way must not interrupt the write sequence; it runs to its end either way.
        faces = await asyncio.shield(self._enroll(new))
        if cluster.store is not None:
            faces = await asyncio.shield(self._store_artifacts(image, photo_hash, faces, detection))
        return Enrollment(tuple(faces), detection.skipped)

    async def _store_artifacts(self, image: bytes, photo_hash: str, faces: list[Face], detection: Detection) -> list[Face]:
        """Keep the photo and the faces' crops in the photo store and their URLs with the faces (best effort:
        the faces are enrolled already, and without a stored copy they only lack these URLs)."""
        artifacts = [FaceArtifacts(face.id, found.thumbnail, found.normalized)
                     for face, found in zip(faces, detection.faces)]
        urls = await self.cluster.store.save(image, photo_hash, artifacts)  # type: ignore[union-attr]
        out = []
        for face in faces:
            entry = dict(urls.get(face.id, {}))
            if face.photo:
                entry.pop("photo", None)  # the URL the photo came from stays its photo, as in the original
            if entry:
                try:
                    await self.cluster.metadata.set_urls(face.id, entry)
                    face = dataclasses.replace(face, **entry)
                except Unavailable as exc:
                    log.warning("photo store URLs of face %d not recorded: %s", face.id, exc.message)
            out.append(face)
        return out

    async def import_faces(self, faces: Sequence[NewFace]) -> list[int]:
        if not 1 <= len(faces) <= MAX_IMPORT_BATCH:
            raise InvalidArgument(f"faces: 1..{MAX_IMPORT_BATCH} per message, got {len(faces)}")
        model = await self.cluster.model()
        checked = []
        for i, face in enumerate(faces):
            check_face_text(f"faces[{i}].", face.meta, face.person_id, face.cam_id, face.photo_hash)
            for name in face.galleries:
                check_gallery_name(name, f"faces[{i}].galleries")
            checked.append(
                NewFace(
                    self.cluster.check_descriptor(face.descriptor, model, f"faces[{i}].descriptor"),
                    with_default_gallery(face.galleries),
                    face.meta,
                    face.bbox,
                    face.photo_hash,
                    face.person_id,
                    face.cam_id,
                )
            )
        await self.cluster.require_galleries({g for f in checked for g in f.galleries}, "faces.galleries")
        enrolled = await asyncio.shield(self._enroll(checked))
        return [f.id for f in enrolled]

    async def _enroll(self, new: Sequence[NewFace]) -> list[Face]:
        cluster = self.cluster
        ids = await cluster.new_ids(len(new), cluster.writable())
        cluster.faults.check("enroll.after_allocate")
        faces = await cluster.metadata.insert_pending(ids, new)
        # Every id this enrollment inserted, for rolling back: faces moved off a shard that failed leave theirs.
        held = list(ids)
        reservation = None
        try:
            # After the pending insert, not before: a count of the metadata for reconciling face usage then
            # includes every reservation made before it (see license.client.FaceQuota).
            reservation = await cluster.quota.reserve(f"enroll-{ids[0]}", len(ids))
            cluster.faults.check("enroll.after_insert")
            faces = await self._add_to_shards(new, faces, held)
            ids = [face.id for face in faces]
            cluster.faults.check("enroll.after_shard_add")
            activated = await cluster.metadata.activate(ids)
            if activated != len(ids):
                # Repair took these for a dead enrollment (we were slower than pending_grace_s) and is rolling
                # them back; the caller must not be told they exist.
                raise Unavailable("enrollment took too long and was rolled back; retry")
        except BaseException:
            await cluster.quota.cancel(reservation)
            await self._rollback(held)
            raise
        # From here the faces are in both stores: a failure now loses only the reply, never consistency.
        cluster.faults.check("enroll.after_activate")
        log.debug("enrolled %d faces, ids %d..%d", len(ids), min(ids), max(ids))
        return faces

    async def _add_to_shards(self, new: Sequence[NewFace], faces: list[Face], held: list[int]) -> list[Face]:
        """Add the faces' descriptors to their shards; returns the faces as enrolled, in the given order.

        The faces of a shard that turns out to be unreachable are moved: inserted again under fresh ids on the
        shards that answer, their old ids marked for repair to remove. So a batch fails only when no shard takes
        its faces, and then as UNAVAILABLE. Other failures (a shard refusing the descriptors, say) fail it whole.
        """
        cluster = self.cluster
        faces = list(faces)
        position = {face.id: k for k, face in enumerate(faces)}
        todo = list(range(len(faces)))
        failed: dict[int, BaseException] = {}  # every shard that failed this enrollment, with why
        while True:
            errors = await cluster.on_shards(
                [faces[k].id for k in todo],
                lambda shard, group: shard.add([(i, new[position[i]].galleries, new[position[i]].descriptor)
                                                for i in group]),
            )
            for index in {cluster.cells.shard_of(faces[k].id) for k in todo} - set(errors):
                cluster.availability.answered(index)
            if not errors:
                return faces
            for index, exc in errors.items():
                if not isinstance(exc, Unavailable):
                    raise exc
                cluster.availability.failed(index, str(exc))
            failed.update(errors)
            shards = cluster.writable(excluded=failed)
            if not shards:
                raise Unavailable("no shard answered, nothing was enrolled: " + "; ".join(map(str, failed.values())))
            todo = [k for k in todo if cluster.cells.shard_of(faces[k].id) in errors]
            old = [faces[k].id for k in todo]
            fresh = await cluster.new_ids(len(todo), shards)
            moved = await cluster.metadata.insert_pending(fresh, [new[k] for k in todo])
            held.extend(fresh)
            for k, face in zip(todo, moved):
                faces[k] = face
                position[face.id] = k
            cluster.faults.check("enroll.after_move")
            # Retired only now that their replacements hold the quota (see license.client.FaceQuota: a count
            # meanwhile is too high for a moment, never too low). Their shard may have stored them after all.
            await cluster.metadata.mark_deleting(old, (PENDING,))
            cluster.repair_soon()

    async def _rollback(self, ids: list[int]) -> None:
        """Undo an enrollment that failed before it was acknowledged; what this cannot finish, repair will.

        Ids on shards taken as away are only marked: asking such a shard could take a whole call timeout.
        """
        cluster = self.cluster
        try:
            cluster.faults.check("enroll.rollback")
            # Active too: these ids are ours alone, and some may have been activated before a failure.
            await cluster.metadata.mark_deleting(ids, (PENDING, ACTIVE))
            answering = cluster.availability.answering()
            reachable = [i for i in ids if cluster.cells.shard_of(i) in answering]
            errors = await cluster.on_shards(reachable, lambda shard, group: shard.remove(group))
            removed = [i for i in reachable if cluster.cells.shard_of(i) not in errors]
            await cluster.metadata.delete_deleting(removed)
            if len(removed) < len(ids):
                log.warning("rollback of %d faces: %d left to repair (%s)", len(ids), len(ids) - len(removed),
                            "; ".join(map(str, errors.values())) or "their shards are away")
                cluster.repair_soon()
        except Exception as exc:  # noqa: BLE001 - the original failure is what the caller must see
            log.warning("rollback of %d faces left to repair: %s", len(ids), exc)
            cluster.repair_soon()
