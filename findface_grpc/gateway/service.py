"""The gateway's domain: enrollment, search, faces and galleries over MongoDB metadata and the shards.

No grpc here: the extractor and shards are reached through `clients.py`, metadata through `metadata.py`.

Write order (so that a crash at any point leaves nothing visible half done, and repair can tell what to do):
- Enroll: allocate ids -> insert metadata as "pending" -> shard.Add -> set "active" -> reply. Only active
  faces are shown anywhere. A pending face was never acknowledged, so repair rolls it back (shard.Remove, then
  drop the document) once it is older than `pending_grace_s`.
- Delete: set "deleting" -> shard.Remove -> drop the document. Once marked, the face is invisible and the
  delete is acknowledged; repair finishes it if a step fails.
- Gallery change: update metadata with a `sync` token -> shard.UpdateGalleries -> clear the token. Until it
  is cleared, searches check gallery membership against the metadata; repair re-pushes.
- Shard ids with no metadata document at all are orphans (a late Add after a rollback); the orphan sweep
  removes them. Hits from a shard whose id has no active document are dropped when joining metadata.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from findface_grpc.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from findface_grpc.gateway import fanout, scoring
from findface_grpc.gateway.photos import PhotoFetcher
from findface_grpc.gateway.store import FaceArtifacts, PhotoStore
from findface_grpc.gateway.cells import CellMap
from findface_grpc.gateway.clients import ExtractorClient, ShardClient
from findface_grpc.gateway.config import UNAVAILABLE, GatewayConfig
from findface_grpc.gateway.domain import (
    DEFAULT_GALLERY,
    Box,
    ClusterStatus,
    Descriptor,
    DetectedFace,
    Detection,
    Enrollment,
    ExtractorStatus,
    Face,
    FaceMatches,
    FacePage,
    Gallery,
    GalleryChange,
    IdentifyResult,
    Match,
    MetaCount,
    ModelInfo,
    MultiFace,
    NewFace,
    ShardStatus,
    SkippedFace,
    VerifyPair,
    VerifyResult,
    check_gallery_name,
)
from findface_grpc.gateway.merge import merge_batches
from findface_grpc.gateway.metadata import ACTIVE, PENDING, MetadataStore, utcnow
from findface_grpc.license.client import NO_QUOTA, FaceQuota

log = logging.getLogger(__name__)

MAX_IMPORT_BATCH = 10000
MAX_QUERIES_PER_SEARCH = 1024  # the shard's limit per Search call
MAX_SHARD_K = 10000
# Hits whose faces turn out not to be active (being enrolled or deleted right now) are dropped at the join;
# asking each shard for a few more than n keeps such a drop from shortening the answer.
JOIN_MARGIN = 16
REPAIR_PAGE = 10000
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
UPDATE_ATTEMPTS = 5
# How long the cluster status waits for each shard and the extractor: a status page must answer promptly, and a
# part that takes longer than this to say how it is doing is not healthy anyway.
STATUS_TIMEOUT_S = 3.0


class InjectedFault(Unavailable):
    """Raised at a step armed in `Faults` (tests only)."""


class Faults:
    """Failure injection at named steps of the write paths, for tests of crash safety.

    A test arms steps; the next time the code reaches one, it raises InjectedFault as if the process had lost
    its connection (or died) right there. Arming the matching "rollback" step as well makes the immediate
    clean-up fail too, which leaves exactly what a crash would leave, for repair to handle. Steps:
    enroll.after_allocate, enroll.after_insert, enroll.after_shard_add, enroll.after_activate, enroll.rollback,
    delete.after_mark, delete.after_shard_remove, update.after_mark, update.after_shard_update,
    gallery_delete.after_mark.
    """

    def __init__(self) -> None:
        self._armed: dict[str, int] = {}

    def arm(self, *steps: str, times: int = 1) -> None:
        for step in steps:
            self._armed[step] = times

    def clear(self) -> None:
        self._armed.clear()

    def check(self, step: str) -> None:
        left = self._armed.get(step, 0)
        if left:
            self._armed[step] = left - 1
            raise InjectedFault(f"injected fault at {step}")


@dataclass
class RepairReport:
    rolled_back: int = 0  # stale pending faces rolled back
    deleted: int = 0  # faces whose deletion was finished
    resynced: int = 0  # faces whose galleries were pushed to their shard again
    galleries_dropped: int = 0
    orphans_removed: int = 0  # shard ids without any metadata
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any((self.rolled_back, self.deleted, self.resynced, self.galleries_dropped, self.orphans_removed))


def _unit(vector: np.ndarray, field_name: str) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidArgument(f"{field_name}: descriptor vector must be finite and non-zero")
    return vector if abs(norm - 1.0) < 1e-4 else vector / norm


def _reason(exc: BaseException, name: str) -> str:
    """Why a part of the cluster did not answer, in words (for the cluster status)."""
    if isinstance(exc, TimeoutError):
        return f"{name}: no answer within {STATUS_TIMEOUT_S:g} s"
    return getattr(exc, "message", None) or f"{name}: {type(exc).__name__}: {exc}"


def _galleries(names: Iterable[str]) -> tuple[str, ...]:
    """The default gallery first, then the others in the order given, each once."""
    return tuple(dict.fromkeys([DEFAULT_GALLERY, *names]))


class GatewayService:
    def __init__(
        self,
        config: GatewayConfig,
        metadata: MetadataStore,
        extractor: ExtractorClient,
        shards: Sequence[ShardClient],
        cells: CellMap,
        faults: Faults | None = None,
        quota: FaceQuota | None = None,
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.extractor = extractor
        self.shards = list(shards)
        self.cells = cells
        self.faults = faults or Faults()
        # Face quota at the license server; without one configured, every enrollment is allowed.
        self.quota = quota or NO_QUOTA
        self.photos = PhotoFetcher(
            int(config.max_image_mb * 1_000_000), config.url_fetch_timeout_s, config.allow_private_urls,
            config.url_allow_networks,
        )
        self.store = (
            PhotoStore(config.upload_url, config.upload_user, config.upload_password, config.upload_timeout_s)
            if config.upload_url else None
        )
        self.default_preset = scoring.Preset(config.default_threshold)
        self._model: ModelInfo | None = None
        self._repair_lock = asyncio.Lock()
        self._repair_wakeup = asyncio.Event()
        self._repair_task: asyncio.Task | None = None
        self._last_sweep = -math.inf
        self._failing_shards: set[int] = set()

    # ---- life cycle ----

    async def start(self, run_repair_loop: bool = True) -> None:
        """Prepare the metadata store and start repairing in the background, its first round at once.

        The first round does not hold up serving: until it has run, what a crash left is invisible anyway
        (only active faces are shown, and hits are joined against them).
        """
        await self.metadata.ensure_schema()
        try:
            await self.model()
        except Unavailable as exc:
            log.warning("extractor not reachable yet (%s); will ask again when needed", exc.message)
        if run_repair_loop:
            self._repair_task = asyncio.create_task(self._repair_loop(), name="gateway-repair")
        self.quota.start(self.metadata.count_holding_quota)

    async def stop(self) -> None:
        if self._repair_task is not None:
            self._repair_task.cancel()
            try:
                await self._repair_task
            except asyncio.CancelledError:
                pass
        await self.quota.close()
        await self.extractor.close()
        for shard in self.shards:
            await shard.close()
        self.metadata.close()

    async def model(self) -> ModelInfo:
        """The embedder model and dimension of this cluster, as the extractor reports them."""
        if self._model is None:
            self._model = await self.extractor.info()
            log.info("cluster descriptors: model %s, %d-d", self._model.model_id, self._model.dim)
        return self._model

    # ---- helpers ----

    def _shard_of(self, face_id: int) -> ShardClient:
        return self.shards[self.cells.shard_of(face_id)]

    async def _each_shard(self, ids: Sequence[int], call: Callable[[ShardClient, list[int]], Awaitable]) -> None:
        """`call` on every shard for the ids it owns, all at once; raises the first failure after all finish."""
        groups = self.cells.group(ids)
        results = await asyncio.gather(
            *(call(self.shards[s], group) for s, group in groups.items()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _require_galleries(self, names: Iterable[str], field_name: str) -> None:
        names = list(names)
        if not names:
            return
        missing = await self.metadata.missing_galleries(names)
        if missing:
            raise NotFound(f"{field_name}: gallery {missing[0]!r} not found")

    async def _gallery(self, name: str, field_name: str = "gallery") -> str:
        name = name or DEFAULT_GALLERY
        check_gallery_name(name, field_name)
        await self._require_galleries([name], field_name)
        return name

    def _resolve_threshold(self, threshold: scoring.Threshold, model_id: str) -> float:
        return scoring.resolve(threshold, model_id, self.default_preset)

    def _check_descriptor(self, descriptor: Descriptor, model: ModelInfo, field_name: str) -> Descriptor:
        if descriptor.model_id != model.model_id:
            raise InvalidArgument(
                f"{field_name}: descriptor is from model {descriptor.model_id!r}, this cluster indexes {model.model_id!r}"
            )
        if descriptor.dim != model.dim:
            raise InvalidArgument(f"{field_name}: descriptor has dimension {descriptor.dim}, this cluster indexes {model.dim}")
        return Descriptor(descriptor.model_id, _unit(descriptor.vector, field_name))

    async def _extract(self, image: bytes, boxes: Sequence[Box], selector: MultiFace, field_name: str,
                       crops: bool = False, min_quality: float = 0.0, try_rotations: bool = False) -> Detection:
        detection = await self.extractor.extract(image, boxes, selector, field_name, crops=crops,
                                                 min_quality=min_quality, try_rotations=try_rotations)
        model = await self.model()
        for face in detection.faces:
            if face.descriptor is None or face.descriptor.model_id != model.model_id:
                # The extractor was restarted with another model pack since this gateway asked.
                self._model = None
                raise FailedPrecondition("the extractor changed its model while this request ran; retry")
        return detection

    # ---- detect / verify / identify ----

    async def detect(self, image: bytes, try_rotations: bool = False) -> Detection:
        return await self.extractor.detect(image, try_rotations=try_rotations)

    async def verify(
        self,
        image1: bytes,
        bbox1: Box | None,
        threshold: scoring.Threshold,
        selector: MultiFace,
        image2: bytes | None = None,
        bbox2: Box | None = None,
        face_id: int | None = None,
        try_rotations: bool = False,
    ) -> VerifyResult:
        model = await self.model()
        limit = self._resolve_threshold(threshold, model.model_id)
        first = self._extract(image1, [bbox1] if bbox1 else [], selector, "image1", try_rotations=try_rotations)
        skipped2: tuple[SkippedFace, ...] = ()
        if face_id is not None:
            faces1, (face, descriptor) = await asyncio.gather(first, self._enrolled_descriptor(face_id, model))
            seconds = [(face.bbox, descriptor)]
        elif image2 is not None:
            faces1, faces2 = await asyncio.gather(first, self._extract(image2, [bbox2] if bbox2 else [], selector,
                                                                       "image2", try_rotations=try_rotations))
            seconds = [(f.bbox, f.descriptor) for f in faces2.faces]
            skipped2 = faces2.skipped
        else:
            raise InvalidArgument("image2 or face_id is required")
        pairs = []
        for f1 in faces1.faces:
            for box2, d2 in seconds:
                conf = scoring.confidence(float(np.dot(f1.descriptor.vector, d2.vector)))
                pairs.append(VerifyPair(f1.bbox, box2, conf, conf >= limit))
        pairs.sort(key=lambda p: -p.confidence)
        return VerifyResult(tuple(pairs), faces1.skipped, skipped2)

    async def _enrolled_descriptor(self, face_id: int, model: ModelInfo) -> tuple[Face, Descriptor]:
        face = await self.metadata.get_active(face_id)
        if face is None:
            raise NotFound(f"face_id: face {face_id} not found")
        found = await self._shard_of(face_id).descriptors([face_id])
        descriptor = found.get(face_id)
        if descriptor is None:
            raise FailedPrecondition(f"face {face_id}: its descriptor is missing from its shard")
        if descriptor.model_id != model.model_id:
            raise FailedPrecondition(
                f"face {face_id} was enrolled with model {descriptor.model_id!r}, the extractor runs {model.model_id!r}"
            )
        return face, descriptor

    async def identify(
        self,
        *,
        image: bytes | None = None,
        descriptor: Descriptor | None = None,
        bboxes: Sequence[Box] = (),
        gallery: str = "",
        n: int = 0,
        threshold: scoring.Threshold = scoring.Threshold(),
        selector: MultiFace = MultiFace.BIGGEST,
        try_rotations: bool = False,
    ) -> IdentifyResult:
        n = n or 1
        if not 1 <= n <= self.config.max_n:
            raise InvalidArgument(f"n must be within 1..{self.config.max_n}, got {n}")
        gallery = gallery or DEFAULT_GALLERY
        check_gallery_name(gallery, "gallery")
        # The gallery's existence is checked while the search runs: a search in a missing gallery finds nothing
        # and costs little, and an identify then needs one metadata round trip less before it can start.
        gallery_check = asyncio.ensure_future(self._require_galleries([gallery], "gallery"))
        try:
            return await self._identify(gallery, gallery_check, image, descriptor, bboxes, n, threshold, selector,
                                        try_rotations)
        finally:
            if not gallery_check.done():
                gallery_check.cancel()
            elif not gallery_check.cancelled():
                gallery_check.exception()  # retrieved: an error that lost the race to another is not news

    async def _identify(self, gallery, gallery_check, image, descriptor, bboxes, n, threshold, selector,
                        try_rotations) -> IdentifyResult:
        model = await self.model()
        limit = self._resolve_threshold(threshold, model.model_id)
        skipped: tuple[SkippedFace, ...] = ()
        if descriptor is not None:
            queries: list[DetectedFace | None] = [None]
            vectors = [self._check_descriptor(descriptor, model, "descriptor")]
        elif image is not None:
            detection = await self._extract(image, bboxes, selector, "image", try_rotations=try_rotations)
            queries = list(detection.faces)
            vectors = [f.descriptor for f in detection.faces]
            skipped = detection.skipped
        else:
            raise InvalidArgument("image or descriptor is required")
        total = len(self.shards)
        if not vectors:
            await gallery_check
            # Nothing to look for, so no shard's answer is missing.
            return IdentifyResult((), total, total, skipped)

        k = min(n + JOIN_MARGIN, MAX_SHARD_K)
        merged = []
        answered = total
        for start in range(0, len(vectors), MAX_QUERIES_PER_SEARCH):
            chunk = vectors[start:start + MAX_QUERIES_PER_SEARCH]
            answers = await fanout.search_all(
                self.shards, chunk, gallery, k, scoring.cosine_threshold(limit), self.config.shard_deadline_s
            )
            failed = [a for a in answers if not a.ok]
            self._note_search_health(answers)
            if len(failed) == total:
                raise Unavailable("no shard answered: " + "; ".join(a.error for a in failed))
            if failed and self.config.partial_results == UNAVAILABLE:
                raise Unavailable(f"{len(failed)} of {total} shards did not answer: " + "; ".join(a.error for a in failed))
            answered = min(answered, total - len(failed))
            merged.extend(merge_batches([a.hits for a in answers if a.ok], len(chunk), k))

        await gallery_check
        faces = await self.metadata.active_faces(sorted({h.face_id for hits in merged for h in hits}))
        results = []
        for query, hits in zip(queries, merged):
            matches = []
            for hit in hits:
                face = faces.get(hit.face_id)
                # Gallery membership is checked here too: a gallery change may not have reached the shard yet.
                if face is None or gallery not in face.galleries:
                    continue
                conf = scoring.confidence(hit.score)
                if conf < limit:
                    continue
                matches.append(Match(face, conf))
                if len(matches) == n:
                    break
            results.append(FaceMatches(query, tuple(matches)))
        return IdentifyResult(tuple(results), answered, total, skipped)

    def _note_search_health(self, answers: Sequence[fanout.ShardAnswer]) -> None:
        # Logged when a shard starts or stops failing, not on every search: under load that would be thousands.
        for answer in answers:
            if not answer.ok and answer.shard not in self._failing_shards:
                self._failing_shards.add(answer.shard)
                log.warning("searches go on without %s", answer.error)
            elif answer.ok and answer.shard in self._failing_shards:
                self._failing_shards.discard(answer.shard)
                log.info("%s answers searches again", self.shards[answer.shard].name)

    # ---- enrollment ----

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
        if not 0.0 <= min_quality <= 1.0:  # NaN fails this too
            raise InvalidArgument(f"min_quality must be within [0, 1], got {min_quality:g}")
        names = _galleries(check_gallery_name(g, "galleries") for g in galleries)
        await self._require_galleries(names, "galleries")
        detection = await self._extract(image, bboxes, selector, "image", crops=self.store is not None,
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
        if self.store is not None:
            faces = await asyncio.shield(self._store_artifacts(image, photo_hash, faces, detection))
        return Enrollment(tuple(faces), detection.skipped)

    async def _store_artifacts(self, image: bytes, photo_hash: str, faces: list[Face], detection: Detection) -> list[Face]:
        """Keep the photo and the faces' crops in the photo store and their URLs with the faces (best effort:
        the faces are enrolled already, and without a stored copy they only lack these URLs)."""
        artifacts = [FaceArtifacts(face.id, found.thumbnail, found.normalized)
                     for face, found in zip(faces, detection.faces)]
        urls = await self.store.save(image, photo_hash, artifacts)  # type: ignore[union-attr]
        out = []
        for face in faces:
            entry = dict(urls.get(face.id, {}))
            if face.photo:
                entry.pop("photo", None)  # the URL the photo came from stays its photo, as in the original
            if entry:
                try:
                    await self.metadata.set_urls(face.id, entry)
                    face = dataclasses.replace(face, **entry)
                except Unavailable as exc:
                    log.warning("photo store URLs of face %d not recorded: %s", face.id, exc.message)
            out.append(face)
        return out

    async def import_faces(self, faces: Sequence[NewFace]) -> list[int]:
        if not 1 <= len(faces) <= MAX_IMPORT_BATCH:
            raise InvalidArgument(f"faces: 1..{MAX_IMPORT_BATCH} per message, got {len(faces)}")
        model = await self.model()
        checked = []
        for i, face in enumerate(faces):
            for name in face.galleries:
                check_gallery_name(name, f"faces[{i}].galleries")
            checked.append(
                NewFace(
                    self._check_descriptor(face.descriptor, model, f"faces[{i}].descriptor"),
                    _galleries(face.galleries),
                    face.meta,
                    face.bbox,
                    face.photo_hash,
                    face.person_id,
                    face.cam_id,
                )
            )
        await self._require_galleries({g for f in checked for g in f.galleries}, "faces.galleries")
        enrolled = await asyncio.shield(self._enroll(checked))
        return [f.id for f in enrolled]

    async def _enroll(self, new: Sequence[NewFace]) -> list[Face]:
        first = await self.metadata.allocate_ids(len(new))
        ids = list(range(first, first + len(new)))
        self.faults.check("enroll.after_allocate")
        faces = await self.metadata.insert_pending(first, new)
        by_id = {face_id: face for face_id, face in zip(ids, new)}
        reservation = None
        try:
            # After the pending insert, not before: a count of the metadata for reconciling face usage then
            # includes every reservation made before it (see license.client.FaceQuota).
            reservation = await self.quota.reserve(f"enroll-{first}", len(ids))
            self.faults.check("enroll.after_insert")
            await self._each_shard(
                ids, lambda shard, group: shard.add([(i, by_id[i].galleries, by_id[i].descriptor) for i in group])
            )
            self.faults.check("enroll.after_shard_add")
            activated = await self.metadata.activate(ids)
            if activated != len(ids):
                # Repair took these for a dead enrollment (we were slower than pending_grace_s) and is rolling
                # them back; the caller must not be told they exist.
                raise Unavailable("enrollment took too long and was rolled back; retry")
        except BaseException:
            await self.quota.cancel(reservation)
            await self._rollback(ids)
            raise
        # From here the faces are in both stores: a failure now loses only the reply, never consistency.
        self.faults.check("enroll.after_activate")
        log.debug("enrolled %d faces from id %d", len(ids), first)
        return faces

    async def _rollback(self, ids: list[int]) -> None:
        """Undo an enrollment that failed before it was acknowledged; what this cannot finish, repair will."""
        try:
            self.faults.check("enroll.rollback")
            # Active too: these ids are ours alone, and some may have been activated before a failure.
            await self.metadata.mark_deleting(ids, (PENDING, ACTIVE))
            await self._each_shard(ids, lambda shard, group: shard.remove(group))
            await self.metadata.delete_deleting(ids)
        except Exception as exc:  # noqa: BLE001 - the original failure is what the caller must see
            log.warning("rollback of faces %d..%d left to repair: %s", ids[0], ids[-1], exc)
            self._repair_soon()

    # ---- faces ----

    async def get_face(self, face_id: int) -> Face:
        face = await self.metadata.get_active(face_id)
        if face is None:
            raise NotFound(f"face {face_id} not found")
        return face

    async def update_face(self, face_id: int, meta: str | None, change: GalleryChange) -> Face:
        for name in change.add:
            check_gallery_name(name, "galleries_set" if change.replace else "galleries_add")
        for name in change.remove:
            check_gallery_name(name, "galleries_remove")
        if DEFAULT_GALLERY in change.remove:
            raise InvalidArgument(f"galleries_remove: every face stays in the {DEFAULT_GALLERY!r} gallery")
        await self._require_galleries(change.add, "galleries_set" if change.replace else "galleries_add")
        for _ in range(UPDATE_ATTEMPTS):
            doc = await self.metadata.get_doc(face_id)
            if doc is None or doc.get("state") != ACTIVE:
                raise NotFound(f"face {face_id} not found")
            old = tuple(doc["galleries"])
            if change.replace:
                new = _galleries(change.add)
            else:
                new = tuple(g for g in _galleries([*old, *change.add]) if g not in change.remove)
            changes: dict = {}
            if meta is not None and meta != doc.get("meta", ""):
                changes["meta"] = meta
            token = None
            if set(new) != set(old):
                changes["galleries"] = list(new)
                token = uuid.uuid4().hex
            if not changes:
                return await self.get_face(face_id)
            face = await self.metadata.update_face(face_id, doc.get("rev", 0), changes, token)
            if face is not None:
                break
        else:
            raise Unavailable(f"face {face_id} is being changed by others; retry")
        if token is not None:
            await asyncio.shield(self._push_galleries(face_id, token, face.galleries))
        return face

    async def _push_galleries(self, face_id: int, token: str, galleries: Sequence[str]) -> None:
        """Bring the shard's gallery list of a face in line with the metadata; repair retries on failure."""
        try:
            for _ in range(3):
                self.faults.check("update.after_mark")
                await self._shard_of(face_id).set_galleries([face_id], galleries)
                self.faults.check("update.after_shard_update")
                if await self.metadata.clear_sync(face_id, token, galleries):
                    return
                # Changed again meanwhile, and our push may have landed after the newer one's: unless the shard
                # now holds what the metadata says, push that too. Whoever holds the sync mark clears it.
                doc = await self.metadata.get_doc(face_id)
                if doc is None or doc.get("state") != ACTIVE or list(doc["galleries"]) == list(galleries):
                    return
                token, galleries = doc.get("sync", ""), doc["galleries"]
        except Exception as exc:  # noqa: BLE001 - the change is recorded; repair pushes it later
            log.warning("galleries of face %d not yet on its shard (%s); left to repair", face_id, exc)
            self._repair_soon()

    async def delete_face(self, face_id: int) -> None:
        face = await self.metadata.claim_for_delete(face_id)
        if face is None:
            raise NotFound(f"face {face_id} not found")
        await asyncio.shield(self._finish_delete([face_id]))
        if self.store is not None and (face.thumbnail or face.normalized):
            await self.store.delete_face(face_id)

    async def _finish_delete(self, ids: list[int]) -> None:
        # The face is invisible from its claim on, so its quota is free now, whatever the rest of this does.
        await self.quota.release(f"delete-{ids[0]}", len(ids))
        try:
            self.faults.check("delete.after_mark")
            await self._each_shard(ids, lambda shard, group: shard.remove(group))
            self.faults.check("delete.after_shard_remove")
            await self.metadata.delete_deleting(ids)
        except Exception as exc:  # noqa: BLE001 - the face is already invisible; repair finishes the delete
            log.warning("deletion of %d faces left to repair: %s", len(ids), exc)
            self._repair_soon()

    async def list_faces(self, gallery: str, max_id: int, limit: int, meta: str | None) -> FacePage:
        limit = limit or LIST_LIMIT_DEFAULT
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be within 1..{LIST_LIMIT_MAX}, got {limit}")
        gallery = await self._gallery(gallery)
        faces = await self.metadata.list_faces(gallery, max_id, limit + 1, meta)
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
        newer = await self.metadata.newer_ids(gallery, max_id, limit + 1, meta)
        if not newer:
            return 0, False
        return (newer[limit] if len(newer) > limit else 0), True

    async def list_meta(self, gallery: str) -> list[MetaCount]:
        gallery = await self._gallery(gallery)
        return await self.metadata.list_meta(gallery)

    # ---- galleries ----

    async def create_gallery(self, name: str) -> Gallery:
        check_gallery_name(name, "name")
        return await self.metadata.create_gallery(name)

    async def delete_gallery(self, name: str) -> int:
        check_gallery_name(name, "name")
        if name == DEFAULT_GALLERY:
            raise InvalidArgument(f"name: the {DEFAULT_GALLERY!r} gallery cannot be deleted")
        if not await self.metadata.claim_gallery_for_delete(name):
            raise NotFound(f"gallery {name!r} not found")
        count, _ = await asyncio.shield(self._finish_gallery_delete(name))
        return count

    async def _finish_gallery_delete(self, name: str) -> tuple[int, bool]:
        """Delete every face of a gallery being deleted, then the gallery.

        Returns how many of its faces were visible, and whether the gallery is gone (else repair finishes it).
        """
        count = await self.metadata.mark_gallery_faces_deleting(name)
        await self.quota.release(f"gallery-{name}-{uuid.uuid4().hex}", count)
        try:
            self.faults.check("gallery_delete.after_mark")
            while ids := await self.metadata.deleting_ids(REPAIR_PAGE, gallery=name):
                await self._each_shard(ids, lambda shard, group: shard.remove(group))
                await self.metadata.delete_deleting(ids)
                if self.store is not None:
                    for face_id in ids:
                        await self.store.delete_face(face_id)
            return count, await self.metadata.drop_gallery(name)
        except Exception as exc:  # noqa: BLE001 - gallery and faces are invisible already; repair finishes
            log.warning("deletion of gallery %r left to repair: %s", name, exc)
            self._repair_soon()
            return count, False

    async def list_galleries(self) -> list[Gallery]:
        return await self.metadata.list_galleries()

    # ---- status ----

    async def cluster_status(self) -> ClusterStatus:
        """Every shard's stats and the extractor's info, asked all at once, each bounded by STATUS_TIMEOUT_S, plus
        the metadata's counts. A part that does not answer is reported as not live with the reason; only the
        metadata database failing fails the call."""

        async def shard_status(shard: ShardClient) -> ShardStatus:
            try:
                stats = await asyncio.wait_for(shard.stats(STATUS_TIMEOUT_S), STATUS_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - whatever the failure, it is this shard's status
                return ShardStatus(shard.index, shard.address, None, _reason(exc, shard.name))
            return ShardStatus(shard.index, shard.address, stats)

        async def extractor_status() -> ExtractorStatus:
            address = self.extractor.address
            try:
                info = await asyncio.wait_for(self.extractor.describe(STATUS_TIMEOUT_S), STATUS_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - whatever the failure, it is the extractor's status
                return ExtractorStatus(address, None, _reason(exc, f"extractor {address}"))
            return ExtractorStatus(address, info)

        shards, extractor, (face_count, gallery_count) = await asyncio.gather(
            asyncio.gather(*(shard_status(s) for s in self.shards)), extractor_status(), self.metadata.counts()
        )
        return ClusterStatus(tuple(shards), extractor, face_count, gallery_count)

    # ---- repair ----

    def _repair_soon(self) -> None:
        self._repair_wakeup.set()

    async def _repair_loop(self) -> None:
        first = True
        while True:
            if not first:
                try:
                    await asyncio.wait_for(self._repair_wakeup.wait(), self.config.repair_interval_s)
                    # Woken by a failure: give the failed part a moment to come back before trying again.
                    await asyncio.sleep(min(5.0, self.config.repair_interval_s))
                except TimeoutError:
                    pass
            self._repair_wakeup.clear()
            try:
                sweep = time.monotonic() - self._last_sweep >= self.config.orphan_sweep_interval_s
                report = await self.repair(sweep=sweep)
                if report.errors:
                    log.warning("repair: %s", report)
                    self._repair_soon()
                elif first or report.changed:
                    log.info("repair: %s", report)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive any one failed round
                log.exception("repair round failed")
            first = False

    async def repair(self, sweep: bool = False, grace_s: float | None = None) -> RepairReport:
        """Finish or roll back whatever failed or crashed writes left. Safe to run at any time, from any gateway."""
        async with self._repair_lock:
            report = RepairReport()
            grace = self.config.pending_grace_s if grace_s is None else grace_s
            steps = [
                ("pending", lambda: self._repair_pending(grace, report)),
                ("deleting", lambda: self._repair_deleting(report)),
                ("sync", lambda: self._repair_sync(report)),
                ("galleries", lambda: self._repair_galleries(report)),
            ]
            if sweep:
                steps.append(("orphans", lambda: self._sweep_orphans(report)))
            for name, step in steps:
                try:
                    await step()
                except Exception as exc:  # noqa: BLE001 - one step failing must not stop the others
                    report.errors.append(f"{name}: {exc}")
            if sweep and not any(e.startswith("orphans") for e in report.errors):
                self._last_sweep = time.monotonic()
            try:
                model = await self.extractor.info()
                if self._model is not None and model != self._model:
                    log.warning("the extractor now produces %s descriptors (was %s)", model, self._model)
                self._model = model
            except Exception:  # noqa: BLE001 - keep the last known model while the extractor is away
                pass
            return report

    async def _repair_pending(self, grace_s: float, report: RepairReport) -> None:
        cutoff = utcnow() - timedelta(seconds=grace_s)
        while ids := await self.metadata.stale_pending(cutoff, REPAIR_PAGE):
            # Never acknowledged, so rolling back is right. Marking first makes a still-running enrollment
            # fail at its activation instead of racing this removal.
            report.rolled_back += await self.metadata.mark_deleting(ids, (PENDING,))

    async def _repair_deleting(self, report: RepairReport) -> None:
        after = 0
        failed: set[int] = set()
        while ids := await self.metadata.deleting_ids(REPAIR_PAGE, after_id=after):
            # Faces of a shard that failed stay marked (and invisible) for the next round.
            groups = [(s, g) for s, g in self.cells.group(ids).items() if s not in failed]
            results = await asyncio.gather(*(self.shards[s].remove(g) for s, g in groups), return_exceptions=True)
            removed: list[int] = []
            for (s, group), result in zip(groups, results):
                if isinstance(result, BaseException):
                    failed.add(s)
                    report.errors.append(f"deleting: {result}")
                else:
                    removed.extend(group)
            report.deleted += await self.metadata.delete_deleting(removed)
            after = ids[-1]

    async def _repair_sync(self, report: RepairReport) -> None:
        for doc in await self.metadata.unsynced(REPAIR_PAGE):
            face_id = doc["_id"]
            await self._shard_of(face_id).set_galleries([face_id], doc["galleries"])
            await self.metadata.clear_sync(face_id, doc["sync"], doc["galleries"])
            report.resynced += 1

    async def _repair_galleries(self, report: RepairReport) -> None:
        for name in await self.metadata.deleting_galleries():
            _, dropped = await self._finish_gallery_delete(name)
            if not dropped:
                raise Unavailable(f"gallery {name!r} not deleted yet")
            report.galleries_dropped += 1

    async def _sweep_orphans(self, report: RepairReport) -> None:
        """Remove shard ids that have no metadata at all, comparing one page of each shard's ids at a time.

        Enrollment writes the metadata before the shard, so an id on a shard without metadata can only be the
        leftover of a rolled back enrollment whose Add landed late; it was never visible.
        """
        for shard in self.shards:
            after = 0
            while ids := await shard.list_ids(after, REPAIR_PAGE):
                known = await self.metadata.existing_ids(ids[0], ids[-1])
                orphans = [i for i in ids if i not in known]
                if orphans:
                    await shard.remove(orphans)
                    report.orphans_removed += len(orphans)
                    log.info("removed %d orphan ids from %s", len(orphans), shard.name)
                after = ids[-1]
