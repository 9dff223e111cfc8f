"""CreateFace and ImportFaces: ids, the face quota, metadata and the shards, written in the order that
service.py describes, and the photo store's copies of an enrolled photo.

The write sequence of one enrollment (a CreateFace, or one ImportFaces message of up to 10,000 faces):

1. allocate the ids (one counter update);
2. write an import journal entry: one small document, state "pending", naming the ids (as runs), how many faces
   and their galleries (`metadata.imports`);
3. reserve the face quota (one call for the whole batch);
4. Add the descriptors to their shards (one call per shard); faces of a shard that fails are moved to fresh ids
   on the shards that answer, the journal entry extended by those ids *before* they are added anywhere;
5. insert the faces' documents, already "active", in one unordered bulk insert (with "deleting" documents for
   ids given up by a move, for repair to clear off their shard);
6. remove the journal entry, on condition that it is still pending; then reply.

So the metadata store writes each face once (step 5), where it used to write it twice ("pending", then an update
to "active"), plus two small writes per batch (steps 2 and 6). Why this keeps the promise (an acknowledged face
is in both stores; nothing is left in one store and not the other, once repair has run):

- Anything written for an enrollment is named by its journal entry from before it is written: shard entries
  (step 4 follows step 2; moved faces' ids are added to the entry first) and documents (step 5). While the entry
  exists, repair can find every trace of the enrollment by its ids alone.
- A face is visible only once its document exists (searches and listings show active documents, and drop shard
  hits without one), and its document is inserted only after its descriptor is in its shard.
- The reply is sent only after step 6 succeeded. The entry is removed only by the enrollment itself (step 6, on
  condition that it is still pending) or by repair completing it, which it does only when every face of the
  entry has its active document, i.e. after step 5 finished: then both stores hold every face, whether or not the
  enrollment was still running. Anything else makes the entry "aborted" (a conditional update, so exactly one of
  close, complete and abort wins): the enrollment's own clean-up after a failure, repair finding it pending past
  `pending_grace_s` without all its documents (a crashed or stuck gateway), or the deletion of one of its
  galleries. An enrollment that finds its entry aborted at step 6 (or before step 5) rolls back and fails.
- Rolling an entry back (`undo`): every active document of its ids -> "deleting", its ids removed from their
  shards, the deleting documents dropped. Aborted entries are kept (with `cleaned` once that was done) for a
  day and checked every repair round for documents inserted after all, by an enrollment that was stuck between
  steps 4 and 5 for longer than the grace period and then crashed before step 6; shard entries that land late
  (an Add that timed out here but arrived) have no document and are removed by repair's orphan sweep.

The faces of a batch become visible at step 5, a few milliseconds before the reply; after a crash between steps 5
and 6 they stay (repair completes the entry). Quota: each side releases what it takes out of "active" itself (a
deletion, a gallery's deletion, repair, or the failing enrollment), and the enrollment also what it reserved for
faces that never got a document, so a failed enrollment is released exactly once; a crashed one leaves it to the
next reconcile, as before.
"""
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
from findface_grpc.gateway.metadata import ACTIVE, PENDING, IncompleteInsert
from findface_grpc.gateway.store import FaceArtifacts

log = logging.getLogger(__name__)

MAX_IMPORT_BATCH = 10000
ROLLED_BACK = ("enrollment rolled back (it took longer than the grace period, or a gallery of its faces was deleted "
               "meanwhile); retry")


async def undo(cluster: Cluster, ids: Sequence[int], skip_away: bool = False) -> tuple[int, bool]:
    """Take every face among `ids` (never acknowledged) out of both stores: active documents -> "deleting", the
    ids removed from their shards, the deleting documents dropped. Safe to repeat, from anywhere.

    Returns how many documents this took out of "active" (whoever does so releases their quota), and whether
    all is done (else repair finishes the deleting documents; shard ids without a document are orphans for its
    sweep). `skip_away`: leave the shards taken as away alone (asking one could take a whole call timeout).
    """
    taken = await cluster.metadata.mark_deleting(ids, (ACTIVE,))
    answering = cluster.availability.answering() if skip_away else set(range(len(cluster.shards)))
    reachable = [i for i in ids if cluster.cells.shard_of(i) in answering]
    errors = await cluster.on_shards(reachable, lambda shard, group: shard.remove(group))
    removed = [i for i in reachable if cluster.cells.shard_of(i) not in errors]
    await cluster.metadata.delete_deleting(removed)
    if len(removed) < len(ids):
        log.warning("rollback of %d ids: %d left to repair (%s)", len(ids), len(ids) - len(removed),
                    "; ".join(map(str, errors.values())) or "their shards are away")
    return taken, len(removed) == len(ids)


