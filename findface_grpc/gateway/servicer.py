"""FaceService gRPC servicer: protobuf <-> domain only."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from findface_grpc.convert import (
    attribute_names_from_pb, box_from_pb, box_to_pb, descriptor_to_pb, landmarks_to_pb, set_attributes_pb,
)
from findface_grpc.auth import TokenStore, authenticate
from findface_grpc.errors import InvalidArgument, PermissionDenied
from findface_grpc.gateway import fast_indexes, scoring
from findface_grpc.gateway.domain import (
    ClusterStatus,
    FastIndexInfo,
    Descriptor,
    DetectedFace,
    Face,
    Gallery,
    GalleryChange,
    MultiFace,
    NewFace,
    SkippedFace,
    SkipReason,
)
from findface_grpc.gateway.clients import descriptor_from_pb
from findface_grpc.gateway.enrollment import InStream
from findface_grpc.gateway.service import GatewayService
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

SELECTORS = {
    common_pb2.MULTI_FACE_SELECTOR_UNSPECIFIED: MultiFace.BIGGEST,
    common_pb2.MULTI_FACE_SELECTOR_BIGGEST: MultiFace.BIGGEST,
    common_pb2.MULTI_FACE_SELECTOR_ALL: MultiFace.ALL,
    common_pb2.MULTI_FACE_SELECTOR_REJECT: MultiFace.REJECT,
}
PRESETS = {
    common_pb2.Threshold.PRESET_UNSPECIFIED: None,
    common_pb2.Threshold.PRESET_STRICT: scoring.Preset.STRICT,
    common_pb2.Threshold.PRESET_MEDIUM: scoring.Preset.MEDIUM,
    common_pb2.Threshold.PRESET_LOW: scoring.Preset.LOW,
    common_pb2.Threshold.PRESET_NONE: scoring.Preset.NONE,
}
# ImportFaces messages of one stream enrolled at a time: the next one's checks, journal entry and shard Adds
# overlap this one's metadata insert; replies still go out in order, and a message's faces become visible only
# after the one before it succeeded.
IMPORT_IN_FLIGHT = 2
SKIP_REASONS = {
    SkipReason.UNSPECIFIED: common_pb2.SKIP_REASON_UNSPECIFIED,
    SkipReason.TOO_SMALL: common_pb2.SKIP_REASON_TOO_SMALL,
    SkipReason.LOW_QUALITY: common_pb2.SKIP_REASON_LOW_QUALITY,
}


def image_from_pb(msg: common_pb2.ImageSource, field: str, present: bool = True) -> bytes:
    if not present:
        raise InvalidArgument(f"{field} is required")
    kind = msg.WhichOneof("source")
    if kind == "url":
        raise InvalidArgument(f"{field}.url: this call does not fetch photo URLs; send the photo's bytes")
    if kind is None or not msg.content:
        raise InvalidArgument(f"{field}: the photo is empty")
    return msg.content


def selector_from_pb(value: int) -> MultiFace:
    try:
        return SELECTORS[value]
    except KeyError:
        raise InvalidArgument(f"mf_selector: unknown value {value}") from None


def threshold_from_pb(msg: common_pb2.Threshold) -> scoring.Threshold:
    kind = msg.WhichOneof("kind")
    if kind == "value":
        return scoring.Threshold(value=msg.value)
    if kind == "original_value":
        return scoring.Threshold(original_value=msg.original_value)
    if kind == "preset":
        if msg.preset not in PRESETS:
            raise InvalidArgument(f"threshold.preset: unknown value {msg.preset}")
        return scoring.Threshold(preset=PRESETS[msg.preset])
    return scoring.Threshold()


def boxes_of(request, name: str, more) -> list:
    """The optional single box field `name` followed by the repeated `more`."""
    first = [box_from_pb(getattr(request, name))] if request.HasField(name) else []
    return first + [box_from_pb(b) for b in more]


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(msg, value) -> None:
    # As Timestamp.FromDatetime (a naive time is UTC), in a seventh of its time: an identify sets two a face.
    if value is not None:
        since = value - (EPOCH if value.tzinfo is not None else NAIVE_EPOCH)
        msg.seconds = since.days * 86400 + since.seconds
        msg.nanos = since.microseconds * 1000


def face_to_pb(face: Face) -> common_pb2.FaceRecord:
    msg = common_pb2.FaceRecord(
        id=face.id,
        galleries=list(face.galleries),
        meta=face.meta,
        bbox=box_to_pb(face.bbox),
        photo_hash=face.photo_hash,
        person_id=face.person_id,
        cam_id=face.cam_id,
        photo=face.photo,
        thumbnail=face.thumbnail,
        normalized=face.normalized,
        model_id=face.model_id,
        quality=face.quality,
        orientation=face.orientation,
    )
    timestamp(msg.created_at, face.created_at)
    timestamp(msg.updated_at, face.updated_at)
    return msg


def detected_to_pb(face: DetectedFace) -> common_pb2.DetectedFace:
    msg = common_pb2.DetectedFace(
        bbox=box_to_pb(face.bbox), landmarks=landmarks_to_pb(face.landmarks), det_score=face.det_score,
        quality=face.quality, orientation=face.orientation,
    )
    set_attributes_pb(msg, face.attributes)
    return msg


def extracted_to_pb(face: DetectedFace) -> common_pb2.DetectedFace:
    msg = detected_to_pb(face)
    msg.descriptor.CopyFrom(descriptor_to_pb(face.descriptor.vector, face.descriptor.model_id))
    msg.normalized = face.normalized
    return msg


def skipped_to_pb(skipped: SkippedFace) -> common_pb2.SkippedFace:
    return common_pb2.SkippedFace(
        face=detected_to_pb(skipped.face), reason=SKIP_REASONS[skipped.reason], message=skipped.message
    )


def gallery_to_pb(gallery: Gallery) -> common_pb2.Gallery:
    msg = common_pb2.Gallery(name=gallery.name, face_count=gallery.face_count)
    timestamp(msg.created_at, gallery.created_at)
    return msg


def descriptor_in(msg: common_pb2.Descriptor, field: str) -> Descriptor:
    """A client's descriptor, checked for shape here; its model and dimension are checked by the service."""
    if msg.dim == 0 or len(msg.vector) != 4 * msg.dim:
        raise InvalidArgument(f"{field}: vector has {len(msg.vector)} bytes, dim {msg.dim} needs {4 * msg.dim}")
    return descriptor_from_pb(msg)


