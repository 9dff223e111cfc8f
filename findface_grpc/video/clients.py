"""The detector's gRPC calls: Detect (and, for post-uniq, Extract and Info) on the extractor, ListCameras and
ReportCameraStatus on the gateway's VideoService, and posting faces through FaceService.Identify / CreateFace
with a Sighting. Each turns protobuf into the detector's values and a
failed call into Transient (worth retrying: the server is down or busy) or Rejected (this request will never
pass), so that the rest of the package never sees grpc.
"""
from __future__ import annotations

import logging

import grpc
import numpy as np

from findface_grpc import rpc
from findface_grpc.auth import token_metadata
from findface_grpc.convert import box_from_pb, box_to_pb
from findface_grpc.gateway.scoring import Preset, presets_for
from findface_grpc.video.domain import Box, Camera, CameraReport, Face, Frame, Region, Snapshot, shift
from findface_grpc.v1 import (
    common_pb2,
    extractor_pb2,
    extractor_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    video_pb2,
    video_pb2_grpc,
)

log = logging.getLogger(__name__)

TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}
PAGE = 1000
PEER_EXTRACTOR, PEER_GATEWAY = "extractor", "gateway"  # how the channels are named in the metrics


class Transient(Exception):
    """The server is down or busy: the same call may pass later."""


class Rejected(Exception):
    """The server refused the call for what it is (a deleted camera, a bad token): it will not pass later."""


def _failure(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    message = f"{what}: {exc.code().name}: {exc.details() or ''}"
    return Transient(message) if exc.code() in TRANSIENT else Rejected(message)


def region_from_pb(camera: video_pb2.Camera, name: str) -> Region | None:
    if not camera.HasField(name):
        return None
    r = getattr(camera, name)
    return Region(r.x, r.y, r.width, r.height)


class ExtractorDetector:
    """Faces of frames from every camera, through one channel (VideoDetector bounds the calls in flight)."""

    def __init__(self, address: str, timeout_s: float, min_face_size: int) -> None:
        self.channel = rpc.channel(address, PEER_EXTRACTOR)
        self.stub = extractor_pb2_grpc.ExtractorStub(self.channel)
        self.timeout_s = timeout_s
        # Smaller faces are not posted, but are still tracked down to the detector's own minimum: a face growing
        # as it comes nearer keeps its track.
        self.min_face_size = max(1, min_face_size // 2)
        self._presets: dict[str, float] | None = None

    async def detect(self, frame: Frame) -> list[Face]:
        try:
            reply = await self.stub.Detect(
                extractor_pb2.DetectRequest(image=frame.jpeg, min_face_size=self.min_face_size),
                timeout=self.timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, "extractor Detect") from None
        dx, dy = frame.offset
        return [
            Face(
                box=shift(box_from_pb(f.bbox), dx, dy),
                landmarks=tuple((p.x + dx, p.y + dy) for p in f.landmarks.points),
                score=f.det_score,
                quality=f.quality,
            )
            for f in reply.faces
        ]

    async def describe(self, photo: bytes, box: Box) -> np.ndarray:
        """The descriptor of the face in `box` of `photo`."""
        try:
            reply = await self.stub.Extract(
                extractor_pb2.ExtractRequest(image=photo, boxes=[box_to_pb(box)], min_face_size=1),
                timeout=self.timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, "extractor Extract") from None
        if not reply.faces:
            raise Rejected("extractor Extract: no face in the box")
        return np.frombuffer(reply.faces[0].descriptor.vector, dtype="<f4")

    async def similarity_presets(self) -> dict[str, float]:
        """The cosine similarity of each threshold preset for the extractor's model (asked once)."""
        if self._presets is None:
            try:
                info = await self.stub.Info(extractor_pb2.InfoRequest(), timeout=self.timeout_s)
            except grpc.aio.AioRpcError as exc:
                raise _failure(exc, "extractor Info") from None
            presets = presets_for(info.embedder_model_id)
            self._presets = {p.value: presets.value(p) for p in (Preset.STRICT, Preset.MEDIUM, Preset.LOW)}
        return self._presets

    async def close(self) -> None:
        await self.channel.close()


class GatewayClient:
    """The detector's calls to the gateway, with its token."""

    def __init__(self, address: str, token: str, timeout_s: float) -> None:
        self.channel = rpc.channel(address, PEER_GATEWAY)
        self.faces = gateway_pb2_grpc.FaceServiceStub(self.channel)
        self.video = video_pb2_grpc.VideoServiceStub(self.channel)
        self.metadata = token_metadata(token) if token else ()
        self.timeout_s = timeout_s

    async def cameras(self, detector: str) -> list[Camera]:
        """Every camera the gateway lists for `detector`, all pages."""
        found: list[Camera] = []
        after = ""
        while True:
            try:
                reply = await self.video.ListCameras(
                    video_pb2.ListCamerasRequest(detector=detector, after_id=after, limit=PAGE),
                    timeout=self.timeout_s, metadata=self.metadata,
                )
            except grpc.aio.AioRpcError as exc:
                raise _failure(exc, "gateway ListCameras") from None
            for c in reply.cameras:
                if c.url_hidden:
                    log.warning("camera %s left out: the gateway hides its url from this detector's token (give "
                                "the detector an admin token, or the token that created the camera)", c.id)
                    continue
                found.append(Camera(c.id, c.url, region_from_pb(c, "rot"), region_from_pb(c, "roi")))
            if not reply.next_after_id:
                return found
            after = reply.next_after_id

    async def report(self, detector: str, reports: list[CameraReport]) -> int:
        """Tell the gateway which cameras run and why the others do not; returns how many it updated."""
        states = {True: video_pb2.CAMERA_STATE_RUNNING, False: video_pb2.CAMERA_STATE_NOT_RUNNING}
        request = video_pb2.ReportCameraStatusRequest(detector=detector, cameras=[
            video_pb2.CameraStatusReport(camera_id=r.camera_id, state=states[r.running], reason=r.reason)
            for r in reports])
        try:
            reply = await self.video.ReportCameraStatus(request, timeout=self.timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, "gateway ReportCameraStatus") from None
        return reply.updated

    async def post(self, camera_id: str, snapshot: Snapshot, *, create: bool, gallery: str,
                   galleries: tuple[str, ...], meta: str = "") -> None:
        image = common_pb2.ImageSource(content=snapshot.photo)
        sighting = gateway_pb2.Sighting(camera_id=camera_id, frame_time=snapshot.frame_time,
                                        track_id=snapshot.track_id)
        boxes = [box_to_pb(snapshot.photo_box)]
        try:
            if create:
                await self.faces.CreateFace(
                    gateway_pb2.CreateFaceRequest(image=image, bboxes=boxes, galleries=list(galleries),
                                                  meta=meta, sighting=sighting),
                    timeout=self.timeout_s, metadata=self.metadata,
                )
            else:
                await self.faces.Identify(
                    gateway_pb2.IdentifyRequest(image=image, bboxes=boxes, gallery=gallery, sighting=sighting),
                    timeout=self.timeout_s, metadata=self.metadata,
                )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, "gateway CreateFace" if create else "gateway Identify") from None

    async def close(self) -> None:
        await self.channel.close()