@dataclasses.dataclass
class InStream:
    """One ImportFaces message among those of its stream that the servicer enrolls at once: its ids come after
    those of the message before it, and its faces become visible only once that message succeeded (if it failed,
    the client sees the stream end at its error, so these must not be enrolled either)."""

    previous: asyncio.Future | None = None  # the previous message's enrollment
    previous_allocated: asyncio.Event | None = None
    allocated: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)  # set once this one has its ids

    async def before_allocating(self) -> None:
        if self.previous is not None and self.previous_allocated is not None:
            waits = [asyncio.ensure_future(self.previous_allocated.wait())]
            await asyncio.wait([*waits, self.previous], return_when=asyncio.FIRST_COMPLETED)
            waits[0].cancel()

    async def before_visible(self) -> None:
        if self.previous is not None:
            await asyncio.wait([self.previous])
            if self.previous.cancelled() or self.previous.exception() is not None:
                raise Unavailable("an earlier message of this stream failed; this one was not enrolled")


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
        names, detection = await self.detect(image, bboxes, meta, galleries, selector, person_id, cam_id,
                                             min_quality, try_rotations)
        return await self.enroll_detected(image, detection, names, meta, [person_id] * len(detection.faces),
                                          cam_id, photo)

    async def detect(
        self, image: bytes, bboxes: Sequence[Box], meta: str, galleries: Sequence[str], selector: MultiFace,
        person_id: str, cam_id: str, min_quality: float, try_rotations: bool, thumbnails: bool = False,
    ) -> tuple[tuple[str, ...], Detection]:
        """CreateFace's checks and the faces to enroll, with their galleries; nothing enrolled yet. `thumbnails`:
        each face's thumbnail too (always with a photo store)."""
        cluster = self.cluster
        if not 0.0 <= min_quality <= 1.0:  # NaN fails this too
            raise InvalidArgument(f"min_quality must be within [0, 1], got {min_quality:g}")
        check_face_text("", meta, person_id, cam_id)
        names = with_default_gallery(check_gallery_name(g, "galleries") for g in galleries)
        await cluster.require_galleries(names, "galleries")
        detection = await cluster.extract(image, bboxes, selector, "image",
                                          crops=thumbnails or cluster.store is not None,
                                          min_quality=min_quality, try_rotations=try_rotations)
        if not detection.faces:
            raise InvalidArgument("image: no face found")
        return names, detection

    async def enroll_detected(self, image: bytes, detection: Detection, names: tuple[str, ...], meta: str,
                              person_ids: Sequence[str], cam_id: str, photo: str) -> Enrollment:
        """Enroll the faces `detect` found, detection.faces[i] with person_ids[i]; the faces in that order."""
        cluster = self.cluster
        photo_hash = hashlib.sha256(image).hexdigest()
        new = [
            NewFace(f.descriptor, names, meta, f.bbox, photo_hash, person, cam_id, photo,  # type: ignore[arg-type]
                    f.quality, f.orientation)
            for f, person in zip(detection.faces, person_ids, strict=True)
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

    async def import_faces(self, faces: Sequence[NewFace], stream: InStream | None = None) -> list[int]:
        """Enroll one ImportFaces message; `stream`: its place in its stream (see InStream)."""
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
        enrolled = await asyncio.shield(self._enroll(checked, stream))
        return [f.id for f in enrolled]

    async def _enroll(self, new: Sequence[NewFace], stream: InStream | None = None) -> list[Face]:
        """The write sequence of the module's docstring."""
        cluster = self.cluster
        metadata = cluster.metadata
        try:
            if stream is not None:
                await stream.before_allocating()
            ids = await cluster.new_ids(len(new), cluster.writable())
        finally:
            if stream is not None:
                stream.allocated.set()
        cluster.faults.check("enroll.after_allocate")
        key = f"enroll-{ids[0]}"
        # Every id this enrollment may have written under, for rolling back: moved faces' first ids included.
        held = list(ids)
        inserted: int | None = 0  # how many face documents are in (None: not known)
        reservation = None
        try:
            await metadata.open_journal(key, ids, len(new), {g for face in new for g in face.galleries})
            # After the journal entry, not before: a count of the faces holding quota for reconciling then
            # includes every reservation made before it (see license.quota.FaceQuota).
            reservation = await cluster.quota.reserve(key, len(ids))
            cluster.faults.check("enroll.after_journal")
            placed, retired = await self._add_to_shards(new, ids, key, held)
            cluster.faults.check("enroll.after_shard_add")
            if stream is not None:
                await stream.before_visible()
            if await metadata.journal_state(key) != PENDING:
                raise Unavailable(ROLLED_BACK)  # aborted: repair took it for dead, or a gallery was deleted
            inserted = None
            faces = await metadata.insert_faces(placed, new, retired=retired)
            inserted = len(faces)
            cluster.faults.check("enroll.after_faces")
            if not await metadata.close_journal(key):
                raise Unavailable(ROLLED_BACK)
        except BaseException as exc:
            if isinstance(exc, IncompleteInsert):
                inserted = exc.inserted
            await self._rollback(key, held, reservation, inserted)
            raise
        # From here the faces are in both stores: a failure now loses only the reply, never consistency.
        if retired:
            cluster.repair_soon()  # the deleting documents of the moved faces' first ids
        cluster.faults.check("enroll.after_commit")
        log.debug("enrolled %d faces, ids %d..%d", len(faces), min(placed), max(placed))
        return faces

    async def _add_to_shards(self, new: Sequence[NewFace], ids: Sequence[int], key: str,
                             held: list[int]) -> tuple[list[int], list[int]]:
        """Add the faces' descriptors to their shards; returns the ids they were enrolled under, in the given
        order, and the ids given up on.

        The faces of a shard that turns out to be unreachable (or hung: availability.py) are moved: added again
        under fresh ids on the shards that answer (the journal entry names those ids first); their first ids are
        given up (their shard may have stored them after all). So a batch fails only when no shard takes its
        faces, and then as UNAVAILABLE. Other failures (a shard refusing the descriptors, say) fail it whole.
        """
        cluster = self.cluster
        placed = list(ids)
        position = {face_id: k for k, face_id in enumerate(placed)}
        retired: list[int] = []
        todo = list(range(len(placed)))
        failed: dict[int, BaseException] = {}  # every shard that failed this enrollment, with why
        while True:
            errors = await cluster.on_shards(
                [placed[k] for k in todo],
                lambda shard, group: shard.add([(i, new[position[i]].galleries, new[position[i]].descriptor)
                                                for i in group]),
            )
            for index in {cluster.cells.shard_of(placed[k]) for k in todo} - set(errors):
                cluster.availability.answered(index)
            if not errors:
                return placed, retired
            for index, exc in errors.items():
                if not isinstance(exc, Unavailable):
                    raise exc
                cluster.availability.failed(index, str(exc))
            failed.update(errors)
            shards = cluster.writable(excluded=failed)
            if not shards:
                raise Unavailable("no shard answered, nothing was enrolled: " + "; ".join(map(str, failed.values())))
            todo = [k for k in todo if cluster.cells.shard_of(placed[k]) in errors]
            fresh = await cluster.new_ids(len(todo), shards)
            if not await cluster.metadata.extend_journal(key, fresh):
                raise Unavailable(ROLLED_BACK)
            held.extend(fresh)
            for k, face_id in zip(todo, fresh):
                retired.append(placed[k])
                placed[k] = face_id
                position[face_id] = k
            cluster.faults.check("enroll.after_move")

    async def _rollback(self, key: str, ids: list[int], reservation, inserted: int | None) -> None:
        """Undo an enrollment that failed before it was acknowledged; what this cannot finish, repair will.

        The journal entry is aborted first (so that it is never completed, and repair finishes the undo if this
        one fails), then the faces are taken out of both stores. The quota goes back for the faces that never
        got a document and those whose documents this took out of "active"; whoever took the others (a
        deletion, repair) released theirs.
        """
        cluster = self.cluster
        release = reservation.count if reservation is not None else 0
        try:
            cluster.faults.check("enroll.rollback")
            await cluster.metadata.abort_journal(key)
            taken, done = await undo(cluster, ids, skip_away=True)
            if inserted is not None:
                release -= max(0, inserted - taken)
            if done:
                await cluster.metadata.mark_journal_cleaned(key)
            else:
                cluster.repair_soon()
        except Exception as exc:  # noqa: BLE001 - the original failure is what the caller must see
            log.warning("rollback of %d faces left to repair: %s", len(ids), exc)
            cluster.repair_soon()
        finally:
            if release > 0:
                await cluster.quota.release(f"cancel-{key}", release)
