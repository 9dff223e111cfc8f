"""The legacy video methods over VideoService: /camera (POST, GET, GET/PUT/DELETE by id), /persons,
/person/history/id/<id>, /history/search and a sighting's screenshot; and the sighting a /face or /identify
becomes when its cam_id names a camera (as the original's video detector posts them)."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from findface_grpc.v1 import gateway_pb2, video_pb2
from gateway_http.calls import Call, Reply, Upstream, confidence
from gateway_http.errors import bad_param, box_json, from_grpc
from gateway_http.params import MAX_LIMIT, MAX_PAGE_ID, Params
from gateway_http.replies import box_of, face_json, timestamp

# Listing every camera (GET /camera answers them all, as the original): this many per gateway call.
CAMERA_PAGE = 1000
MAX_CAM_IDS = 100
LABEL_CHARS = 256
STATE_NAMES = {video_pb2.CAMERA_STATE_RUNNING: "running", video_pb2.CAMERA_STATE_NOT_RUNNING: "not_running"}


# ---- cameras ----

def _region(p: Params, name: str) -> video_pb2.Region | None:
    """rot / roi as the original takes them: [W, H, X, Y]; absent, null or [] for none."""
    value = p.structured(name)
    if value is None or value == []:
        return None
    if (not isinstance(value, list) or len(value) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise bad_param(name, value, f"{name} must be [width, height, x, y], whole numbers >= 0")
    width, height, x, y = value
    return video_pb2.Region(x=x, y=y, width=width, height=height)


def _region_json(region: video_pb2.Region) -> list[int]:
    return [region.width, region.height, region.x, region.y]


def camera_json(camera: video_pb2.Camera) -> dict:
    out: dict[str, Any] = {"id": camera.id, "meta": camera.meta, "url": camera.url, "detector": camera.detector,
                           "created_by": camera.created_by, "timestamp": timestamp(camera.created_at)}
    if camera.url_hidden:
        out["url_hidden"] = True
    for name in ("rot", "roi"):
        if camera.HasField(name):
            out[name] = _region_json(getattr(camera, name))
    if camera.HasField("status"):
        out["status"] = {"state": STATE_NAMES.get(camera.status.state, "unknown"), "reason": camera.status.reason,
                         "detector": camera.status.detector, "reported_at": timestamp(camera.status.reported_at)}
    return out


def _camera_fields(p: Params) -> dict[str, tuple[str, Any]]:
    return {name: (name, p.get(name)) for name in ("meta", "url", "detector", "rot", "roi")}


def _camera_id(call: Call) -> str:
    return call.args["id"]


def create_camera(upstream: Upstream, call: Call) -> Reply:
    p = call.params
    request = video_pb2.CreateCameraRequest(meta=p.string("meta") or "", url=p.string("url", 2048) or "",
                                            detector=p.string("detector", LABEL_CHARS) or "")
    for name in ("rot", "roi"):
        region = _region(p, name)
        if region is not None:
            getattr(request, name).CopyFrom(region)
    camera = upstream.rpc(call, "CreateCamera", request, _camera_fields(p), stub=upstream.video)
    return Reply(status=201, body=camera_json(camera))


def list_cameras(upstream: Upstream, call: Call) -> Reply:
    detector = call.params.string("detector", LABEL_CHARS) or ""
    cameras: list = []
    after = ""
    while True:
        reply = upstream.rpc(call, "ListCameras", video_pb2.ListCamerasRequest(
            detector=detector, after_id=after, limit=CAMERA_PAGE), stub=upstream.video)
        cameras.extend(reply.cameras)
        after = reply.next_after_id
        if not after:
            break
    return Reply(body=[camera_json(c) for c in cameras])


def get_camera(upstream: Upstream, call: Call) -> Reply:
    camera = upstream.rpc(call, "GetCamera", video_pb2.GetCameraRequest(id=_camera_id(call)),
                          {"id": ("id", _camera_id(call))}, stub=upstream.video)
    return Reply(body=camera_json(camera))


def update_camera(upstream: Upstream, call: Call) -> Reply:
    """PUT as the original: meta, url and detector kept when absent; rot and roi removed when absent."""
    p = call.params
    request = video_pb2.UpdateCameraRequest(id=_camera_id(call))
    for name, limit in (("meta", 4096), ("url", 2048), ("detector", LABEL_CHARS)):
        value = p.string(name, limit)
        if value is not None:
            setattr(request, name, value)
    for name in ("rot", "roi"):
        region = _region(p, name)
        if region is not None:
            getattr(request, name).CopyFrom(region)
    camera = upstream.rpc(call, "UpdateCamera", request, {"id": ("id", _camera_id(call)), **_camera_fields(p)},
                          stub=upstream.video)
    return Reply(body=camera_json(camera))


def delete_camera(upstream: Upstream, call: Call) -> Reply:
    upstream.rpc(call, "DeleteCamera", video_pb2.DeleteCameraRequest(id=_camera_id(call)),
                 {"id": ("id", _camera_id(call))}, stub=upstream.video)
    return Reply(status=204)


# ---- persons ----

def list_persons(upstream: Upstream, call: Call) -> Reply:
    p = call.params
    after = p.string("after_id", LABEL_CHARS) or ""
    limit = p.integer("limit", 1, MAX_LIMIT)
    reply = upstream.rpc(call, "ListPersons", video_pb2.ListPersonsRequest(after_id=after, limit=limit or 0),
                         stub=upstream.video)
    query = {"after_id": reply.next_after_id, **({"limit": str(limit)} if limit else {})}
    return Reply(body={
        "results": [{"id": person.id, "meta": person.meta, "face_count": person.face_count,
                     "face": face_json(person.face)} for person in reply.persons],
        "next_page": f"{call.path}?{urlencode(query)}" if reply.next_after_id else None,
    })


# ---- history ----

def _moment(p: Params, name: str) -> Timestamp | None:
    """ISO 8601 (UTC unless it says otherwise), or unix seconds."""
    value = p.get(name)
    if value is None:
        return None
    moment = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        try:
            moment = datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):
            moment = None
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    if moment is None:
        raise bad_param(name, value, f"{name} must be an ISO 8601 time (2016-06-13T11:00:00) or unix seconds")
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def cam_ids_param(p: Params) -> list[str]:
    value = p.structured("cam_ids")
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",") if isinstance(value, str) else [value]
    if len(items) > MAX_CAM_IDS or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in items):
        raise bad_param("cam_ids", value, f"cam_ids must be a list of at most {MAX_CAM_IDS} camera ids")
    return [str(i).strip() for i in items if str(i).strip()]


def event_json(event: video_pb2.Event, call: Call, scale: str) -> dict:
    """A sighting as the original's history answers it (person_id, face_id, cam_id, meta, screenshot, timestamp),
    with its box, track, galleries and best match added."""
    match = event.match if event.HasField("match") else None
    return {
        "id": event.id,
        "cam_id": event.camera_id,
        "person_id": event.person_id or None,
        "face_id": event.face_id or None,
        "meta": match.face.meta if match else "",
        "timestamp": timestamp(event.frame_time),
        "track_id": event.track_id,
        **box_json(box_of(event.bbox)),
        "galleries": list(event.galleries),
        "screenshot": f"{call.prefix}/history/id/{event.id}/screenshot",
        "match": {"face": face_json(match.face), "confidence": confidence(match, scale)} if match else None,
        "received": timestamp(event.created_at),
    }


def _history(upstream: Upstream, call: Call, person_id: str) -> Reply:
    p = call.params
    max_id = p.integer("max_id", 1, MAX_PAGE_ID)
    limit = p.integer("limit", 1, MAX_LIMIT)
    request = video_pb2.SearchHistoryRequest(person_id=person_id, camera_ids=cam_ids_param(p),
                                             max_id=max_id or 0, limit=limit or 0, without_thumbnails=True)
    for name in ("start", "end"):
        moment = _moment(p, name)
        if moment is not None:
            getattr(request, name).CopyFrom(moment)
    reply = upstream.rpc(call, "SearchHistory", request, {
        "person_id": ("person_id", person_id), "camera_ids": ("cam_ids", p.get("cam_ids")),
        "start": ("start", p.get("start")), "limit": ("limit", limit),
    }, stub=upstream.video)

    def link(page_max_id: int) -> str:
        query = {**({"max_id": str(page_max_id)} if page_max_id else {}), **({"limit": str(limit)} if limit else {})}
        return f"{call.path}?{urlencode(query)}" if query else call.path

    scale = upstream.config.confidence_scale
    return Reply(body={
        "results": [event_json(e, call, scale) for e in reply.events],
        "next_page": link(reply.next_max_id) if reply.next_max_id else None,
        "prev_page": link(reply.prev_max_id) if reply.has_prev else None,
    })


def search_history(upstream: Upstream, call: Call) -> Reply:
    """POST /history/search: person_id, cam_ids, start, end; paged with max_id and limit, as the face lists."""
    return _history(upstream, call, call.params.string("person_id", LABEL_CHARS) or "")


def person_history(upstream: Upstream, call: Call) -> Reply:
    person_id = call.args["id"]
    if len(person_id) > LABEL_CHARS:
        raise bad_param("id", person_id, f"a person id has at most {LABEL_CHARS} characters")
    return _history(upstream, call, person_id)


def screenshot(upstream: Upstream, call: Call) -> Reply:
    text = call.args["id"]
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_ID:
        raise bad_param("id", text, "id must be a positive whole number")
    event = upstream.rpc(call, "GetEvent", video_pb2.GetEventRequest(id=int(text)), {"event": ("id", text)},
                         stub=upstream.video)
    return Reply(raw=event.thumbnail, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


# ---- /face and /identify from a camera ----

def sighting(upstream: Upstream, call: Call, cam_id: str) -> gateway_pb2.Sighting | None:
    """The Sighting of a /face or /identify whose cam_id names a camera (the original's detector posts them so,
    with the frame's `timestamp`); None for a cam_id that names none, which stays a plain label on the face."""
    if not cam_id:
        return None
    try:
        upstream.video.GetCamera(video_pb2.GetCameraRequest(id=cam_id), timeout=upstream.config.call_timeout_s,
                                 metadata=call.metadata)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise from_grpc(exc, {}) from None
    moment = _moment(call.params, "timestamp")
    frame = moment.ToMicroseconds() / 1e6 if moment is not None else 0.0
    return gateway_pb2.Sighting(camera_id=cam_id, frame_time=frame,
                                track_id=call.params.string("track_id", LABEL_CHARS) or "")
