"""Detect, Verify and Identify: the extractor for the query faces, every shard searched at once (fanout.py),
their top-k lists merged (merge.py) and joined with the metadata of the active faces (hitcache.py keeps what
recent searches read of it)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from findface_grpc.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from findface_grpc.gateway import fanout, scoring
from findface_grpc.gateway.cluster import Cluster
from findface_grpc.gateway.coalesce import MAX_QUERIES_PER_CALL
from findface_grpc.gateway.config import UNAVAILABLE
from findface_grpc.gateway.domain import (
    DEFAULT_GALLERY,
    Box,
    Descriptor,
    DetectedFace,
    Detection,
    Face,
    FaceMatches,
    IdentifyResult,
    Match,
    ModelInfo,
    MultiFace,
    SkippedFace,
    VerifyPair,
    VerifyResult,
    check_gallery_name,
)
from findface_grpc.gateway.hitcache import HitCache
from findface_grpc.gateway.merge import Hit, merge_batches

log = logging.getLogger(__name__)

MAX_SHARD_K = 10000
# Hits whose faces turn out not to be active (being enrolled or deleted right now) are dropped at the join;
# asking each shard for a few more than n keeps such a drop from shortening the answer.
JOIN_MARGIN = 16


class Searcher:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.default_preset = scoring.Preset(cluster.config.default_threshold)
        self._failing_shards: set[int] = set()
        self.hits = HitCache(cluster.config.hit_cache_faces, cluster.config.hit_cache_ttl_s)

    def _resolve_threshold(self, threshold: scoring.Threshold, model_id: str) -> float:
        return scoring.resolve(threshold, model_id, self.default_preset)

    async def detect(self, image: bytes, try_rotations: bool = False, attributes: Sequence[str] = ()) -> Detection:
        return await self.cluster.extractor.detect(image, try_rotations=try_rotations, attributes=attributes)

    async def extract(
        self, image: bytes, boxes: Sequence[Box], selector: MultiFace, normalized: bool = False,
        attributes: Sequence[str] = (), try_rotations: bool = False,
    ) -> Detection:
        """The faces with their descriptors, nothing stored (FaceService.Extract)."""
        return await self.cluster.extract(image, list(boxes), selector, "image", try_rotations=try_rotations,
                                          normalized=normalized, attributes=attributes)

    async def verify(
        self,
        image1: bytes,
        bboxes1: Sequence[Box],
        threshold: scoring.Threshold,
        selector: MultiFace,
        image2: bytes | None = None,
        bboxes2: Sequence[Box] = (),
        face_id: int | None = None,
        try_rotations: bool = False,
    ) -> VerifyResult:
        cluster = self.cluster
        model = await cluster.model()
        limit = self._resolve_threshold(threshold, model.model_id)
        presets = scoring.presets_for(model.model_id)
        first = cluster.extract(image1, list(bboxes1), selector, "image1", try_rotations=try_rotations)
        skipped2: tuple[SkippedFace, ...] = ()
        if face_id is not None:
            faces1, (face, descriptor) = await asyncio.gather(first, self._enrolled_descriptor(face_id, model))
            seconds = [(face.bbox, descriptor)]
        elif image2 is not None:
            faces1, faces2 = await asyncio.gather(first, cluster.extract(image2, list(bboxes2), selector, "image2",
                                                                         try_rotations=try_rotations))
            seconds = [(f.bbox, f.descriptor) for f in faces2.faces]
            skipped2 = faces2.skipped
        else:
            raise InvalidArgument("image2 or face_id is required")
        pairs = []
        for f1 in faces1.faces:
            for box2, d2 in seconds:
                conf = scoring.confidence(float(np.dot(f1.descriptor.vector, d2.vector)))
                pairs.append(VerifyPair(f1.bbox, box2, conf, conf >= limit, scoring.to_original(conf, presets)))
        pairs.sort(key=lambda p: -p.confidence)
        return VerifyResult(tuple(pairs), faces1.skipped, skipped2)

    async def _enrolled_descriptor(self, face_id: int, model: ModelInfo) -> tuple[Face, Descriptor]:
        face = await self.cluster.metadata.get_active(face_id)
        if face is None:
            raise NotFound(f"face_id: face {face_id} not found")
        found = await self.cluster.shard_of(face_id).descriptors([face_id])
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
        thumbnails: bool = False,
        full_scan: bool = False,
    ) -> IdentifyResult:
        """`thumbnails`: each query face of the photo with its thumbnail (DetectedFace.thumbnail), for history.
        `full_scan`: every face of the gallery is compared even where shards have a fast index."""
        n = n or 1
        if not 1 <= n <= self.cluster.config.max_n:
            raise InvalidArgument(f"n must be within 1..{self.cluster.config.max_n}, got {n}")
        gallery = gallery or DEFAULT_GALLERY
        check_gallery_name(gallery, "gallery")
        # The gallery's existence and faces_version (hitcache.py), known from a recent search or read while the
        # shards search (a search in a missing gallery finds nothing and costs little): with the hits' metadata
        # cached under that version, an identify needs no other metadata round trip, often none at all. A known
        # version is taken as it is, without the task a read needs.
        known = self.hits.version(gallery, self.cluster.metadata.touches)
        if known is None:
            gallery_check = asyncio.ensure_future(self._gallery_version(gallery))
        else:
            gallery_check = asyncio.get_running_loop().create_future()
            gallery_check.set_result(known)
        try:
            return await self._identify(gallery, gallery_check, image, descriptor, bboxes, n, threshold, selector,
                                        try_rotations, thumbnails, full_scan)
        finally:
            if not gallery_check.done():
                gallery_check.cancel()
            elif not gallery_check.cancelled():
                gallery_check.exception()  # retrieved: an error that lost the race to another is not news

    async def _identify(self, gallery, gallery_check, image, descriptor, bboxes, n, threshold, selector,
                        try_rotations, thumbnails, full_scan) -> IdentifyResult:
        cluster = self.cluster
        model = await cluster.model()
        limit = self._resolve_threshold(threshold, model.model_id)
        presets = scoring.presets_for(model.model_id)
        skipped: tuple[SkippedFace, ...] = ()
        if descriptor is not None:
            queries: list[DetectedFace | None] = [None]
            vectors = [cluster.check_descriptor(descriptor, model, "descriptor")]
        elif image is not None:
            detection = await cluster.extract(image, bboxes, selector, "image", try_rotations=try_rotations,
                                              crops=thumbnails)
            queries = list(detection.faces)
            vectors = [f.descriptor for f in detection.faces]
            skipped = detection.skipped
        else:
            raise InvalidArgument("image or descriptor is required")
        total = len(cluster.shards)
        if not vectors:
            await gallery_check
            # Nothing to look for, so no shard's answer is missing.
            return IdentifyResult((), total, total, skipped)

        k = min(n + JOIN_MARGIN, MAX_SHARD_K)
        merged = []
        answered = total
        for start in range(0, len(vectors), MAX_QUERIES_PER_CALL):
            chunk = vectors[start:start + MAX_QUERIES_PER_CALL]
            answers = await fanout.search_all(
                cluster.shards, chunk, gallery, k, scoring.cosine_threshold(limit), cluster.config.shard_deadline_s,
                full_scan,
            )
            failed = [a for a in answers if not a.ok]
            self._note_search_health(answers)
            if len(failed) == total:
                raise Unavailable("no shard answered: " + "; ".join(a.error for a in failed))
            if failed and cluster.config.partial_results == UNAVAILABLE:
                raise Unavailable(f"{len(failed)} of {total} shards did not answer: " + "; ".join(a.error for a in failed))
            answered = min(answered, total - len(failed))
            merged.extend(merge_batches([a.hits for a in answers if a.ok], len(chunk), k))

        version = await gallery_check
        hit_ids = {h.face_id for hits in merged for h in hits}
        faces: dict[int, Face | None] = dict(self.hits.get(gallery, version, hit_ids))
        while wanted := _unknown(merged, faces, gallery, limit, n):
            # Faces not cached: at most n a query, most likely all that are needed; more only when some of them
            # turn out not to be active (being enrolled or deleted) or not in the gallery.
            found = await cluster.metadata.active_faces(sorted(wanted))
            self.hits.put(gallery, version, found.values())
            faces.update({i: found.get(i) for i in wanted})
        results = []
        for query, hits in zip(queries, merged):
            matches = []
            for hit, face in _usable(hits, faces, gallery, limit):
                if len(matches) == n:
                    break
                conf = scoring.confidence(hit.score)
                matches.append(Match(face, conf, scoring.to_original(conf, presets)))
            results.append(FaceMatches(query, tuple(matches)))
        return IdentifyResult(tuple(results), answered, total, skipped)

    async def _gallery_version(self, gallery: str) -> str:
        metadata = self.cluster.metadata
        touches = metadata.touches
        version = self.hits.version(gallery, touches)
        if version is None:
            began = self.hits.read_began()
            version = await metadata.gallery_version(gallery)
            if version is None:
                raise NotFound(f"gallery: gallery {gallery!r} not found")
            self.hits.remember(gallery, version, began, touches)
        return version

    def _note_search_health(self, answers: Sequence[fanout.ShardAnswer]) -> None:
        # Logged when a shard starts or stops failing, not on every search: under load that would be thousands.
        for answer in answers:
            if not answer.ok and answer.shard not in self._failing_shards:
                self._failing_shards.add(answer.shard)
                log.warning("searches go on without %s", answer.error)
            elif answer.ok and answer.shard in self._failing_shards:
                self._failing_shards.discard(answer.shard)
                log.info("%s answers searches again", self.cluster.shards[answer.shard].name)


def _usable(hits: Sequence[Hit], faces: dict[int, Face | None], gallery: str, limit: float):
    """(hit, face) for each hit, best first, whose face is active, in the gallery (a gallery change may not have
    reached the shard yet) and at least `limit`; up to the first hit whose face has not been looked up."""
    for hit in hits:
        if hit.face_id not in faces:
            return
        face = faces[hit.face_id]
        if face is None or gallery not in face.galleries:
            continue
        if scoring.confidence(hit.score) < limit:
            return  # hits come best first
        yield hit, face


def _unknown(merged: Sequence[Sequence[Hit]], faces: dict[int, Face | None], gallery: str, limit: float,
             n: int) -> set[int]:
    """The ids to look up next: per query, those of the hits after its usable ones, as many as it lacks of n."""
    wanted: set[int] = set()
    for hits in merged:
        good = sum(1 for _ in _usable(hits, faces, gallery, limit))
        if good >= n:
            continue
        rest = [h.face_id for h in hits if h.face_id not in faces and scoring.confidence(h.score) >= limit]
        wanted.update(rest[:n - good])
    return wanted