def import_face_from_pb(msg: gateway_pb2.ImportFace, index: int) -> NewFace:
    field = f"faces[{index}].descriptor"
    if not msg.HasField("descriptor"):
        raise InvalidArgument(f"{field} is required")
    return NewFace(
        descriptor=descriptor_in(msg.descriptor, field),
        galleries=tuple(msg.galleries),
        meta=msg.meta,
        bbox=box_from_pb(msg.bbox) if msg.HasField("bbox") else (0.0, 0.0, 0.0, 0.0),
        photo_hash=msg.photo_hash,
        person_id=msg.person_id,
        cam_id=msg.cam_id,
    )


def status_to_pb(status: ClusterStatus) -> gateway_pb2.ClusterStatusResponse:
    response = gateway_pb2.ClusterStatusResponse(
        shards_live=status.shards_live,
        shards_total=len(status.shards),
        face_count=status.face_count,
        gallery_count=status.gallery_count,
    )
    for shard in status.shards:
        msg = response.shards.add(index=shard.index, address=shard.address, live=shard.live, error=shard.error)
        if shard.stats is not None:
            stats = shard.stats
            msg.shard_id = stats.shard_id
            msg.face_count = stats.face_count
            msg.gallery_counts.update(stats.gallery_counts)
            msg.model_id = stats.model_id
            msg.dim = stats.dim
            msg.index_bytes = stats.index_bytes
            msg.rss_bytes = stats.rss_bytes
            msg.fast_indexes.extend(fast_index_to_pb(fast) for fast in stats.fast_indexes)
    extractor = status.extractor
    response.extractor.address = extractor.address
    response.extractor.live = extractor.live
    response.extractor.error = extractor.error
    if extractor.info is not None:
        info = extractor.info
        response.extractor.model_pack = info.model_pack
        response.extractor.detector_model_id = info.detector_model_id
        response.extractor.embedder_model_id = info.embedder_model_id
        response.extractor.descriptor_dim = info.descriptor_dim
        response.extractor.execution_providers.extend(info.execution_providers)
        response.extractor.version = info.version
    return response


