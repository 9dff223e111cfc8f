"""Extractor gRPC servicer: protobuf <-> domain only."""
from __future__ import annotations

import asyncio

from findface_grpc import __version__
from findface_grpc.convert import (
    ATTRIBUTES_PB, attribute_names_from_pb, box_from_pb, box_to_pb, descriptor_to_pb, landmarks_to_pb,
    set_attributes_pb,
)
from findface_grpc.errors import FindFaceError, InvalidArgument
from findface_grpc.extractor.models.base import Detection
from findface_grpc.extractor.pipeline import Limits, MultiFace, Skipped, SkipReason
from findface_grpc.extractor.service import ExtractedFace, ExtractorService
from findface_grpc.rpc import status_code
from findface_grpc.v1 import common_pb2, extractor_pb2, extractor_pb2_grpc

SELECTORS = {
    common_pb2.MULTI_FACE_SELECTOR_UNSPECIFIED: MultiFace.BIGGEST,
    common_pb2.MULTI_FACE_SELECTOR_BIGGEST: MultiFace.BIGGEST,
    common_pb2.MULTI_FACE_SELECTOR_ALL: MultiFace.ALL,
    common_pb2.MULTI_FACE_SELECTOR_REJECT: MultiFace.REJECT,
}
DEFAULT_THUMBNAIL = 160


def _min_quality(value: float) -> float:
    if not 0.0 <= value <= 1.0:  # NaN too
        raise InvalidArgument(f"min_quality must be in [0, 1], not {value}")
    return value


def selector_from_pb(value: int) -> MultiFace:
    try:
        return SELECTORS[value]
    except KeyError:
        raise InvalidArgument(f"unknown mf_selector {value}") from None


SKIP_REASONS = {
    SkipReason.TOO_SMALL: common_pb2.SKIP_REASON_TOO_SMALL,
    SkipReason.LOW_QUALITY: common_pb2.SKIP_REASON_LOW_QUALITY,
}


def detection_to_pb(d: Detection, quality: float) -> common_pb2.DetectedFace:
    return common_pb2.DetectedFace(
        bbox=box_to_pb(d.bbox),
        landmarks=landmarks_to_pb(d.landmarks),
        det_score=d.score,
        quality=quality,
        orientation=d.orientation,
    )


def skipped_to_pb(s: Skipped) -> common_pb2.SkippedFace:
    return common_pb2.SkippedFace(
        face=detection_to_pb(s.face.detection, s.face.quality), reason=SKIP_REASONS[s.reason], message=s.message
    )


class ExtractorServicer(extractor_pb2_grpc.ExtractorServicer):
    def __init__(self, service: ExtractorService, limits: Limits, max_batch: int) -> None:
        self.service = service
        self.limits = limits
        self.max_batch = max_batch

    def _face_to_pb(self, face: ExtractedFace) -> common_pb2.DetectedFace:
        msg = detection_to_pb(face.detection, face.quality)
        msg.descriptor.CopyFrom(descriptor_to_pb(face.descriptor, self.service.info.embedder_id))
        msg.normalized = face.normalized_png
        msg.thumbnail = face.thumbnail_jpeg
        set_attributes_pb(msg, face.attributes)
        return msg

    async def Detect(self, request, context):
        detected = await self.service.detect(
            request.image, request.min_face_size, request.try_rotations, attribute_names_from_pb(request.attributes)
        )
        found = detected.found
        faces = []
        for face, attributes in zip(found.faces, detected.attributes):
            faces.append(msg := detection_to_pb(face.detection, face.quality))
            set_attributes_pb(msg, attributes)
        return extractor_pb2.DetectResponse(
            faces=faces,
            image_width=found.width,
            image_height=found.height,
            orientation=found.orientation,
        )

    async def _extract(self, request) -> extractor_pb2.ExtractResponse:
        result = await self.service.extract(
            request.image,
            boxes=[box_from_pb(b) for b in request.boxes],
            selector=selector_from_pb(request.mf_selector),
            min_face_size=request.min_face_size,
            want_normalized=request.return_normalized,
            thumbnail_size=(request.thumbnail_size or DEFAULT_THUMBNAIL) if request.return_thumbnail else 0,
            min_quality=_min_quality(request.min_quality),
            try_rotations=request.try_rotations,
            attributes=attribute_names_from_pb(request.attributes),
        )
        return extractor_pb2.ExtractResponse(
            faces=[self._face_to_pb(f) for f in result.faces],
            image_width=result.width,
            image_height=result.height,
            request_id=request.request_id,
            skipped=[skipped_to_pb(s) for s in result.skipped],
        )

    async def Extract(self, request, context):
        return await self._extract(request)

    async def ExtractStream(self, request_iterator, context):
        # Requests are processed in order but overlapped, so that one stream can keep every core busy.
        pending: asyncio.Queue = asyncio.Queue(maxsize=16)

        async def one(request):
            try:
                return await self._extract(request)
            except FindFaceError as exc:
                return extractor_pb2.ExtractResponse(
                    request_id=request.request_id,
                    error=common_pb2.ItemError(code=status_code(exc).value[0], message=exc.message),
                )

        async def feed():
            async for request in request_iterator:
                await pending.put(asyncio.ensure_future(one(request)))
            await pending.put(None)

        feeder = asyncio.ensure_future(feed())
        try:
            while (task := await pending.get()) is not None:
                yield await task
            await feeder
        finally:
            feeder.cancel()

    async def Info(self, request, context):
        info = self.service.info
        return extractor_pb2.InfoResponse(
            model_pack=info.pack,
            detector_model_id=info.detector_id,
            embedder_model_id=info.embedder_id,
            descriptor_dim=info.dim,
            execution_providers=list(info.providers),
            max_batch=self.max_batch,
            min_face_size=self.limits.min_face_size,
            detect_min_face_size=self.limits.detect_min_face_size,
            max_image_bytes=self.limits.max_image_bytes,
            max_image_pixels=self.limits.max_image_pixels,
            version=__version__,
            attribute_models=[
                extractor_pb2.AttributeModel(attribute=ATTRIBUTES_PB[name], model_id=model_id)
                for name, model_id in info.attribute_models
            ],
        )

