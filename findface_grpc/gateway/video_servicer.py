"""VideoService gRPC servicer: protobuf <-> domain only (cameras.py, persons.py, history.py, events.py)."""
from __future__ import annotations

from datetime import datetime, timezone

from findface_grpc.auth import TokenStore, authenticate
from findface_grpc.convert import box_to_pb
from findface_grpc.errors import InvalidArgument
from findface_grpc.gateway.cameras import Camera, CameraSpec, CameraState, Region, StatusReport
from findface_grpc.gateway.history import Event, HistoryQuery
from findface_grpc.gateway.service import GatewayService
from findface_grpc.gateway.servicer import face_to_pb, timestamp
from findface_grpc.v1 import gateway_pb2, video_pb2, video_pb2_grpc

# WatchEvents with after_id: how many stored events are replayed, at most, before the live ones.
REPLAY_MAX = 1000
STATE_TO_PB = {CameraState.RUNNING: video_pb2.CAMERA_STATE_RUNNING,
               CameraState.NOT_RUNNING: video_pb2.CAMERA_STATE_NOT_RUNNING}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}


def region_from_pb(request, name: str) -> Region | None:
    if not request.HasField(name):
        return None
    msg = getattr(request, name)
    return Region(msg.x, msg.y, msg.width, msg.height)


def spec_from_pb(request: video_pb2.CreateCameraRequest) -> CameraSpec:
    return CameraSpec(meta=request.meta, url=request.url, detector=request.detector,
                      rot=region_from_pb(request, "rot"), roi=region_from_pb(request, "roi"))


def camera_to_pb(camera: Camera) -> video_pb2.Camera:
    msg = video_pb2.Camera(id=camera.id, meta=camera.meta, url=camera.url, url_hidden=camera.url_hidden,
                           detector=camera.detector, created_by=camera.created_by)
    for name in ("rot", "roi"):
        region = getattr(camera, name)
        if region is not None:
            getattr(msg, name).CopyFrom(video_pb2.Region(x=region.x, y=region.y, width=region.width,
                                                         height=region.height))
    timestamp(msg.created_at, camera.created_at)
    timestamp(msg.updated_at, camera.updated_at)
    if camera.status is not None:
        msg.status.state = STATE_TO_PB[camera.status.state]
        msg.status.reason = camera.status.reason
        msg.status.detector = camera.status.detector
        timestamp(msg.status.reported_at, camera.status.reported_at)
    return msg


def report_from_pb(msg: video_pb2.CameraStatusReport) -> StatusReport:
    state = STATE_FROM_PB.get(msg.state)
    if state is None:
        raise InvalidArgument(f"cameras: camera {msg.camera_id[:64]!r} needs a state, RUNNING or NOT_RUNNING")
    return StatusReport(msg.camera_id, state, msg.reason)


def event_to_pb(event: Event, missed: int = 0) -> video_pb2.Event:
    msg = video_pb2.Event(id=event.id, camera_id=event.camera_id, track_id=event.track_id, bbox=box_to_pb(event.bbox),
                          thumbnail=event.thumbnail, person_id=event.person_id, face_id=event.face_id,
                          galleries=list(event.galleries), missed=missed)
    timestamp(msg.frame_time, event.frame_time)
    timestamp(msg.created_at, event.created_at)
    if event.match is not None:
        msg.match.CopyFrom(gateway_pb2.Match(face=face_to_pb(event.match.face), confidence=event.match.confidence,
                                             confidence_original=event.match.confidence_original))
    return msg


def time_from_pb(request, name: str) -> datetime | None:
    if not request.HasField(name):
        return None
    try:
        return getattr(request, name).ToDatetime(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{name}: not a valid time") from None


class VideoServicer(video_pb2_grpc.VideoServiceServicer):
    def __init__(self, service: GatewayService, tokens: TokenStore | None) -> None:
        """`tokens`: the gateway's token store, to tell callers apart; None when tokens are off (all trusted)."""
        self.service = service
        self.tokens = tokens

    async def _caller(self, context) -> str | None:
        if self.tokens is None:
            return None
        # The interceptor checked the token already; this answers from the store's cache.
        return (await authenticate(self.tokens, context.invocation_metadata())).name

    async def CreateCamera(self, request, context):
        camera = await self.service.cameras.create(spec_from_pb(request), await self._caller(context))
        return camera_to_pb(camera)

    async def ListCameras(self, request, context):
        page = await self.service.cameras.list(request.detector, request.after_id, request.limit,
                                               await self._caller(context))
        return video_pb2.ListCamerasResponse(cameras=[camera_to_pb(c) for c in page.cameras],
                                             next_after_id=page.next_after_id)

    async def GetCamera(self, request, context):
        return camera_to_pb(await self.service.cameras.get(request.id, await self._caller(context)))

    async def UpdateCamera(self, request, context):
        def kept(name: str) -> str | None:
            return getattr(request, name) if request.HasField(name) else None

        camera = await self.service.cameras.update(
            request.id, kept("meta"), kept("url"), kept("detector"), region_from_pb(request, "rot"),
            region_from_pb(request, "roi"), await self._caller(context),
        )
        return camera_to_pb(camera)

    async def DeleteCamera(self, request, context):
        await self.service.cameras.delete(request.id)
        return video_pb2.DeleteCameraResponse()

    async def ReportCameraStatus(self, request, context):
        updated = await self.service.cameras.report(request.detector, [report_from_pb(r) for r in request.cameras],
                                                    await self._caller(context))
        return video_pb2.ReportCameraStatusResponse(updated=updated)

    async def ListPersons(self, request, context):
        page = await self.service.persons.list(request.after_id, request.limit)
        return video_pb2.ListPersonsResponse(
            persons=[video_pb2.Person(id=p.id, meta=p.face.meta, face_count=p.face_count, face=face_to_pb(p.face))
                     for p in page.persons],
            next_after_id=page.next_after_id,
        )

    async def SearchHistory(self, request, context):
        query = HistoryQuery(person_id=request.person_id, camera_ids=tuple(request.camera_ids),
                             start=time_from_pb(request, "start"), end=time_from_pb(request, "end"))
        page = await self.service.history.search(query, request.max_id, request.limit,
                                                 thumbnails=not request.without_thumbnails)
        return video_pb2.SearchHistoryResponse(events=[event_to_pb(e) for e in page.events],
                                               next_max_id=page.next_max_id, prev_max_id=page.prev_max_id,
                                               has_prev=page.has_prev)

    async def GetEvent(self, request, context):
        return event_to_pb(await self.service.history.get(request.id))

    async def WatchEvents(self, request, context):
        hub = self.service.events
        # Subscribed before the replay is read, so that nothing falls between the two; what both hold is sent once.
        subscription = hub.subscribe(request.camera_ids, request.galleries)
        try:
            last = request.after_id
            if last:
                for event in await self.service.history.after(list(request.camera_ids), last, REPLAY_MAX):
                    if subscription.filter.accepts(event):
                        yield event_to_pb(event)
                    last = event.id
            while True:
                event, missed = await subscription.next()
                if event.id > last:
                    yield event_to_pb(event, missed)
        finally:
            hub.unsubscribe(subscription)