class FaceServicer(gateway_pb2_grpc.FaceServiceServicer):
    def __init__(self, service: GatewayService, tokens: TokenStore | None = None) -> None:
        """`tokens`: the gateway's token store, to tell admin tokens apart; None when tokens are off."""
        self.service = service
        self.tokens = tokens

    async def _image(self, msg: common_pb2.ImageSource, field: str, present: bool = True) -> bytes:
        """The photo's bytes: given inline, or fetched from its URL (with the limits of gateway.photos)."""
        if present and msg.WhichOneof("source") == "url":
            return await self.service.photos.fetch(msg.url, f"{field}.url")
        return image_from_pb(msg, field, present)

    async def Detect(self, request, context):
        image = await self._image(request.image, "image", request.HasField("image"))
        detection = await self.service.search.detect(
            image, try_rotations=request.try_rotations, attributes=attribute_names_from_pb(request.attributes)
        )
        return gateway_pb2.FaceDetectResponse(
            faces=[detected_to_pb(f) for f in detection.faces],
            image_width=detection.width,
            image_height=detection.height,
            orientation=detection.orientation,
        )

    async def Extract(self, request, context):
        image = await self._image(request.image, "image", request.HasField("image"))
        unspecified = request.mf_selector == common_pb2.MULTI_FACE_SELECTOR_UNSPECIFIED
        detection = await self.service.search.extract(
            image, [box_from_pb(b) for b in request.bboxes],
            MultiFace.ALL if unspecified else selector_from_pb(request.mf_selector),
            normalized=request.return_normalized, attributes=attribute_names_from_pb(request.attributes),
            try_rotations=request.try_rotations,
        )
        return gateway_pb2.FaceExtractResponse(
            faces=[extracted_to_pb(f) for f in detection.faces], image_width=detection.width,
            image_height=detection.height, skipped=[skipped_to_pb(s) for s in detection.skipped],
        )

    async def Verify(self, request, context):
        second = request.WhichOneof("second")
        if second is None:
            raise InvalidArgument("image2 or face_id is required")
        result = await self.service.search.verify(
            image1=await self._image(request.image1, "image1", request.HasField("image1")),
            bboxes1=boxes_of(request, "bbox1", request.bboxes1),
            threshold=threshold_from_pb(request.threshold),
            selector=selector_from_pb(request.mf_selector),
            image2=await self._image(request.image2, "image2") if second == "image2" else None,
            bboxes2=boxes_of(request, "bbox2", request.bboxes2),
            face_id=request.face_id if second == "face_id" else None,
            try_rotations=request.try_rotations,
        )
        return gateway_pb2.VerifyResponse(
            results=[
                gateway_pb2.VerifyPair(
                    bbox1=box_to_pb(p.bbox1), bbox2=box_to_pb(p.bbox2), confidence=p.confidence, verified=p.verified,
                    confidence_original=p.confidence_original,
                )
                for p in result.pairs
            ],
            verified=result.verified,
            skipped1=[skipped_to_pb(s) for s in result.skipped1],
            skipped2=[skipped_to_pb(s) for s in result.skipped2],
        )

    async def Identify(self, request, context):
        query = request.WhichOneof("query")
        if query is None:
            raise InvalidArgument("image or descriptor is required")
        if request.HasField("sighting"):
            result = await self._identify_sighting(request, query)
        else:
            result = await self.service.search.identify(
                image=await self._image(request.image, "image") if query == "image" else None,
                descriptor=descriptor_in(request.descriptor, "descriptor") if query == "descriptor" else None,
                bboxes=[box_from_pb(b) for b in request.bboxes],
                gallery=request.gallery,
                n=request.n,
                threshold=threshold_from_pb(request.threshold),
                selector=selector_from_pb(request.mf_selector),
                try_rotations=request.try_rotations,
                full_scan=request.full_scan,
            )
        response = gateway_pb2.IdentifyResponse(
            shards_answered=result.shards_answered, shards_total=result.shards_total, partial=result.partial,
            skipped=[skipped_to_pb(s) for s in result.skipped],
        )
        for item in result.results:
            entry = response.results.add()
            if item.query is not None:
                entry.query.CopyFrom(detected_to_pb(item.query))
            for match in item.matches:
                entry.matches.add(face=face_to_pb(match.face), confidence=match.confidence,
                                  confidence_original=match.confidence_original)
        return response

    async def _sighting(self, request):
        sighting = request.sighting
        return await self.service.sightings.sighting(sighting.camera_id, sighting.frame_time, sighting.track_id)

    async def _identify_sighting(self, request, query: str):
        if query != "image":
            raise InvalidArgument("sighting: a camera's face comes as an image, not a descriptor")
        return await self.service.sightings.identify(
            await self._sighting(request), await self._image(request.image, "image"),
            [box_from_pb(b) for b in request.bboxes], request.gallery, request.n,
            threshold_from_pb(request.threshold), selector_from_pb(request.mf_selector), request.try_rotations,
        )

    async def CreateFace(self, request, context):
        if request.HasField("sighting"):
            enrollment = await self.service.sightings.create_face(
                await self._sighting(request), await self._image(request.image, "image", request.HasField("image")),
                [box_from_pb(b) for b in request.bboxes], request.meta, list(request.galleries),
                selector_from_pb(request.mf_selector), request.person_id, request.image.url, request.min_quality,
                request.try_rotations,
            )
            return gateway_pb2.CreateFaceResponse(faces=[face_to_pb(f) for f in enrollment.faces],
                                                  skipped=[skipped_to_pb(s) for s in enrollment.skipped])
        enrollment = await self.service.enrollment.create_face(
            image=await self._image(request.image, "image", request.HasField("image")),
            bboxes=[box_from_pb(b) for b in request.bboxes],
            meta=request.meta,
            galleries=list(request.galleries),
            selector=selector_from_pb(request.mf_selector),
            person_id=request.person_id,
            cam_id=request.cam_id,
            photo=request.image.url,
            min_quality=request.min_quality,
            try_rotations=request.try_rotations,
        )
        return gateway_pb2.CreateFaceResponse(
            faces=[face_to_pb(f) for f in enrollment.faces], skipped=[skipped_to_pb(s) for s in enrollment.skipped]
        )

    async def _import(self, request: gateway_pb2.ImportFacesRequest,
                      stream: InStream) -> gateway_pb2.ImportFacesResponse:
        faces = [import_face_from_pb(f, i) for i, f in enumerate(request.faces)]
        return gateway_pb2.ImportFacesResponse(ids=await self.service.enrollment.import_faces(faces, stream))

    async def ImportFaces(self, request_iterator, context):
        """Up to IMPORT_IN_FLIGHT messages are enrolled at once, read by a task of their own (so that a client
        that waits for each reply before sending the next message is served too), replied to in order. The
        stream ends at the first failure; a message after it that was already under way is rolled back."""
        slots = asyncio.Semaphore(IMPORT_IN_FLIGHT)
        queue: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            previous: asyncio.Task | None = None
            allocated: asyncio.Event | None = None
            try:
                async for request in request_iterator:
                    await slots.acquire()
                    stream = InStream(previous, allocated)
                    allocated = stream.allocated
                    previous = asyncio.create_task(self._import(request, stream))
                    # Seen here too, so that one never awaited (the stream ended before it) logs nothing.
                    previous.add_done_callback(lambda t: t.cancelled() or t.exception())
                    queue.put_nowait(previous)
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await queue.get()) is not None:
                try:
                    reply = await task
                finally:
                    slots.release()
                yield reply
            await reader  # a failure reading the stream
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def GetFace(self, request, context):
        return face_to_pb(await self.service.faces.get_face(request.id))

    async def UpdateFace(self, request, context):
        if request.set_galleries and (request.galleries_add or request.galleries_remove):
            raise InvalidArgument("galleries_add and galleries_remove cannot be combined with set_galleries")
        if request.set_galleries:
            change = GalleryChange(add=tuple(request.galleries_set), replace=True)
        else:
            if request.galleries_set:
                raise InvalidArgument("galleries_set needs set_galleries = true")
            change = GalleryChange(add=tuple(request.galleries_add), remove=tuple(request.galleries_remove))
        meta = request.meta if request.HasField("meta") else None
        person_id = request.person_id if request.HasField("person_id") else None
        return face_to_pb(await self.service.faces.update_face(request.id, meta, change, person_id))

    async def DeleteFace(self, request, context):
        await self.service.faces.delete_face(request.id)
        return gateway_pb2.DeleteFaceResponse()

    async def ListFaces(self, request, context):
        page = await self.service.faces.list_faces(
            request.gallery, request.max_id, request.limit, request.meta if request.HasField("meta") else None
        )
        return gateway_pb2.ListFacesResponse(faces=[face_to_pb(f) for f in page.faces], next_max_id=page.next_max_id,
                                             prev_max_id=page.prev_max_id, has_prev=page.has_prev)

    async def ListMeta(self, request, context):
        rows = await self.service.faces.list_meta(request.gallery)
        return gateway_pb2.ListMetaResponse(
            results=[gateway_pb2.MetaCount(meta=r.meta, count=r.count, face=face_to_pb(r.face)) for r in rows]
        )

    async def CreateGallery(self, request, context):
        return gallery_to_pb(await self.service.galleries.create_gallery(request.name))

    async def DeleteGallery(self, request, context):
        deleted = await self.service.galleries.delete_gallery(request.name)
        return gateway_pb2.DeleteGalleryResponse(deleted_faces=deleted)

    async def ListGalleries(self, request, context):
        found = await self.service.galleries.list_galleries(counts=not request.names_only)
        return gateway_pb2.ListGalleriesResponse(
            galleries=[gallery_to_pb(g) for g in found.galleries], shards_answered=found.shards_answered,
            shards_total=found.shards_total, partial=found.partial,
        )

    async def ClusterStatus(self, request, context):
        return status_to_pb(await self.service.cluster_status())

    async def BuildFastIndex(self, request, context):
        await self._require_admin(context, "BuildFastIndex")
        return fast_indexes_to_pb(await fast_indexes.build(self.service.cluster, request.gallery, request.nprobe))

    async def DropFastIndex(self, request, context):
        await self._require_admin(context, "DropFastIndex")
        return fast_indexes_to_pb(await fast_indexes.drop(self.service.cluster, request.gallery))

    async def _require_admin(self, context, what: str) -> None:
        if self.tokens is None:
            return
        # The interceptor checked the token already; this answers from the store's cache.
        caller = (await authenticate(self.tokens, context.invocation_metadata())).name
        if caller not in self.service.cluster.config.admin_tokens:
            raise PermissionDenied(f"{what} is for admin tokens ([gateway].admin_tokens); {caller!r} is not one")


def fast_index_to_pb(fast: FastIndexInfo) -> common_pb2.FastIndexState:
    return common_pb2.FastIndexState(
        gallery=fast.gallery, state=common_pb2.FastIndexState.State.Value(fast.state), progress=fast.progress,
        listed=fast.listed, delta=fast.delta, lists=fast.lists, nprobe=fast.nprobe, bytes=fast.nbytes,
        error=fast.error, built_at=fast.built_at,
    )


def fast_indexes_to_pb(shards: list[fast_indexes.ShardFastIndex]) -> gateway_pb2.FastIndexResponse:
    response = gateway_pb2.FastIndexResponse()
    for shard in shards:
        entry = response.shards.add(index=shard.index, address=shard.address, error=shard.error)
        if shard.state is not None:
            entry.state.CopyFrom(fast_index_to_pb(shard.state))
    return response
