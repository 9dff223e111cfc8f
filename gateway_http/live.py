"""GET /events: new sightings by long poll, for the console's live page (fed by VideoService.WatchEvents).

A poll names the last event id it has (`after`) and waits up to `wait` seconds (at most MAX_WAIT_S) for newer
ones; it is answered as soon as one arrives, with what else comes within BATCH_S. A poll holds one of the HTTP
gateway's worker threads while it waits, so at most a quarter of them poll at once: a poll beyond that is
answered at once, empty, with `retry_after` (its client waits and polls again). Without `after` the answer
is at once: the newest event's id (as `last_id`), to poll from.
"""
from __future__ import annotations

import threading

import grpc

from findface_grpc.v1 import video_pb2
from gateway_http.calls import Call, Reply, Upstream
from gateway_http.errors import from_grpc
from gateway_http.params import MAX_PAGE_ID
from gateway_http.video import cam_ids_param, event_json

MAX_WAIT_S = 25
DEFAULT_WAIT_S = 20
# After the first event, how long to gather the ones right behind it (a burst) into the same answer.
BATCH_S = 0.2
MAX_EVENTS = 200
RETRY_AFTER_S = 2

def _newest_id(upstream: Upstream, call: Call, cam_ids: list[str]) -> int:
    reply = upstream.rpc(call, "SearchHistory", video_pb2.SearchHistoryRequest(
        camera_ids=cam_ids, limit=1, without_thumbnails=True), {"camera_ids": ("cam_ids", cam_ids)},
        stub=upstream.video)
    return reply.events[0].id if reply.events else 0


def _watch(upstream: Upstream, call: Call, request: video_pb2.WatchEventsRequest, wait: float) -> list:
    stream = upstream.video.WatchEvents(request, timeout=wait, metadata=call.metadata)
    events: list = []
    timer: threading.Timer | None = None
    try:
        for event in stream:
            events.append(event)
            if len(events) >= MAX_EVENTS:
                break
            if timer is None:
                timer = threading.Timer(BATCH_S, stream.cancel)
                timer.start()
    except grpc.RpcError as exc:
        if exc.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            raise from_grpc(exc, {"camera_ids": ("cam_ids", request.camera_ids)}) from None
    finally:
        if timer is not None:
            timer.cancel()
        stream.cancel()
    return events


def poll_events(upstream: Upstream, call: Call) -> Reply:
    p = call.params
    cam_ids = cam_ids_param(p)
    galleries = p.galleries("galleries")
    after = p.integer("after", 0, MAX_PAGE_ID)
    wait = p.integer("wait", 1, MAX_WAIT_S) or DEFAULT_WAIT_S
    if after is None:
        return Reply(body={"results": [], "last_id": _newest_id(upstream, call, cam_ids)})
    if not upstream.long_polls.acquire(blocking=False):
        return Reply(body={"results": [], "last_id": after, "retry_after": RETRY_AFTER_S})
    try:
        request = video_pb2.WatchEventsRequest(camera_ids=cam_ids, galleries=galleries, after_id=after)
        events = _watch(upstream, call, request, wait)
    finally:
        upstream.long_polls.release()
    scale = upstream.config.confidence_scale
    results = [event_json(e, call, scale) for e in events]
    for out, event in zip(results, events):
        out["missed"] = event.missed
    return Reply(body={"results": results, "last_id": max([after, *(e.id for e in events)])})
